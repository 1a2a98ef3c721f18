# Test tree for the IAM statement model (tests/engine/test_iam.py): every way a policy is
# written and every way it is attached. Expected SOC2-AUTH findings are listed in the test.

provider "aws" {
  region = "eu-west-1"
}

# --------------------------------------------------------------------------- policies

# jsonencode(), inline on a user (aws_iam_user_policy)
resource "aws_iam_user_policy" "u_jsonencode_mfa" {
  name = "require-mfa"
  user = aws_iam_user.u_jsonencode.name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyWithoutMFA"
      Effect    = "Deny"
      NotAction = ["iam:EnableMFADevice", "iam:ListMFADevices", "sts:GetSessionToken"]
      Resource  = "*"
      Condition = { BoolIfExists = { "aws:MultiFactorAuthPresent" = false } }
    }]
  })
}

# heredoc JSON in a managed policy, attached with aws_iam_user_policy_attachment
resource "aws_iam_policy" "heredoc_mfa" {
  name   = "heredoc-mfa"
  policy = <<-EOT
    {
      "Version": "2012-10-17",
      "Statement": [{
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}
      }]
    }
  EOT
}

resource "aws_iam_user_policy_attachment" "u_heredoc" {
  user       = aws_iam_user.u_heredoc.name
  policy_arn = aws_iam_policy.heredoc_mfa.arn
}

# quoted JSON string, attached with aws_iam_policy_attachment (users = [...])
resource "aws_iam_policy" "quoted_mfa" {
  name   = "quoted-mfa"
  policy = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"NotAction\":[\"iam:EnableMFADevice\",\"sts:GetSessionToken\"],\"Resource\":\"*\",\"Condition\":{\"BoolIfExists\":{\"aws:MultiFactorAuthPresent\":\"false\"}}}]}"
}

resource "aws_iam_policy_attachment" "quoted_mfa" {
  name       = "quoted-mfa"
  users      = [aws_iam_user.u_quoted.name]
  policy_arn = aws_iam_policy.quoted_mfa.arn
}

# file() of a JSON file, inline on a group (aws_iam_group_policy); membership via aws_iam_user_group_membership
resource "aws_iam_group" "g_file" {
  name = "g-file"
}

resource "aws_iam_group_policy" "g_file" {
  name   = "require-mfa"
  group  = aws_iam_group.g_file.name
  policy = file("${path.module}/policies/deny-without-mfa.json")
}

resource "aws_iam_user_group_membership" "u_group_file" {
  user   = aws_iam_user.u_group_file.name
  groups = [aws_iam_group.g_file.name]
}

# templatefile() in a managed policy, attached with aws_iam_group_policy_attachment;
# membership via aws_iam_group_membership (users = [...])
resource "aws_iam_policy" "template_mfa" {
  name   = "template-mfa"
  policy = templatefile("${path.module}/policies/deny-without-mfa.json.tpl", { session_action = "sts:GetSessionToken" })
}

resource "aws_iam_group" "g_template" {
  name = "g-template"
}

resource "aws_iam_group_policy_attachment" "g_template" {
  group      = aws_iam_group.g_template.name
  policy_arn = aws_iam_policy.template_mfa.arn
}

resource "aws_iam_group_membership" "g_template" {
  name  = "g-template"
  group = aws_iam_group.g_template.name
  users = [aws_iam_user.u_group_template.name]
}

# data aws_iam_policy_document with source_policy_documents and override_policy_documents,
# attached to a group with aws_iam_policy_attachment (groups = [...]). The weak "DenyWithoutMFA"
# statement of the document is replaced by the override (same sid), which makes it compliant.
data "aws_iam_policy_document" "read_only" {
  statement {
    sid       = "ReadOnly"
    actions   = ["s3:Get*", "s3:List*"]
    resources = ["*"]
  }
}

data "aws_iam_policy_document" "people" {
  source_policy_documents = [data.aws_iam_policy_document.read_only.json]

  statement {
    sid       = "DenyWithoutMFA"
    effect    = "Deny"
    actions   = ["s3:DeleteObject"]
    resources = ["*"]
    condition {
      test     = "BoolIfExists"
      variable = "aws:MultiFactorAuthPresent"
      values   = ["false"]
    }
  }

  override_policy_documents = [jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyWithoutMFA"
      Effect    = "Deny"
      NotAction = ["iam:EnableMFADevice", "iam:ListMFADevices", "sts:GetSessionToken"]
      Resource  = "*"
      Condition = { BoolIfExists = { "aws:MultiFactorAuthPresent" = "false" } }
    }]
  })]
}

resource "aws_iam_policy" "people" {
  name   = "people"
  policy = data.aws_iam_policy_document.people.json
}

resource "aws_iam_group" "g_doc" {
  name = "g-doc"
}

resource "aws_iam_policy_attachment" "people" {
  name       = "people"
  groups     = [aws_iam_group.g_doc.name]
  policy_arn = aws_iam_policy.people.arn
}

resource "aws_iam_user_group_membership" "u_group_doc" {
  user   = aws_iam_user.u_group_doc.name
  groups = [aws_iam_group.g_doc.name]
}

# The opposite: a source document that enforces MFA, weakened by an override with the same sid.
data "aws_iam_policy_document" "mfa" {
  statement {
    sid         = "DenyWithoutMFA"
    effect      = "Deny"
    not_actions = ["iam:EnableMFADevice", "sts:GetSessionToken"]
    resources   = ["*"]
    condition {
      test     = "BoolIfExists"
      variable = "aws:MultiFactorAuthPresent"
      values   = ["false"]
    }
  }
}

data "aws_iam_policy_document" "weakened" {
  source_policy_documents = [data.aws_iam_policy_document.mfa.json]
  override_policy_documents = [jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Sid = "DenyWithoutMFA", Effect = "Deny", Action = "iam:DeleteUser", Resource = "*" }]
  })]
}

resource "aws_iam_group" "g_weak" {
  name = "g-weak"
}

resource "aws_iam_group_policy" "g_weak" {
  name   = "weakened"
  group  = aws_iam_group.g_weak.name
  policy = data.aws_iam_policy_document.weakened.json
}

resource "aws_iam_user_group_membership" "u_weak" {
  user   = aws_iam_user.u_weak.name
  groups = [aws_iam_group.g_weak.name]
}

# A group whose only policy is defined outside this tree: coverage is unknown.
resource "aws_iam_group" "g_external" {
  name = "g-external"
}

resource "aws_iam_group_policy_attachment" "g_external" {
  group      = aws_iam_group.g_external.name
  policy_arn = "arn:aws:iam::111122223333:policy/OrgRequireMFA"
}

resource "aws_iam_user_group_membership" "u_external" {
  user   = aws_iam_user.u_external.name
  groups = [aws_iam_group.g_external.name]
}

# An AWS-managed policy known by name that does not enforce MFA.
resource "aws_iam_user_policy_attachment" "u_readonly" {
  user       = aws_iam_user.u_readonly.name
  policy_arn = "arn:aws:iam::aws:policy/ReadOnlyAccess"
}

# --------------------------------------------------------------------------- console users

resource "aws_iam_user" "u_jsonencode" { name = "u-jsonencode" }
resource "aws_iam_user" "u_heredoc" { name = "u-heredoc" }
resource "aws_iam_user" "u_quoted" { name = "u-quoted" }
resource "aws_iam_user" "u_group_file" { name = "u-group-file" }
resource "aws_iam_user" "u_group_template" { name = "u-group-template" }
resource "aws_iam_user" "u_group_doc" { name = "u-group-doc" }
resource "aws_iam_user" "u_weak" { name = "u-weak" }
resource "aws_iam_user" "u_external" { name = "u-external" }
resource "aws_iam_user" "u_readonly" { name = "u-readonly" }
resource "aws_iam_user" "u_none" { name = "u-none" }

resource "aws_iam_user_login_profile" "u_jsonencode" {
  user                    = aws_iam_user.u_jsonencode.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_heredoc" {
  user                    = aws_iam_user.u_heredoc.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_quoted" {
  user                    = aws_iam_user.u_quoted.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_group_file" {
  user                    = aws_iam_user.u_group_file.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_group_template" {
  user                    = aws_iam_user.u_group_template.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_group_doc" {
  user                    = aws_iam_user.u_group_doc.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_weak" {
  user                    = aws_iam_user.u_weak.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_external" {
  user                    = aws_iam_user.u_external.name
  password_reset_required = true
}

resource "aws_iam_user_login_profile" "u_readonly" {
  user                    = aws_iam_user.u_readonly.name
  password_reset_required = true
}

# No MFA policy, no forced password change, and a long-lived access key as well.
resource "aws_iam_user_login_profile" "u_none" {
  user = aws_iam_user.u_none.name
}

resource "aws_iam_access_key" "u_none" {
  user = aws_iam_user.u_none.name
}

# --------------------------------------------------------------------------- roles people can assume

data "aws_iam_policy_document" "trust_account_with_mfa" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::111122223333:root"]
    }
    condition {
      test     = "Bool"
      variable = "aws:MultiFactorAuthPresent"
      values   = ["true"]
    }
  }
}

# Admin through aws_iam_role_policy_attachment, MFA required: compliant.
resource "aws_iam_role" "r_admin_mfa" {
  name               = "admin-mfa"
  assume_role_policy = data.aws_iam_policy_document.trust_account_with_mfa.json
}

resource "aws_iam_role_policy_attachment" "r_admin_mfa" {
  role       = aws_iam_role.r_admin_mfa.name
  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
}

# PowerUserAccess through managed_policy_arns, trusted by a role ARN without MFA.
resource "aws_iam_role" "r_poweruser" {
  name                = "poweruser"
  managed_policy_arns = ["arn:aws:iam::aws:policy/PowerUserAccess"]
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { AWS = "arn:aws:iam::111122223333:role/engineers" } }]
  })
}

# Write access in an inline_policy block, trusted by an IAM user without MFA.
resource "aws_iam_role" "r_inline_write" {
  name = "inline-write"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { AWS = ["arn:aws:iam::111122223333:user/deployer"] } }]
  })
  inline_policy {
    name = "deploy"
    policy = jsonencode({
      Version   = "2012-10-17"
      Statement = [{ Effect = "Allow", Action = ["ecs:UpdateService"], Resource = "*" }]
    })
  }
}

# Read-only through aws_iam_role_policy: people may assume it without MFA.
resource "aws_iam_role" "r_readonly" {
  name = "readonly"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { AWS = "111122223333" } }]
  })
}

resource "aws_iam_role_policy" "r_readonly" {
  name = "read"
  role = aws_iam_role.r_readonly.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["s3:Get*", "s3:List*", "ec2:Describe*"], Resource = "*" }]
  })
}

# Write access through aws_iam_policy_attachment (roles = [...]), no MFA.
resource "aws_iam_policy" "write" {
  name = "write"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "s3:PutObject", Resource = "arn:aws:s3:::acme-data/*" }]
  })
}

resource "aws_iam_role" "r_attached_write" {
  name = "attached-write"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { AWS = "arn:aws:iam::111122223333:root" } }]
  })
}

resource "aws_iam_policy_attachment" "write" {
  name       = "write"
  roles      = [aws_iam_role.r_attached_write.name]
  policy_arn = aws_iam_policy.write.arn
}

# Privileges defined outside the tree: unknown.
resource "aws_iam_role" "r_external" {
  name = "external"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { AWS = "arn:aws:iam::111122223333:root" } }]
  })
}

resource "aws_iam_role_policy_attachment" "r_external" {
  role       = aws_iam_role.r_external.name
  policy_arn = "arn:aws:iam::111122223333:policy/ExternalOps"
}

# Service role with admin rights: not assumable by people, not in scope.
resource "aws_iam_role" "r_service" {
  name                = "service"
  managed_policy_arns = ["arn:aws:iam::aws:policy/AdministratorAccess"]
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ecs-tasks.amazonaws.com" } }]
  })
}
