# The configuration behind gcp.plan.json (the plan was written by hand in the shape
# `terraform show -json` emits for it).
resource "google_compute_disk" "data" {
  name = "data"
  zone = "europe-west1-b"
  size = 100
}

resource "google_compute_disk" "scratch" {
  name = "scratch"
  zone = "europe-west1-b"
  size = 10
}

resource "google_compute_resource_policy" "daily" {
  name   = "daily"
  region = "europe-west1"
  snapshot_schedule_policy {
    schedule {
      daily_schedule {
        days_in_cycle = 1
        start_time    = "04:00"
      }
    }
    retention_policy {
      max_retention_days = 14
    }
  }
}

resource "google_compute_disk_resource_policy_attachment" "data" {
  name = google_compute_resource_policy.daily.name
  disk = google_compute_disk.data.name
  zone = "europe-west1-b"
}

resource "google_sql_database_instance" "v5" {
  name             = "v5"
  database_version = "POSTGRES_15"
  region           = "europe-west1"
  settings {
    tier = "db-f1-micro"
    ip_configuration {
      ipv4_enabled = false
      require_ssl  = true
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }
  }
}

resource "google_sql_database_instance" "v6" {
  name             = "v6"
  database_version = "POSTGRES_16"
  region           = "europe-west1"
  settings {
    tier = "db-f1-micro"
    ip_configuration {
      ssl_mode = "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
    }
  }
}

resource "google_storage_bucket" "logs" {
  name                        = "acme-logs"
  location                    = "EU"
  uniform_bucket_level_access = true
  retention_policy {
    retention_period = 31536000
    is_locked        = true
  }
}

resource "google_logging_project_sink" "audit" {
  name        = "audit"
  destination = "storage.googleapis.com/${google_storage_bucket.logs.name}"
}

resource "google_compute_firewall" "ssh" {
  name          = "ssh"
  network       = "main"
  source_ranges = ["0.0.0.0/0"]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}
