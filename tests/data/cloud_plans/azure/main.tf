# The configuration behind azure.plan.json (the plan was written by hand in the shape
# `terraform show -json` emits for it).
resource "azurerm_key_vault" "kv" {
  name                       = "acme-kv"
  location                   = "westeurope"
  resource_group_name        = "rg"
  tenant_id                  = "00000000-0000-0000-0000-000000000000"
  sku_name                   = "standard"
  purge_protection_enabled   = true
  rbac_authorization_enabled = true
  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
  }
}

resource "azurerm_monitor_diagnostic_setting" "kv" {
  name                       = "kv-audit"
  target_resource_id         = azurerm_key_vault.kv.id
  log_analytics_workspace_id = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/audit"
  enabled_log {
    category = "AuditEvent"
  }
}

resource "azurerm_key_vault" "bare" {
  name                = "acme-bare"
  location            = "westeurope"
  resource_group_name = "rg"
  tenant_id           = "00000000-0000-0000-0000-000000000000"
  sku_name            = "standard"
}

resource "azurerm_storage_account" "legacy" {
  name                            = "acmelegacy"
  resource_group_name             = "rg"
  location                        = "westeurope"
  account_tier                    = "Standard"
  account_replication_type        = "GRS"
  enable_https_traffic_only       = false
  allow_nested_items_to_be_public = false
}

resource "azurerm_linux_virtual_machine" "app" {
  name                       = "app"
  resource_group_name        = "rg"
  location                   = "westeurope"
  size                       = "Standard_B2s"
  admin_username             = "azureuser"
  encryption_at_host_enabled = true
}

resource "azurerm_backup_policy_vm" "daily" {
  name                = "daily"
  resource_group_name = "rg"
  recovery_vault_name = "vault"
  backup {
    frequency = "Daily"
    time      = "23:00"
  }
  retention_daily {
    count = 30
  }
}

resource "azurerm_backup_protected_vm" "app" {
  resource_group_name = "rg"
  recovery_vault_name = "vault"
  source_vm_id        = azurerm_linux_virtual_machine.app.id
  backup_policy_id    = azurerm_backup_policy_vm.daily.id
}

resource "azurerm_windows_virtual_machine" "batch" {
  name                = "batch"
  resource_group_name = "rg"
  location            = "westeurope"
  size                = "Standard_B2s"
  admin_username      = "batchadmin"
}

resource "azurerm_redis_cache" "sessions" {
  name                          = "acme-sessions"
  location                      = "westeurope"
  resource_group_name           = "rg"
  capacity                      = 1
  family                        = "C"
  sku_name                      = "Standard"
  non_ssl_port_enabled          = true
  public_network_access_enabled = false
}
