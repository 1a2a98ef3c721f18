# A data bucket with its reader grant; called twice from the root module.
variable "name" {
  type = string
}

variable "reader" {
  type = string
}

variable "kms_key" {
  type = string
}

resource "google_storage_bucket" "this" {
  name                        = "acme-${var.name}"
  location                    = "EU"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  encryption {
    default_kms_key_name = var.kms_key
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 400
    }
  }
}

resource "google_storage_bucket_iam_member" "reader" {
  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectViewer"
  member = var.reader
}
