variable "env" {
  type    = string
  default = "prod"
}

variable "retention_days" {
  type    = number
  default = 35
}

variable "legacy_db_arns" {
  type        = list(string)
  description = "ARNs of databases managed by another team; no value in this tree"
}

variable "trails" {
  type = map(object({ multi_region = bool }))
  default = {
    main     = { multi_region = true }
    regional = { multi_region = false }
  }
}
