# A data store as a team would package it: storage account, key vault and their diagnostic
# settings, written with azurerm 4.x attribute names. Called twice from the root module.
variable "name" {
  type = string
}

variable "replication" {
  type    = string
  default = "GZRS"
}

variable "workspace_id" {
  type = string
}

variable "tenant_id" {
  type = string
}

resource "azurerm_storage_account" "this" {
  name                            = "acme${var.name}"
  resource_group_name             = "rg-${var.name}"
  location                        = "westeurope"
  account_tier                    = "Standard"
  account_replication_type        = var.replication
  https_traffic_only_enabled      = true
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  public_network_access_enabled   = false

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 30
    }
    container_delete_retention_policy {
      days = 30
    }
  }

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_storage_account_customer_managed_key" "this" {
  storage_account_id = azurerm_storage_account.this.id
  key_vault_id       = azurerm_key_vault.this.id
  key_name           = "storage"
}

resource "azurerm_monitor_diagnostic_setting" "blob" {
  name                       = "blob-audit"
  target_resource_id         = "${azurerm_storage_account.this.id}/blobServices/default"
  log_analytics_workspace_id = var.workspace_id
  enabled_log {
    category_group = "audit"
  }
}

resource "azurerm_key_vault" "this" {
  name                          = "kv-${var.name}"
  location                      = "westeurope"
  resource_group_name           = "rg-${var.name}"
  tenant_id                     = var.tenant_id
  sku_name                      = "standard"
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  rbac_authorization_enabled    = true
  public_network_access_enabled = false
}

resource "azurerm_monitor_diagnostic_setting" "vault" {
  name                       = "kv-audit"
  target_resource_id         = azurerm_key_vault.this.id
  log_analytics_workspace_id = var.workspace_id
  enabled_log {
    category = "AuditEvent"
  }
}

output "storage_account_id" {
  value = azurerm_storage_account.this.id
}
