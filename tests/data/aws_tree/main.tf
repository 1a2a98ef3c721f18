provider "aws" {
  region = "us-east-1"
  default_tags {
    tags = { env = var.env }
  }
}

locals {
  backup_tag  = { backup = "daily" }
  log_types   = ["api", "audit", "authenticator"]
  vpc_cidrs   = { app = "10.0.0.0/16", data = "10.1.0.0/16" }
}

# ---- backup: a plan (retention from a variable), selections by reference, wildcard, tag, and one
# from outside the tree
resource "aws_backup_vault" "prod" {
  name        = "prod"
  kms_key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
}

resource "aws_backup_plan" "prod" {
  name = "prod"
  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.prod.name
    schedule          = "cron(0 5 ? * * *)"
    lifecycle {
      delete_after = var.retention_days
    }
  }
}

resource "aws_backup_selection" "tagged" {
  name         = "tagged"
  plan_id      = aws_backup_plan.prod.id
  iam_role_arn = "arn:aws:iam::111122223333:role/backup"
  dynamic "selection_tag" {
    for_each = local.backup_tag
    content {
      type  = "STRINGEQUALS"
      key   = selection_tag.key
      value = selection_tag.value
    }
  }
}

resource "aws_backup_selection" "volumes" {
  name         = "volumes"
  plan_id      = aws_backup_plan.prod.id
  iam_role_arn = "arn:aws:iam::111122223333:role/backup"
  resources    = ["arn:aws:ec2:*:*:volume/*"]
}

resource "aws_backup_selection" "legacy" {
  name         = "legacy"
  plan_id      = aws_backup_plan.prod.id
  iam_role_arn = "arn:aws:iam::111122223333:role/backup"
  resources    = var.legacy_db_arns
  condition {
    string_equals {
      key   = "aws:ResourceTag/team"
      value = "legacy"
    }
  }
}

# managed by the legacy team: only the selection above (ARNs unknown here) could cover it
resource "aws_db_instance" "billing" {
  identifier     = "billing"
  engine         = "mysql"
  instance_class = "db.t4g.micro"
  tags           = { team = "legacy" }
}

# S3 in both attribute generations: split versioning/replication (provider v4+) and the
# deprecated inline blocks (provider v3); a third bucket has neither.
resource "aws_s3_bucket" "reports" {
  bucket = "acme-${var.env}-reports"
}

resource "aws_s3_bucket_versioning" "reports" {
  bucket = aws_s3_bucket.reports.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_replication_configuration" "reports" {
  bucket = aws_s3_bucket.reports.id
  role   = "arn:aws:iam::111122223333:role/replication"
  rule {
    id     = "all"
    status = "Enabled"
    destination {
      bucket = "arn:aws:s3:::acme-${var.env}-reports-dr"
    }
  }
}

resource "aws_s3_bucket" "archive" {
  bucket = "acme-${var.env}-archive"
  versioning {
    enabled = true
  }
  replication_configuration {
    role = "arn:aws:iam::111122223333:role/replication"
    rules {
      id     = "all"
      status = "Enabled"
      destination {
        bucket = "arn:aws:s3:::acme-${var.env}-archive-dr"
      }
    }
  }
}

resource "aws_s3_bucket" "tmp" {
  bucket = "acme-${var.env}-tmp"
}

# the module is called twice: the orders store is tagged for backup, the scratch store is not
module "orders" {
  source = "./modules/store"
  name   = "orders"
  tags   = local.backup_tag
}

module "scratch" {
  source = "./modules/store"
  name   = "scratch"
  tags   = {}
}

resource "aws_ebs_volume" "data" {
  count             = 2
  availability_zone = "us-east-1a"
  size              = 50
  encrypted         = true
}

# ---- logging: VPCs (for_each) with one flow log; trails (for_each) with split settings;
# an EKS cluster with control-plane logs from a local
resource "aws_vpc" "this" {
  for_each   = local.vpc_cidrs
  cidr_block = each.value
}

resource "aws_flow_log" "app" {
  vpc_id               = aws_vpc.this["app"].id
  traffic_type         = "ALL"
  log_destination_type = "s3"
  log_destination      = "arn:aws:s3:::acme-flow-logs"
}

resource "aws_cloudtrail" "this" {
  for_each                   = var.trails
  name                       = each.key
  s3_bucket_name             = "acme-trail-${each.key}"
  is_multi_region_trail      = each.value.multi_region
  enable_log_file_validation = true
  kms_key_id                 = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
}

resource "aws_eks_cluster" "main" {
  name                      = "main"
  role_arn                  = "arn:aws:iam::111122223333:role/eks"
  enabled_cluster_log_types = local.log_types
  vpc_config {
    subnet_ids = ["subnet-a", "subnet-b"]
  }
}

resource "aws_api_gateway_stage" "prod" {
  rest_api_id   = "a1b2c3"
  deployment_id = "d4e5f6"
  stage_name    = "prod"
}
