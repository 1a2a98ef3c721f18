variable "name" {
  type = string
}

variable "tags" {
  type = map(string)
}

# Called twice: tags decide backup selection, and point-in-time recovery follows them.
resource "aws_db_instance" "this" {
  identifier              = var.name
  engine                  = "postgres"
  instance_class          = "db.t4g.micro"
  storage_encrypted       = true
  backup_retention_period = 1
  tags                    = var.tags
}

resource "aws_dynamodb_table" "this" {
  name         = var.name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"
  attribute {
    name = "id"
    type = "S"
  }
  point_in_time_recovery {
    enabled = length(var.tags) > 0
  }
}
