# A small, realistic root module with both compliant and non-compliant resources.
# `soc2infra scan examples/` shows the findings; the test suite asserts them exactly.

variable "environment" {
  type    = string
  default = "prod"
}

variable "create_audit_bucket" {
  type    = bool
  default = true
}

variable "db_password" {
  type      = string
  sensitive = true
}

locals {
  prefix = "acme-${var.environment}"
  tags = {
    Environment = var.environment
    Owner       = "platform"
  }
}

# --- S3: split resources (provider v4+ style) ---------------------------------

resource "aws_s3_bucket" "data" {
  bucket = "${local.prefix}-data"
  tags   = local.tags
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
  }
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "data" {
  bucket        = aws_s3_bucket.data.id
  target_bucket = module.audit_logs.bucket_name
  target_prefix = "s3/data/"
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = ["arn:aws:s3:::${local.prefix}-data", "arn:aws:s3:::${local.prefix}-data/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    id     = "expire-after-retention"
    status = "Enabled"
    filter {}
    expiration {
      days = 730
    }
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
  }
}

# The replica lives in the disaster-recovery account, outside this tree.
resource "aws_s3_bucket_replication_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  role   = "arn:aws:iam::111122223333:role/s3-replication"
  rule {
    id     = "all"
    status = "Enabled"
    destination {
      bucket = "arn:aws:s3:::${local.prefix}-data-replica"
    }
  }
  depends_on = [aws_s3_bucket_versioning.data]
}

# A scratch bucket nobody configured: no encryption, versioning, logging or public access block.
resource "aws_s3_bucket" "scratch" {
  bucket = "${local.prefix}-scratch"
}

# The same local module called twice with different inputs.
module "audit_logs" {
  source     = "./modules/bucket"
  name       = "${local.prefix}-audit-logs"
  versioning = true
  count_on   = var.create_audit_bucket
}

module "tmp_exports" {
  source     = "./modules/bucket"
  name       = "${local.prefix}-exports"
  versioning = false
  count_on   = true
}

# --- KMS ----------------------------------------------------------------------

resource "aws_kms_key" "data" {
  description             = "data bucket key"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_kms_key" "legacy" {
  description = "key without rotation"
}

# --- Databases ----------------------------------------------------------------

resource "aws_db_instance" "orders" {
  identifier              = "${local.prefix}-orders"
  engine                  = "postgres"
  instance_class          = "db.t4g.medium"
  allocated_storage       = 50
  storage_encrypted       = true
  kms_key_id              = aws_kms_key.data.arn
  backup_retention_period = 14
  deletion_protection     = true
  multi_az                = true
  publicly_accessible     = false
  username                = "orders"
  password                = var.db_password
  iam_database_authentication_enabled = true
}

resource "aws_db_instance" "reporting" {
  identifier          = "${local.prefix}-reporting"
  engine              = "mysql"
  instance_class      = "db.t4g.small"
  allocated_storage   = 20
  publicly_accessible = true
  username            = "report"
  password            = var.db_password
}

# --- Network ------------------------------------------------------------------

resource "aws_vpc" "main" {
  cidr_block = "10.20.0.0/16"
}

resource "aws_flow_log" "main" {
  vpc_id          = aws_vpc.main.id
  traffic_type    = "ALL"
  log_destination = module.audit_logs.bucket_arn
  log_destination_type = "s3"
}

resource "aws_security_group" "bastion" {
  name   = "bastion"
  vpc_id = aws_vpc.main.id
  ingress {
    description = "ssh from anywhere"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# --- Logging ------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "app" {
  name              = "/acme/${var.environment}/app"
  retention_in_days = 30
}
