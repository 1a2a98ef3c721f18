# A realistic Google Cloud tree for the GCP rules: google 5.x and 6.x attribute generations
# (require_ssl vs ssl_mode), split resources (disk policy attachments, audit configs, sinks,
# bucket IAM), a module called twice, count/for_each, dynamic blocks, and references from
# outside the tree (variables without values) where the answer must be "unknown".
terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}

variable "project_id" {
  type    = string
  default = "acme-prod"
}

# A snapshot policy owned by the platform team's state.
variable "platform_snapshot_policy" {
  type = string
}

locals {
  region = "europe-west1"
  subnets = {
    app  = { cidr = "10.10.0.0/20", flow_logs = true }
    batch = { cidr = "10.20.0.0/20", flow_logs = false } # finding: no flow logs
  }
  pg_flags = {
    log_connections           = "on"
    log_disconnections        = "on"
    "cloudsql.enable_pgaudit" = "on"
  }
}

resource "google_project" "prod" {
  name                = "acme-prod"
  project_id          = var.project_id
  org_id              = "1234567890"
  auto_create_network = false
}

resource "google_project_iam_audit_config" "all" {
  project = google_project.prod.project_id
  service = "allServices"
  dynamic "audit_log_config" {
    for_each = ["ADMIN_READ", "DATA_READ", "DATA_WRITE"]
    content {
      log_type = audit_log_config.value
    }
  }
}

resource "google_compute_project_metadata" "prod" {
  project = google_project.prod.project_id
  metadata = {
    enable-oslogin = "TRUE"
  }
}

# ---------------------------------------------------------------- keys

resource "google_kms_key_ring" "data" {
  name     = "data"
  location = "europe"
}

resource "google_kms_crypto_key" "data" {
  name            = "data"
  key_ring        = google_kms_key_ring.data.id
  rotation_period = "7776000s"
}

resource "google_kms_crypto_key" "archive" {
  name            = "archive"
  key_ring        = google_kms_key_ring.data.id
  rotation_period = "31536000s" # finding: rotates yearly
}

# ---------------------------------------------------------------- storage and logs

module "reports" {
  source  = "./modules/bucket"
  name    = "reports"
  reader  = "group:analysts@example.com"
  kms_key = google_kms_crypto_key.data.id
}

module "press" {
  source  = "./modules/bucket"
  name    = "press"
  reader  = "allUsers" # finding: public grant
  kms_key = google_kms_crypto_key.data.id
}

resource "google_storage_bucket" "audit_logs" {
  name                        = "acme-audit-logs"
  location                    = "EU"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  encryption {
    default_kms_key_name = google_kms_crypto_key.data.id
  }
  retention_policy {
    retention_period = 31536000
    is_locked        = true
  }
}

resource "google_logging_project_sink" "audit" {
  name                   = "audit-to-gcs"
  destination            = "storage.googleapis.com/${google_storage_bucket.audit_logs.name}"
  filter                 = "logName:\"cloudaudit.googleapis.com\""
  unique_writer_identity = true
}

resource "google_logging_project_bucket_config" "ops" {
  project   = google_project.prod.project_id
  location  = "global"
  bucket_id = "ops"
  # finding: default 30-day retention, not locked
}

resource "google_logging_metric" "iam_changes" {
  name   = "iam-changes"
  filter = "protoPayload.methodName=\"SetIamPolicy\""
}

resource "google_monitoring_alert_policy" "iam_changes" {
  display_name          = "IAM changes"
  combiner              = "OR"
  notification_channels = ["projects/acme-prod/notificationChannels/42"]
  conditions {
    display_name = "IAM policy changed"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.iam_changes.name}\" AND resource.type=\"global\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
    }
  }
}

# ---------------------------------------------------------------- network

resource "google_compute_network" "main" {
  name                    = "main"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "this" {
  for_each                 = local.subnets
  name                     = each.key
  ip_cidr_range            = each.value.cidr
  region                   = local.region
  network                  = google_compute_network.main.id
  private_ip_google_access = true
  dynamic "log_config" {
    for_each = each.value.flow_logs ? [1] : []
    content {
      aggregation_interval = "INTERVAL_5_SEC"
      flow_sampling        = 0.5
      metadata             = "INCLUDE_ALL_METADATA"
    }
  }
}

resource "google_compute_firewall" "iap_ssh" {
  name          = "allow-iap-ssh"
  network       = google_compute_network.main.name
  source_ranges = ["35.235.240.0/20"]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_firewall" "rdp_world" {
  name          = "allow-rdp"
  network       = google_compute_network.main.name
  source_ranges = ["0.0.0.0/0"] # finding
  allow {
    protocol = "tcp"
    ports    = ["3389"]
  }
}

# ---------------------------------------------------------------- Cloud SQL

resource "google_sql_database_instance" "orders" {
  name                = "orders"
  database_version    = "POSTGRES_16"
  region              = local.region
  encryption_key_name = google_kms_crypto_key.data.id
  settings {
    tier                        = "db-custom-2-7680"
    availability_type           = "REGIONAL"
    deletion_protection_enabled = true
    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.main.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      backup_retention_settings {
        retained_backups = 14
      }
    }
    dynamic "database_flags" {
      for_each = local.pg_flags
      content {
        name  = database_flags.key
        value = database_flags.value
      }
    }
  }
}

# google 5.x style: require_ssl instead of ssl_mode (compliant), but pgAudit is missing.
resource "google_sql_database_instance" "billing" {
  name                = "billing"
  database_version    = "POSTGRES_15"
  region              = local.region
  encryption_key_name = google_kms_crypto_key.data.id
  settings {
    tier                        = "db-custom-2-7680"
    availability_type           = "REGIONAL"
    deletion_protection_enabled = true
    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.main.id
      require_ssl     = true
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
  }
}

resource "google_sql_user" "billing" {
  name     = "billing"
  instance = google_sql_database_instance.billing.name
  password = "Billing-2026-secret" # finding: literal credential (masked)
}

# ---------------------------------------------------------------- compute and disks

resource "google_service_account" "app" {
  account_id = "app-vm"
}

resource "google_compute_resource_policy" "daily" {
  name   = "daily-snapshots"
  region = local.region
  snapshot_schedule_policy {
    schedule {
      daily_schedule {
        days_in_cycle = 1
        start_time    = "03:00"
      }
    }
    retention_policy {
      max_retention_days    = 14
      on_source_disk_delete = "KEEP_AUTO_SNAPSHOTS"
    }
  }
}

resource "google_compute_disk" "app" {
  count = 2
  name  = "app-data-${count.index}"
  zone  = "${local.region}-b"
  size  = 100
}

resource "google_compute_disk_resource_policy_attachment" "app" {
  count = 2
  name  = google_compute_resource_policy.daily.name
  disk  = google_compute_disk.app[count.index].name
  zone  = "${local.region}-b"
}

# Attached to a policy defined in another state: unknown.
resource "google_compute_disk" "cache" {
  name = "cache"
  zone = "${local.region}-b"
  size = 50
}

resource "google_compute_disk_resource_policy_attachment" "cache" {
  name = var.platform_snapshot_policy
  disk = google_compute_disk.cache.name
  zone = "${local.region}-b"
}

resource "google_compute_instance" "app" {
  count        = 2
  name         = "app-${count.index}"
  machine_type = "e2-standard-2"
  zone         = "${local.region}-b"
  network_interface {
    subnetwork = google_compute_subnetwork.this["app"].id
  }
  shielded_instance_config {
    enable_secure_boot = true
  }
  service_account {
    email  = google_service_account.app.email
    scopes = ["cloud-platform"]
  }
}

# ---------------------------------------------------------------- GKE

resource "google_service_account" "nodes" {
  account_id = "gke-nodes"
}

resource "google_container_cluster" "prod" {
  name                     = "prod"
  location                 = local.region
  network                  = google_compute_network.main.id
  subnetwork               = google_compute_subnetwork.this["app"].id
  remove_default_node_pool = true
  initial_node_count       = 1
  datapath_provider        = "ADVANCED_DATAPATH"
  enable_legacy_abac       = false
  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = true
    master_ipv4_cidr_block  = "172.16.0.0/28"
  }
  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }
  database_encryption {
    state    = "ENCRYPTED"
    key_name = google_kms_crypto_key.data.id
  }
  release_channel {
    channel = "REGULAR"
  }
  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }
}

resource "google_container_node_pool" "general" {
  name    = "general"
  cluster = google_container_cluster.prod.id
  node_config {
    machine_type    = "e2-standard-4"
    service_account = google_service_account.nodes.email
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot = true
    }
  }
}

# A CI key for the node service account: finding (reported on the account).
resource "google_service_account_key" "nodes" {
  service_account_id = google_service_account.nodes.name
}
