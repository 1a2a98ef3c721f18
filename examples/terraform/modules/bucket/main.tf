variable "name" {
  type = string
}

variable "versioning" {
  type    = bool
  default = true
}

variable "count_on" {
  type    = bool
  default = true
}

resource "aws_s3_bucket" "this" {
  count  = var.count_on ? 1 : 0
  bucket = var.name
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  count  = var.count_on ? 1 : 0
  bucket = aws_s3_bucket.this[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "this" {
  count  = var.count_on && var.versioning ? 1 : 0
  bucket = aws_s3_bucket.this[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  count                   = var.count_on ? 1 : 0
  bucket                  = aws_s3_bucket.this[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

output "bucket_name" {
  value = var.count_on ? aws_s3_bucket.this[0].bucket : null
}

output "bucket_arn" {
  value = var.count_on ? aws_s3_bucket.this[0].arn : null
}
