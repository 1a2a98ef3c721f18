# A realistic Azure tree for the Azure rules: both azurerm attribute generations, split
# resources, a module called twice, count/for_each, dynamic blocks, and references that come
# from outside the tree (variables without values) where the answer must be "unknown".
terraform {
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
  }
}

variable "tenant_id" {
  type    = string
  default = "00000000-0000-0000-0000-000000000000"
}

# IDs owned by another team's state: the tree cannot tell what they point at.
variable "shared_vault_diagnostics_target" {
  type = string
}

variable "central_backup_policy_id" {
  type = string
}

locals {
  location     = "westeurope"
  workspace_id = azurerm_log_analytics_workspace.audit.id
  web_ports    = ["80", "443"]
  watched_operations = {
    nsg_write  = "Microsoft.Network/networkSecurityGroups/write"
    nsg_delete = "Microsoft.Network/networkSecurityGroups/delete"
    policy     = "Microsoft.Authorization/policyAssignments/write"
    sql_fw     = "Microsoft.Sql/servers/firewallRules/write"
  }
}

data "azurerm_subscription" "current" {}

resource "azurerm_log_analytics_workspace" "audit" {
  name                = "audit"
  location            = local.location
  resource_group_name = "rg-ops"
  sku                 = "PerGB2018"
  retention_in_days   = 365
}

resource "azurerm_monitor_diagnostic_setting" "activity" {
  name                       = "activity-log"
  target_resource_id         = data.azurerm_subscription.current.id
  log_analytics_workspace_id = local.workspace_id
  dynamic "enabled_log" {
    for_each = toset(["Administrative", "Security", "Policy", "Alert"])
    content {
      category = enabled_log.value
    }
  }
}

resource "azurerm_monitor_action_group" "secops" {
  name                = "secops"
  resource_group_name = "rg-ops"
  short_name          = "secops"
}

resource "azurerm_monitor_activity_log_alert" "watch" {
  for_each            = local.watched_operations
  name                = each.key
  resource_group_name = "rg-ops"
  location            = "global"
  scopes              = [data.azurerm_subscription.current.id]
  criteria {
    category       = "Administrative"
    operation_name = each.value
  }
  action {
    action_group_id = azurerm_monitor_action_group.secops.id
  }
}

# ---------------------------------------------------------------- data stores (module twice)

module "orders" {
  source       = "./modules/datastore"
  name         = "orders"
  workspace_id = local.workspace_id
  tenant_id    = var.tenant_id
}

module "scratch" {
  source       = "./modules/datastore"
  name         = "scratch"
  replication  = "LRS" # finding: not geo-redundant
  workspace_id = local.workspace_id
  tenant_id    = var.tenant_id
}

# azurerm 3.x names: secure transfer switched off under the old name (finding), RBAC on the
# vault under the old name (compliant), Redis non-TLS port under the old name (finding).
resource "azurerm_storage_account" "legacy" {
  name                            = "acmelegacy"
  resource_group_name             = "rg-legacy"
  location                        = local.location
  account_tier                    = "Standard"
  account_replication_type        = "RAGRS"
  enable_https_traffic_only       = false
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 14
    }
    container_delete_retention_policy {
      days = 14
    }
    # no diagnostic setting and no CMK: findings
  }
}

resource "azurerm_storage_account_network_rules" "legacy" {
  storage_account_id = azurerm_storage_account.legacy.id
  default_action     = "Deny"
  ip_rules           = ["203.0.113.10"]
}

resource "azurerm_key_vault" "shared" {
  name                       = "kv-shared"
  location                   = local.location
  resource_group_name        = "rg-legacy"
  tenant_id                  = var.tenant_id
  sku_name                   = "standard"
  purge_protection_enabled   = true
  enable_rbac_authorization  = true
  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
  }
}

# Its diagnostic setting targets an ID from another state: logged or not is unknown.
resource "azurerm_monitor_diagnostic_setting" "shared_vault" {
  name                       = "kv-audit"
  target_resource_id         = var.shared_vault_diagnostics_target
  log_analytics_workspace_id = local.workspace_id
  log {
    category = "AuditEvent"
    enabled  = true
  }
}

resource "azurerm_redis_cache" "sessions" {
  name                          = "acme-sessions"
  location                      = local.location
  resource_group_name           = "rg-legacy"
  capacity                      = 1
  family                        = "C"
  sku_name                      = "Standard"
  enable_non_ssl_port           = true
  minimum_tls_version           = "1.2"
  public_network_access_enabled = false
}

resource "azurerm_cosmosdb_account" "catalog" {
  name                               = "acme-catalog"
  location                           = local.location
  resource_group_name                = "rg-legacy"
  offer_type                         = "Standard"
  local_authentication_disabled      = true
  access_key_metadata_writes_enabled = false
  public_network_access_enabled      = false
  backup {
    type = "Continuous"
    tier = "Continuous30Days"
  }
}

# ---------------------------------------------------------------- SQL

resource "azurerm_mssql_server" "main" {
  name                          = "acme-sql"
  resource_group_name           = "rg-data"
  location                      = local.location
  version                       = "12.0"
  administrator_login           = "sqladmin"
  administrator_login_password  = "Winter2026!Sql" # finding: literal credential (masked)
  public_network_access_enabled = false
  azuread_administrator {
    login_username = "sql-admins"
    object_id      = "11111111-1111-1111-1111-111111111111"
    # SQL logins still allowed: finding
  }
}

resource "azurerm_mssql_server_extended_auditing_policy" "main" {
  server_id         = azurerm_mssql_server.main.id
  storage_endpoint  = "https://acmeaudit.blob.core.windows.net/"
  retention_in_days = 120
}

resource "azurerm_mssql_server_security_alert_policy" "main" {
  resource_group_name = "rg-data"
  server_name         = azurerm_mssql_server.main.name
  state               = "Enabled"
  email_addresses     = ["security@example.com"]
}

resource "azurerm_mssql_database" "orders" {
  name           = "orders"
  server_id      = azurerm_mssql_server.main.id
  sku_name       = "BC_Gen5_2"
  zone_redundant = true
  short_term_retention_policy {
    retention_days = 14
  }
  long_term_retention_policy {
    weekly_retention = "P5W"
  }
}

resource "azurerm_mssql_firewall_rule" "everyone" {
  name             = "everyone"
  server_id        = azurerm_mssql_server.main.id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "255.255.255.255"
}

# ---------------------------------------------------------------- network

resource "azurerm_virtual_network" "main" {
  name                = "main"
  location            = local.location
  resource_group_name = "rg-net"
  address_space       = ["10.0.0.0/16"]
}

resource "azurerm_network_watcher_flow_log" "main" {
  name                 = "main"
  network_watcher_name = "nw"
  resource_group_name  = "NetworkWatcherRG"
  target_resource_id   = azurerm_virtual_network.main.id
  storage_account_id   = module.orders.storage_account_id
  enabled              = true
  retention_policy {
    enabled = true
    days    = 90
  }
}

resource "azurerm_network_security_group" "web" {
  name                = "web"
  location            = local.location
  resource_group_name = "rg-net"
  dynamic "security_rule" {
    for_each = local.web_ports
    content {
      name                       = "allow-${security_rule.value}"
      priority                   = 100 + security_rule.key
      direction                  = "Inbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_port_range          = "*"
      destination_port_range     = security_rule.value
      source_address_prefix      = "Internet"
      destination_address_prefix = "*"
    }
  }
}

resource "azurerm_network_security_rule" "ssh_anywhere" {
  name                        = "ssh"
  priority                    = 200
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "20-25"
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
  resource_group_name         = "rg-net"
  network_security_group_name = azurerm_network_security_group.web.name
}

# ---------------------------------------------------------------- compute and backup

resource "azurerm_recovery_services_vault" "main" {
  name                = "vault"
  location            = local.location
  resource_group_name = "rg-backup"
  sku                 = "Standard"
  immutability        = "Unlocked"
}

resource "azurerm_backup_policy_vm" "daily" {
  name                = "daily"
  resource_group_name = "rg-backup"
  recovery_vault_name = azurerm_recovery_services_vault.main.name
  backup {
    frequency = "Daily"
    time      = "23:00"
  }
  retention_daily {
    count = 30
  }
}

resource "azurerm_linux_virtual_machine" "web" {
  count                      = 2
  name                       = "web-${count.index}"
  resource_group_name        = "rg-web"
  location                   = local.location
  size                       = "Standard_D2s_v5"
  admin_username             = "azureuser"
  encryption_at_host_enabled = true
  admin_ssh_key {
    username   = "azureuser"
    public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests azureuser"
  }
}

resource "azurerm_backup_protected_vm" "web" {
  count               = 2
  resource_group_name = "rg-backup"
  recovery_vault_name = azurerm_recovery_services_vault.main.name
  source_vm_id        = azurerm_linux_virtual_machine.web[count.index].id
  backup_policy_id    = azurerm_backup_policy_vm.daily.id
}

# Protected, but under a policy managed elsewhere: unknown retention.
resource "azurerm_linux_virtual_machine" "jump" {
  name                       = "jump"
  resource_group_name        = "rg-web"
  location                   = local.location
  size                       = "Standard_B2s"
  admin_username             = "azureuser"
  encryption_at_host_enabled = true
  admin_ssh_key {
    username   = "azureuser"
    public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests azureuser"
  }
}

resource "azurerm_backup_protected_vm" "jump" {
  resource_group_name = "rg-backup"
  recovery_vault_name = azurerm_recovery_services_vault.main.name
  source_vm_id        = azurerm_linux_virtual_machine.jump.id
  backup_policy_id    = var.central_backup_policy_id
}

# Not protected at all, and a literal admin password: findings.
resource "azurerm_windows_virtual_machine" "batch" {
  name                       = "batch"
  resource_group_name        = "rg-batch"
  location                   = local.location
  size                       = "Standard_D4s_v5"
  admin_username             = "batchadmin"
  admin_password             = "Batch-P@ssw0rd-2026"
  encryption_at_host_enabled = true
}

# ---------------------------------------------------------------- AKS (azurerm 3.x names)

resource "azurerm_kubernetes_cluster" "prod" {
  name                            = "prod"
  location                        = local.location
  resource_group_name             = "rg-aks"
  dns_prefix                      = "prod"
  local_account_disabled          = true
  azure_policy_enabled            = true
  automatic_channel_upgrade       = "patch"
  api_server_authorized_ip_ranges = ["203.0.113.0/24"]
  default_node_pool {
    name       = "system"
    vm_size    = "Standard_D4s_v5"
    node_count = 3
  }
  identity {
    type = "SystemAssigned"
  }
  azure_active_directory_role_based_access_control {
    azure_rbac_enabled = true
  }
  network_profile {
    network_plugin = "azure"
    network_policy = "azure"
  }
  oms_agent {
    log_analytics_workspace_id = local.workspace_id
  }
}

resource "azurerm_monitor_diagnostic_setting" "aks" {
  name                       = "aks-audit"
  target_resource_id         = azurerm_kubernetes_cluster.prod.id
  log_analytics_workspace_id = local.workspace_id
  enabled_log {
    category = "kube-audit-admin"
  }
}
