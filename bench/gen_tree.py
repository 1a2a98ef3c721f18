"""Generate a large, realistic Terraform tree for benchmarking ``soc2infra scan``.

The tree is ``ROOTS`` root modules (``stacks/stack-NNN/``), each with variables, locals,
outputs, a ``terraform.tfvars``, service files full of AWS resources (split S3 resources,
KMS, RDS with ``count`` on a condition, security groups with dynamic blocks, IAM policies
built with ``jsonencode``, log groups, queues, tables, trails, flow logs, load balancers) and
a local module (``modules/bucket``) called twice with different inputs. About half the
resources are compliant, decided by a seeded random generator, so the output is identical
on every run.

    python bench/gen_tree.py OUT_DIR [--files 2000] [--resources 20000] [--seed 1]

Prints a one-line JSON summary: files written, resource blocks, and the number of resources
a scan should find (module resources counted once per call).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

FIXED_FILES_PER_ROOT = 8  # variables, locals, outputs, providers, tfvars + 3 module files
MODULE_RESOURCES = 4  # resources in modules/bucket
MODULE_CALLS = 2


def _bool(rng: random.Random) -> str:
    return "true" if rng.random() < 0.5 else "false"


def s3_bucket(i: int, rng: random.Random) -> tuple[str, int]:
    name = f"data_{i}"
    parts = [f'''resource "aws_s3_bucket" "{name}" {{
  bucket = "${{local.prefix}}-data-{i}"
  tags   = local.tags
}}
''']
    n = 1
    if rng.random() < 0.6:
        parts.append(f'''resource "aws_s3_bucket_server_side_encryption_configuration" "{name}" {{
  bucket = aws_s3_bucket.{name}.id
  rule {{
    apply_server_side_encryption_by_default {{
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }}
  }}
}}
''')
        n += 1
    if rng.random() < 0.6:
        parts.append(f'''resource "aws_s3_bucket_versioning" "{name}" {{
  bucket = aws_s3_bucket.{name}.id
  versioning_configuration {{
    status = var.versioning ? "Enabled" : "Suspended"
  }}
}}
''')
        n += 1
    if rng.random() < 0.5:
        parts.append(f'''resource "aws_s3_bucket_public_access_block" "{name}" {{
  bucket                  = aws_s3_bucket.{name}.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = {_bool(rng)}
  restrict_public_buckets = true
}}
''')
        n += 1
    if rng.random() < 0.4:
        parts.append(f'''resource "aws_s3_bucket_logging" "{name}" {{
  bucket        = aws_s3_bucket.{name}.id
  target_bucket = module.audit_logs.bucket_name
  target_prefix = "s3/data-{i}/"
}}
''')
        n += 1
    return "\n".join(parts), n


def kms_key(i: int, rng: random.Random) -> tuple[str, int]:
    return f'''resource "aws_kms_key" "k{i}" {{
  description             = "key {i} for ${{var.environment}}"
  enable_key_rotation     = {_bool(rng)}
  deletion_window_in_days = {rng.choice([7, 14, 30])}
  tags                    = merge(local.tags, {{ Purpose = "k{i}" }})
}}
''', 1


def db_instance(i: int, rng: random.Random) -> tuple[str, int]:
    # `count` on a condition: the resource exists because var.create_databases defaults to true.
    return f'''resource "aws_db_instance" "db{i}" {{
  count                   = var.create_databases ? 1 : 0
  identifier              = "${{local.prefix}}-db-{i}"
  engine                  = "{rng.choice(["postgres", "mysql"])}"
  instance_class          = var.db_instance_class
  allocated_storage       = {rng.choice([20, 50, 100])}
  storage_encrypted       = {_bool(rng)}
  kms_key_id              = aws_kms_key.main.arn
  backup_retention_period = {rng.choice([0, 1, 7, 14, 35])}
  deletion_protection     = {_bool(rng)}
  multi_az                = var.environment == "prod"
  publicly_accessible     = {"true" if rng.random() < 0.2 else "false"}
  username                = "app"
  password                = var.db_password
}}
''', 1


def security_group(i: int, rng: random.Random) -> tuple[str, int]:
    port = rng.choice([22, 443, 3306, 5432, 3389, 8080])
    cidr = rng.choice(['"0.0.0.0/0"', '"10.0.0.0/8"', "var.vpc_cidr"])
    return f'''resource "aws_security_group" "sg{i}" {{
  name   = "${{local.prefix}}-sg-{i}"
  vpc_id = aws_vpc.main.id

  dynamic "ingress" {{
    for_each = local.ingress_ports
    content {{
      from_port   = ingress.value
      to_port     = ingress.value
      protocol    = "tcp"
      cidr_blocks = [var.vpc_cidr]
    }}
  }}

  ingress {{
    description = "service port"
    from_port   = {port}
    to_port     = {port}
    protocol    = "tcp"
    cidr_blocks = [{cidr}]
  }}

  egress {{
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }}
}}
''', 1


def iam_policy(i: int, rng: random.Random) -> tuple[str, int]:
    action = rng.choice(['"s3:GetObject"', '"*"', '["s3:GetObject", "s3:PutObject"]', '"kms:*"'])
    return f'''resource "aws_iam_policy" "p{i}" {{
  name = "${{local.prefix}}-policy-{i}"
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect   = "Allow"
      Action   = {action}
      Resource = "arn:aws:s3:::${{local.prefix}}-data-{i}/*"
    }}]
  }})
}}
''', 1


def log_group(i: int, rng: random.Random) -> tuple[str, int]:
    return f'''resource "aws_cloudwatch_log_group" "lg{i}" {{
  name              = "/${{var.environment}}/service-{i}"
  retention_in_days = {rng.choice([7, 30, 90, 365, 400])}
  kms_key_id        = {rng.choice(["aws_kms_key.main.arn", "null"])}
}}
''', 1


def queue_and_topic(i: int, rng: random.Random) -> tuple[str, int]:
    return f'''resource "aws_sqs_queue" "q{i}" {{
  name                    = "${{local.prefix}}-queue-{i}"
  sqs_managed_sse_enabled = {_bool(rng)}
  message_retention_seconds = 86400
}}

resource "aws_sns_topic" "t{i}" {{
  name              = "${{local.prefix}}-topic-{i}"
  kms_master_key_id = {rng.choice(['"alias/aws/sns"', "null"])}
}}
''', 2


def dynamodb_table(i: int, rng: random.Random) -> tuple[str, int]:
    return f'''resource "aws_dynamodb_table" "tbl{i}" {{
  name         = "${{local.prefix}}-table-{i}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"

  attribute {{
    name = "id"
    type = "S"
  }}

  point_in_time_recovery {{
    enabled = {_bool(rng)}
  }}

  server_side_encryption {{
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }}
}}
''', 1


def ebs_volume(i: int, rng: random.Random) -> tuple[str, int]:
    return f'''resource "aws_ebs_volume" "v{i}" {{
  availability_zone = "${{var.region}}a"
  size              = {rng.choice([8, 20, 100])}
  encrypted         = {_bool(rng)}
  tags              = local.tags
}}
''', 1


def lb_listener(i: int, rng: random.Random) -> tuple[str, int]:
    https = rng.random() < 0.5
    proto = '"HTTPS"' if https else '"HTTP"'
    cert = '\n  certificate_arn   = var.certificate_arn\n  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"' \
        if https else ""
    return f'''resource "aws_lb_listener" "l{i}" {{
  load_balancer_arn = aws_lb.main.arn
  port              = {443 if https else 80}
  protocol          = {proto}{cert}

  default_action {{
    type             = "forward"
    target_group_arn = "arn:aws:elasticloadbalancing:${{var.region}}:123456789012:targetgroup/tg-{i}/abc"
  }}
}}
''', 1


def cloudtrail(i: int, rng: random.Random) -> tuple[str, int]:
    return f'''resource "aws_cloudtrail" "trail{i}" {{
  name                          = "${{local.prefix}}-trail-{i}"
  s3_bucket_name                = module.audit_logs.bucket_name
  is_multi_region_trail         = {_bool(rng)}
  enable_log_file_validation    = {_bool(rng)}
  include_global_service_events = true
  kms_key_id                    = {rng.choice(["aws_kms_key.main.arn", "null"])}
}}
''', 1


def flow_log(i: int, rng: random.Random) -> tuple[str, int]:
    return f'''resource "aws_flow_log" "fl{i}" {{
  vpc_id               = aws_vpc.main.id
  traffic_type         = "{rng.choice(["ALL", "REJECT"])}"
  log_destination      = module.audit_logs.bucket_arn
  log_destination_type = "s3"
}}
''', 1


TEMPLATES: list[Callable[[int, random.Random], tuple[str, int]]] = [
    s3_bucket, kms_key, db_instance, security_group, iam_policy, log_group, queue_and_topic,
    dynamodb_table, ebs_volume, lb_listener, cloudtrail, flow_log,
]

VARIABLES_TF = '''variable "environment" {
  type    = string
  default = "prod"
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "versioning" {
  type    = bool
  default = true
}

variable "create_databases" {
  type    = bool
  default = true
}

variable "db_instance_class" {
  type    = string
  default = "db.t4g.medium"
}

variable "db_password" {
  type      = string
  sensitive = true
}

variable "vpc_cidr" {
  type    = string
  default = "10.20.0.0/16"
}

variable "certificate_arn" {
  type    = string
  default = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
}
'''

LOCALS_TF = '''locals {{
  prefix        = "acme-{name}-${{var.environment}}"
  ingress_ports = [443, 8443]
  tags = {{
    Environment = var.environment
    Stack       = "{name}"
    Owner       = "platform"
  }}
}}
'''

PROVIDERS_TF = '''terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

resource "aws_vpc" "main" {
  cidr_block = var.vpc_cidr
}

resource "aws_kms_key" "main" {
  description         = "stack key"
  enable_key_rotation = true
}

resource "aws_lb" "main" {
  name               = "${local.prefix}-lb"
  load_balancer_type = "application"
  subnets            = []
}

module "audit_logs" {
  source     = "./modules/bucket"
  name       = "${local.prefix}-audit-logs"
  versioning = true
}

module "exports" {
  source     = "./modules/bucket"
  name       = "${local.prefix}-exports"
  versioning = false
}
'''
PROVIDERS_RESOURCES = 3

OUTPUTS_TF = '''output "vpc_id" {
  value = aws_vpc.main.id
}

output "audit_bucket" {
  value = module.audit_logs.bucket_name
}
'''

MODULE_MAIN_TF = '''resource "aws_s3_bucket" "this" {
  bucket = var.name
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "this" {
  count  = var.versioning ? 1 : 0
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
'''

MODULE_VARIABLES_TF = '''variable "name" {
  type = string
}

variable "versioning" {
  type    = bool
  default = true
}
'''

MODULE_OUTPUTS_TF = '''output "bucket_name" {
  value = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  value = aws_s3_bucket.this.arn
}
'''


def generate(out: Path, files: int = 2000, resources: int = 20000, seed: int = 1) -> dict[str, int]:
    """Write the tree under *out* (replacing it) and return counts."""
    if out.exists():
        shutil.rmtree(out)
    rng = random.Random(seed)
    files_per_root = 20
    roots = max(1, files // files_per_root)
    service_files = files_per_root - FIXED_FILES_PER_ROOT
    # Module calls contribute MODULE_CALLS × resources (one versioning resource is count = 0
    # in the second call) and providers.tf a few more; the service files make up the rest.
    per_root_fixed = PROVIDERS_RESOURCES + MODULE_CALLS * MODULE_RESOURCES - 1
    per_file = max(1, -(-(resources // roots - per_root_fixed) // service_files))  # ceiling
    written = blocks = expected = 0
    for r in range(roots):
        name = f"stack-{r:03d}"
        root = out / "stacks" / name
        (root / "modules" / "bucket").mkdir(parents=True)
        fixed = {
            "variables.tf": VARIABLES_TF, "locals.tf": LOCALS_TF.format(name=name), "outputs.tf": OUTPUTS_TF,
            "providers.tf": PROVIDERS_TF, "terraform.tfvars": f'environment = "{rng.choice(["prod", "stage"])}"\n'
                                                                'db_password = "not-a-real-secret"\n',
            "modules/bucket/main.tf": MODULE_MAIN_TF, "modules/bucket/variables.tf": MODULE_VARIABLES_TF,
            "modules/bucket/outputs.tf": MODULE_OUTPUTS_TF,
        }
        for rel, text in fixed.items():
            (root / rel).write_text(text, encoding="utf-8")
        written += len(fixed)
        blocks += PROVIDERS_RESOURCES + MODULE_RESOURCES
        expected += per_root_fixed
        index = 0
        for s in range(service_files):
            chunks: list[str] = []
            count = 0
            while count < per_file:
                template = TEMPLATES[(s + len(chunks)) % len(TEMPLATES)]
                text, n = template(index, rng)
                index += 1
                chunks.append(text)
                count += n
            (root / f"service_{s:02d}.tf").write_text(
                f"# {name} service file {s}: generated by bench/gen_tree.py\n\n" + "\n".join(chunks),
                encoding="utf-8")
            written += 1
            blocks += count
            expected += count
    return {"files": written, "tf_files": written - roots, "roots": roots, "resource_blocks": blocks,
            "expected_resources": expected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--resources", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(generate(args.out, args.files, args.resources, args.seed)))


if __name__ == "__main__":
    main()
