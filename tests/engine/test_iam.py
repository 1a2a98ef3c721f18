"""The IAM statement model: parsing every policy syntax, attachment resolution, matching and
the declarative operators, end to end through the real Terraform and plan sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import ConditionError, EvalContext, ResourceIndex
from soc2infra._core.engine.evaluate import evaluate
from soc2infra._core.engine.iam.attachments import (
    ManagedPolicies,
    effective_policies,
    managed_policy_statements,
    principal_of,
)
from soc2infra._core.engine.iam.patterns import (
    covers_action,
    grants_write,
    is_read_only_pattern,
    matches_action,
    pattern_covers,
    pattern_matches,
    patterns_overlap,
)
from soc2infra._core.engine.iam.statements import Statement, parse_policy_json, policies_at
from soc2infra._core.engine.policy import PolicyPack
from soc2infra._core.engine.registry import compile_condition
from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan
from soc2infra._core.sources.terraform import load_terraform
from soc2infra._core.sources.terraform_plan import load_plan

TREE = Path(__file__).resolve().parent.parent / "data" / "iam_tree"
PACK = load_pack()
MANAGED = ManagedPolicies.from_data(PACK.data)


def _tree_resources() -> tuple[list[Resource], ResourceIndex]:
    resources, errors = load_terraform(sorted(TREE.glob("*.tf")))
    assert errors == []
    return resources, ResourceIndex(resources)


def _load_hcl(write_tree, text: str, files: dict[str, str] | None = None) -> tuple[list[Resource], ResourceIndex]:
    root = write_tree({"main.tf": text, **(files or {})})
    resources, errors = load_terraform(sorted(root.glob("*.tf")))
    assert errors == []
    return resources, ResourceIndex(resources)


def _outcomes(rule_id: str, resources: list[Resource]) -> dict[str, str]:
    rule = PACK.rule(rule_id)
    findings, passes = evaluate(resources, PolicyPack([rule], {}, ""), ResourceIndex(resources))
    out = {addr: "pass" for _rid, addr in passes}
    out.update({f.resource.address: f.status for f in findings})
    return out


# --------------------------------------------------------------------------- the test tree


def test_tree_gives_exactly_the_expected_authentication_findings():
    result = scan([str(p) for p in sorted(TREE.glob("*.tf"))], PACK)
    assert result.errors == []
    got = {(f.rule_id, f.resource.address, f.status) for f in result.findings if f.rule_id.startswith("SOC2-AUTH-")}
    assert got == {
        # console users: no MFA policy, a known managed policy without MFA, an override that weakened it
        ("SOC2-AUTH-IAM-001", "aws_iam_user_login_profile.u_none", "fail"),
        ("SOC2-AUTH-IAM-001", "aws_iam_user_login_profile.u_readonly", "fail"),
        ("SOC2-AUTH-IAM-001", "aws_iam_user_login_profile.u_weak", "fail"),
        # the only group policy is an ARN defined outside the tree
        ("SOC2-AUTH-IAM-001", "aws_iam_user_login_profile.u_external", "unknown"),
        # roles people can assume with write access and no MFA in the trust policy
        ("SOC2-AUTH-IAM-002", "aws_iam_role.r_poweruser", "fail"),
        ("SOC2-AUTH-IAM-002", "aws_iam_role.r_inline_write", "fail"),
        ("SOC2-AUTH-IAM-002", "aws_iam_role.r_attached_write", "fail"),
        ("SOC2-AUTH-IAM-002", "aws_iam_role.r_external", "unknown"),
        ("SOC2-AUTH-IAM-005", "aws_iam_user.u_none", "fail"),
        ("SOC2-AUTH-IAM-007", "aws_iam_user_login_profile.u_none", "fail"),
    }
    passed = {(rid, addr) for rid, addr in result.passes if rid.startswith("SOC2-AUTH-IAM-00")}
    # every syntax and attachment path that enforces MFA was recognised
    for user in ("u_jsonencode", "u_heredoc", "u_quoted", "u_group_file", "u_group_template", "u_group_doc"):
        assert ("SOC2-AUTH-IAM-001", f"aws_iam_user_login_profile.{user}") in passed
    for role in ("r_admin_mfa", "r_readonly"):
        assert ("SOC2-AUTH-IAM-002", f"aws_iam_role.{role}") in passed


def test_unknown_finding_names_the_external_policy():
    result = scan([str(TREE / "main.tf")], PACK)
    finding = next(f for f in result.findings if f.rule_id == "SOC2-AUTH-IAM-001"
                   and f.resource.address.endswith("u_external"))
    assert finding.details["unresolved"] == [
        "policy arn:aws:iam::111122223333:policy/OrgRequireMFA is defined outside the scanned tree"]
    assert finding.details["principal"] == "aws_iam_user.u_external"


@pytest.mark.parametrize("address", [
    "aws_iam_user_policy.u_jsonencode_mfa", "aws_iam_policy.heredoc_mfa", "aws_iam_policy.quoted_mfa",
    "aws_iam_group_policy.g_file", "aws_iam_policy.template_mfa", "aws_iam_policy.people",
])
def test_every_policy_syntax_yields_the_mfa_deny_statement(address):
    _resources, index = _tree_resources()
    found = policies_at(index.by_address[address], "policy", index)
    assert found.gaps == []
    denies = [st for st in found.statements if st.effect == "Deny"]
    assert len(denies) == 1
    keys = {(c.operator, c.key) for c in denies[0].conditions}
    assert any(k == "aws:MultiFactorAuthPresent" for _op, k in keys)
    assert covers_action(denies[0], "ec2:RunInstances") is True


def test_template_variables_are_substituted():
    _resources, index = _tree_resources()
    [st] = policies_at(index.by_address["aws_iam_policy.template_mfa"], "policy", index).statements
    assert "sts:GetSessionToken" in st.not_actions
    assert st.conditions[0].operator == "Null"


def test_policy_document_merges_source_statements_and_overrides_by_sid():
    _resources, index = _tree_resources()
    people = policies_at(index.by_address["aws_iam_policy.people"], "policy", index).statements
    assert [st.sid for st in people] == ["ReadOnly", "DenyWithoutMFA"]
    assert people[1].not_actions and not people[1].actions  # the override replaced the weak statement

    weakened = policies_at(index.by_address["aws_iam_group_policy.g_weak"], "policy", index).statements
    assert [(st.sid, st.actions) for st in weakened] == [("DenyWithoutMFA", ("iam:DeleteUser",))]


def test_effective_policies_follow_groups_and_every_attachment_kind():
    _resources, index = _tree_resources()

    def origins(user: str) -> set[str]:
        found = effective_policies(principal_of(index.by_address[f"aws_iam_user.{user}"]), index, MANAGED)
        return {st.origin for st in found.statements}

    assert origins("u_jsonencode") == {"aws_iam_user_policy.u_jsonencode_mfa"}
    assert origins("u_heredoc") == {"aws_iam_policy.heredoc_mfa"}
    assert origins("u_quoted") == {"aws_iam_policy.quoted_mfa"}
    assert origins("u_group_file") == {"aws_iam_group_policy.g_file"}
    assert origins("u_group_template") == {"aws_iam_policy.template_mfa"}
    assert origins("u_readonly") == {"arn:aws:iam::aws:policy/ReadOnlyAccess"}
    assert origins("u_none") == set()

    role = effective_policies(principal_of(index.by_address["aws_iam_role.r_poweruser"]), index, MANAGED)
    assert {st.origin for st in role.statements} == {"arn:aws:iam::aws:policy/PowerUserAccess"}
    inline = effective_policies(principal_of(index.by_address["aws_iam_role.r_inline_write"]), index, MANAGED)
    assert [st.origin for st in inline.statements] == ["aws_iam_role.r_inline_write.inline_policy.policy"]


def test_documents_are_parsed_once_per_scan():
    _resources, index = _tree_resources()
    res = index.by_address["aws_iam_policy.people"]
    assert policies_at(res, "policy", index) is policies_at(res, "policy", index)


# --------------------------------------------------------------------------- plan JSON


def _plan(resources: list[dict]) -> dict:
    return {"format_version": "1.2", "terraform_version": "1.9.0",
            "planned_values": {"root_module": {"resources": resources}}, "resource_changes": []}


def test_plan_json_policies_and_attachments_give_the_same_results():
    mfa = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "NotAction": ["iam:EnableMFADevice", "sts:GetSessionToken"], "Resource": "*",
        "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}}]})
    plan = _plan([
        {"address": "aws_iam_group.people", "mode": "managed", "type": "aws_iam_group", "name": "people",
         "values": {"name": "people"}},
        {"address": "aws_iam_policy.mfa", "mode": "managed", "type": "aws_iam_policy", "name": "mfa",
         "values": {"name": "require-mfa", "policy": mfa}},
        {"address": "aws_iam_group_policy_attachment.mfa", "mode": "managed",
         "type": "aws_iam_group_policy_attachment", "name": "mfa",
         "values": {"group": "people", "policy_arn": "arn:aws:iam::111122223333:policy/require-mfa"}},
        {"address": "aws_iam_user.ann", "mode": "managed", "type": "aws_iam_user", "name": "ann",
         "values": {"name": "ann"}},
        {"address": "aws_iam_user.ben", "mode": "managed", "type": "aws_iam_user", "name": "ben",
         "values": {"name": "ben"}},
        {"address": "aws_iam_user_group_membership.ann", "mode": "managed",
         "type": "aws_iam_user_group_membership", "name": "ann", "values": {"user": "ann", "groups": ["people"]}},
        {"address": "aws_iam_user_login_profile.ann", "mode": "managed", "type": "aws_iam_user_login_profile",
         "name": "ann", "values": {"user": "ann"}},
        {"address": "aws_iam_user_login_profile.ben", "mode": "managed", "type": "aws_iam_user_login_profile",
         "name": "ben", "values": {"user": "ben"}},
    ])
    resources, errors = load_plan(plan, "plan.json")
    assert errors == []
    assert _outcomes("SOC2-AUTH-IAM-001", resources) == {
        "aws_iam_user_login_profile.ann": "pass", "aws_iam_user_login_profile.ben": "fail"}


def test_plan_json_rendered_policy_document_is_used():
    doc = json.dumps({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                     "Principal": {"AWS": "*"}}]})
    plan = _plan([
        {"address": "data.aws_iam_policy_document.trust", "mode": "data", "type": "aws_iam_policy_document",
         "name": "trust", "values": {"json": doc, "statement": []}},
    ])
    resources, _errors = load_plan(plan, "plan.json")
    index = ResourceIndex(resources)
    [st] = policies_at(resources[0], "json", index).statements
    assert st.principals == (("AWS", "*"),)


# --------------------------------------------------------------------------- three-valued edges


MFA_POLICY = """
resource "aws_iam_policy" "mfa" {
  name = "mfa"
  policy = jsonencode({
    Statement = [{ Effect = "Deny", Action = "*", Resource = "*",
                   Condition = { Bool = { "aws:MultiFactorAuthPresent" = "false" } } }]
  })
}
"""


def test_attachment_to_an_unknown_user_makes_coverage_unknown_not_pass(write_tree):
    resources, _index = _load_hcl(write_tree, MFA_POLICY + """
variable "who" {
  type = string
}

resource "aws_iam_user" "amy" { name = "amy" }
resource "aws_iam_user_login_profile" "amy" { user = aws_iam_user.amy.name }

resource "aws_iam_user_policy_attachment" "maybe" {
  user       = var.who
  policy_arn = aws_iam_policy.mfa.arn
}
""")
    assert _outcomes("SOC2-AUTH-IAM-001", resources) == {"aws_iam_user_login_profile.amy": "unknown"}


def test_user_defined_outside_the_tree_is_unknown_unless_covered_by_name(write_tree):
    resources, _index = _load_hcl(write_tree, MFA_POLICY + """
resource "aws_iam_user_login_profile" "ghost" { user = "ghost" }
resource "aws_iam_user_login_profile" "named" { user = "named" }

resource "aws_iam_user_policy_attachment" "named" {
  user       = "named"
  policy_arn = aws_iam_policy.mfa.arn
}
""")
    assert _outcomes("SOC2-AUTH-IAM-001", resources) == {
        "aws_iam_user_login_profile.ghost": "unknown", "aws_iam_user_login_profile.named": "pass"}


def test_policy_from_a_variable_is_a_gap_and_a_computed_resource_arn_keeps_the_statement(write_tree):
    resources, index = _load_hcl(write_tree, """
variable "policy_json" {
  type = string
}

resource "aws_s3_bucket" "data" { bucket = "acme-data" }

resource "aws_iam_policy" "from_var" {
  name   = "from-var"
  policy = var.policy_json
}

data "aws_iam_policy_document" "bucket" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/*"]
  }
}

resource "aws_iam_policy" "bucket" {
  name   = "bucket"
  policy = data.aws_iam_policy_document.bucket.json
}
""")
    from_var = policies_at(index.by_address["aws_iam_policy.from_var"], "policy", index)
    assert from_var.statements == [] and from_var.gaps == ["aws_iam_policy.from_var.policy is not known statically"]
    [st] = policies_at(index.by_address["aws_iam_policy.bucket"], "policy", index).statements
    assert st.actions == ("s3:GetObject",) and isinstance(st.resources[0], Unknown)


def test_unknown_actions_give_unknown_matches():
    st = Statement(effect="Allow", actions=("s3:GetObject", Unknown("var.extra")), resources=("*",))
    assert covers_action(st, "s3:GetObject") is True
    assert covers_action(st, "iam:*") is None
    assert matches_action(st, "iam:PassRole") is None
    assert grants_write(st) is None
    known = Statement(effect="Allow", actions=("s3:GetObject",), resources=("*",))
    assert matches_action(known, "iam:PassRole") is False


def test_partial_jsonencode_structure_is_used_when_the_source_keeps_it():
    class PartialUnknown(Unknown):
        __slots__ = ("partial",)

        def __init__(self, partial: object) -> None:
            super().__init__("jsonencode() with computed values")
            self.partial = partial

    doc = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": Unknown("arn")}]}
    res = Resource("terraform", "aws_iam_policy", "aws_iam_policy.p", {"policy": PartialUnknown(doc)})
    index = ResourceIndex([res])
    [st] = policies_at(res, "policy", index).statements
    assert covers_action(st, "*") is True and isinstance(st.resources[0], Unknown)


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize("pattern, name, expected", [
    ("iam:*", "iam:PassRole", True),
    ("IAM:passrole", "iam:PassRole", True),  # case-insensitive
    ("s3:Get?bject", "s3:GetObject", True),
    ("s3:Get?bject", "s3:GetObjects", False),
    ("ec2:Describe*", "ec2:RunInstances", False),
])
def test_pattern_matches(pattern, name, expected):
    assert pattern_matches(pattern, name) is expected


@pytest.mark.parametrize("general, specific, expected", [
    ("*", "iam:*", True),
    ("iam:*", "iam:Pass*", True),
    ("iam:Get*", "iam:*", False),
    ("iam:?*", "iam:*", False),  # "iam:" itself is matched by the specific pattern only
    ("s3:*Object", "s3:GetObject", True),
    ("*:*", "*", False),
])
def test_pattern_covers(general, specific, expected):
    assert pattern_covers(general, specific) is expected


@pytest.mark.parametrize("a, b, expected", [
    ("iam:Pass*", "iam:*", True),
    ("s3:Get*", "s3:Put*", False),
    ("s3:*Object", "s3:Put*", True),
    ("ec2:?", "ec2:ab", False),
])
def test_patterns_overlap(a, b, expected):
    assert patterns_overlap(a, b) is expected


def test_not_action_semantics():
    deny_most = Statement(effect="Deny", not_actions=("iam:EnableMFADevice", "sts:GetSessionToken"), resources=("*",))
    assert covers_action(deny_most, "s3:*") is True
    assert covers_action(deny_most, "iam:*") is False  # iam:EnableMFADevice is carved out
    assert matches_action(deny_most, "iam:*") is True
    assert matches_action(deny_most, "sts:GetSessionToken") is False


def test_read_only_classification():
    assert is_read_only_pattern("s3:Get*") and is_read_only_pattern("ec2:DescribeInstances")
    assert not is_read_only_pattern("s3:*") and not is_read_only_pattern("*")
    assert not is_read_only_pattern("s3:G*")


def test_managed_policies_known_by_name_and_unknown_ones_are_gaps():
    admin = managed_policy_statements("arn:aws:iam::aws:policy/AdministratorAccess", MANAGED)
    assert isinstance(admin, list) and covers_action(admin[0], "*") is True
    job = managed_policy_statements("arn:aws:iam::aws:policy/job-function/ViewOnlyAccess", MANAGED)
    assert isinstance(job, list) and grants_write(job[0]) is False
    assert isinstance(managed_policy_statements("arn:aws:iam::aws:policy/SomethingNew", MANAGED), Unknown)
    assert managed_policy_statements("arn:aws:iam::111122223333:policy/mine", MANAGED) is None


def test_parse_policy_json_accepts_single_statement_and_string_principal():
    [st] = parse_policy_json('{"statement": {"effect": "Allow", "action": "s3:*", "principal": "*"}}', "x")
    assert st.actions == ("s3:*",) and st.principals == (("AWS", "*"),)
    assert isinstance(parse_policy_json("not json", "x"), Unknown)


# --------------------------------------------------------------------------- operators


def _eval(condition: dict, res: Resource, index: ResourceIndex):
    ctx = EvalContext(res.attributes, res, index)
    return compile_condition(condition, data=PACK.data)(ctx), ctx.notes


def test_iam_statements_quantifiers_and_notes():
    doc = json.dumps({"Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"},
    ]})
    res = Resource("terraform", "aws_iam_policy", "aws_iam_policy.p", {"policy": doc})
    index = ResourceIndex([res])
    admin = {"all": [{"allows_action": "*"}, {"resource_is_wildcard": True}]}
    result, notes = _eval({"iam_statements": {"quantifier": "none", "where": admin}}, res, index)
    assert result is False and notes["matching_statement"] == {"statement": "Admin", "policy": "aws_iam_policy.p"}
    assert _eval({"iam_statements": {"quantifier": "any", "where": admin}}, res, index)[0] is True
    assert _eval({"iam_statements": {"quantifier": "all", "where": {"effect": "allow"}}}, res, index)[0] is True
    assert _eval({"iam_statements": {"where": {"path": "sid", "equals": "Read"}}}, res, index)[0] is True


def test_has_condition_and_principal_operators():
    trust = json.dumps({"Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
        "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"},
        "Condition": {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/*"}}}]})
    res = Resource("terraform", "aws_iam_role", "aws_iam_role.ci", {"assume_role_policy": trust})
    index = ResourceIndex([res])

    def trust_any(where: dict):
        return _eval({"iam_trust": {"where": where}}, res, index)[0]

    assert trust_any({"has_condition": {"key": "*:sub"}}) is True
    assert trust_any({"has_condition": {"key": "*:aud"}}) is False
    assert trust_any({"has_condition": {"operator": "stringlike", "values": ["repo:acme/*"]}}) is True
    assert trust_any({"principal_types": ["Federated"]}) is True
    assert trust_any({"principal_types": ["AWS"]}) is False
    assert trust_any({"principal_matches": {"type": "Federated", "glob": ["*:oidc-provider/*"]}}) is True


def test_covers_all_actions_with_service_exceptions():
    res = Resource("terraform", "aws_iam_policy", "aws_iam_policy.p", {"policy": json.dumps({"Statement": [
        {"Effect": "Deny", "NotAction": ["iam:EnableMFADevice", "sts:GetSessionToken"], "Resource": "*"}]})})
    index = ResourceIndex([res])
    where = {"covers_all_actions": {"except_services": ["iam", "sts"]}}
    assert _eval({"iam_statements": {"where": where}}, res, index)[0] is True
    where = {"covers_all_actions": {"except_services": ["iam"]}}
    assert _eval({"iam_statements": {"where": where}}, res, index)[0] is False
    assert _eval({"iam_statements": {"where": {"covers_all_actions": True}}}, res, index)[0] is False


def test_first_of_type_anchors_one_resource():
    a = Resource("terraform", "azuread_conditional_access_policy", "azuread_conditional_access_policy.a", {})
    b = Resource("terraform", "azuread_conditional_access_policy", "azuread_conditional_access_policy.b", {})
    index = ResourceIndex([b, a])
    assert _eval({"first_of_type": True}, a, index)[0] is True
    assert _eval({"first_of_type": True}, b, index)[0] is False


@pytest.mark.parametrize("condition", [
    {"iam_statements": {"quantifier": "some"}},
    {"iam_statements": {"paht": "policy"}},
    {"has_condition": {"keys": "x"}},
    {"covers_all_actions": "yes"},
    {"grants_write": "true"},
    {"principal_matches": {"kind": "AWS"}},
])
def test_bad_operator_arguments_are_rejected_at_compile_time(condition):
    with pytest.raises(ConditionError):
        compile_condition(condition)


def test_dynamic_statement_with_an_optional_sid_left_out_does_not_crash(write_tree):
    """terraform-aws-eks shape: `sid = statement.value.sid` where the caller left the optional
    attribute out. The sid is null or unknown, never truth-tested (was exit 3)."""
    resources, index = _load_hcl(write_tree, """
variable "statements" {
  type = list(object({
    sid     = optional(string)
    actions = list(string)
  }))
  default = [{ actions = ["iam:*"] }]
}

data "aws_iam_policy_document" "this" {
  dynamic "statement" {
    for_each = var.statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = ["*"]
    }
  }
}

resource "aws_iam_policy" "this" {
  name   = "x"
  policy = data.aws_iam_policy_document.this.json
}
""")
    [st] = policies_at(index.by_address["aws_iam_policy.this"], "policy", index).statements
    assert st.sid == "" and st.actions == ("iam:*",)
    findings, _passes = evaluate(resources, PACK, index)  # every rule runs over the unknown sid
    assert all(f.status in ("fail", "unknown") for f in findings)
