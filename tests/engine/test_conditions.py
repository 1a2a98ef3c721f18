"""The condition language: three-valued logic, path tests, quantifiers, related resources."""

from __future__ import annotations

import pytest

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import ConditionError, EvalContext, ResourceIndex
from soc2infra._core.engine.registry import compile_condition


def res(attrs, rtype="t", address="t.a", **kw) -> Resource:
    return Resource(kind="terraform", type=rtype, address=address, attributes=attrs, **kw)


def check(cond, attrs, others=()):
    r = res(attrs)
    idx = ResourceIndex([r, *others])
    return compile_condition(cond)(EvalContext(r.attributes, r, idx))


@pytest.mark.parametrize("cond, attrs, want", [
    ({"path": "a", "equals": True}, {"a": True}, True),
    ({"path": "a", "equals": True}, {"a": "true"}, True),
    ({"path": "a", "equals": True}, {"a": False}, False),
    ({"path": "a", "equals": True}, {}, False),
    ({"path": "a", "equals": False, "default": False}, {}, True),
    ({"path": "a", "equals": True}, {"a": Unknown()}, None),
    ({"path": "a", "gte": 7}, {"a": "30"}, True),
    ({"path": "a", "gte": 7}, {"a": 1}, False),
    ({"path": "a.b", "equals": "x"}, {"a": [{"b": "x"}, {"b": "x"}]}, True),
    ({"path": "a.b", "equals": "x"}, {"a": [{"b": "x"}, {"b": "y"}]}, False),
    ({"path": "a.b", "equals": "x", "quantifier": "any"}, {"a": [{"b": "x"}, {"b": "y"}]}, True),
    ({"path": "a", "exists": True}, {"a": Unknown()}, None),
    ({"path": "a", "exists": False}, {}, True),
    ({"path": "a", "cidr_overlaps": ["0.0.0.0/0"]}, {"a": "10.0.0.0/8"}, True),
    ({"path": "a", "contains": "api"}, {"a": ["api", "audit"]}, True),
    ({"path": "a", "matches": "^arn:"}, {"a": "arn:aws:kms"}, True),
    ({"path": "a", "in": ["AES256", "aws:kms"]}, {"a": "aws:kms"}, True),
    ({"path": "m['x.io/y']", "equals": "1"}, {"m": {"x.io/y": "1"}}, True),
])
def test_path_tests(cond, attrs, want):
    assert check(cond, attrs) is want


def test_kleene_logic_never_turns_unknown_into_pass():
    u = {"path": "u", "equals": True}
    t = {"path": "t", "equals": True}
    f = {"path": "f", "equals": True}
    attrs = {"u": Unknown(), "t": True, "f": False}
    assert check({"all": [u, t]}, attrs) is None
    assert check({"all": [u, f]}, attrs) is False
    assert check({"any": [u, f]}, attrs) is None
    assert check({"any": [u, t]}, attrs) is True
    assert check({"not": u}, attrs) is None


def test_quantifiers():
    attrs = {"c": [{"p": True}, {"p": False}]}
    where = {"path": "p", "equals": True}
    assert check({"for_all": {"path": "c", "where": where}}, attrs) is False
    assert check({"for_any": {"path": "c", "where": where}}, attrs) is True
    assert check({"for_none": {"path": "c", "where": where}}, attrs) is False
    assert check({"for_all": {"path": "missing", "where": where}}, attrs) is True
    assert check({"count": {"path": "c", "where": where, "gte": 2}}, attrs) is False


def test_related_by_reference_and_by_literal_value():
    bucket = res({"bucket": "logs"}, "aws_s3_bucket", "aws_s3_bucket.a", identities=frozenset({"logs"}))
    by_ref = res({"bucket": Unknown()}, "sse", "sse.a", references={"bucket": frozenset({"aws_s3_bucket.a"})})
    by_value = res({"bucket": "logs"}, "ver", "ver.a")
    idx = ResourceIndex([bucket, by_ref, by_value])
    ctx = EvalContext(bucket.attributes, bucket, idx)
    assert compile_condition({"related": {"types": ["sse"], "via": "bucket"}})(ctx) is True
    assert compile_condition({"related": {"types": ["ver"], "via": "bucket"}})(ctx) is True
    assert compile_condition({"related": {"types": ["other"], "via": "bucket"}})(ctx) is False
    cond = {"related": {"types": ["ver"], "via": "bucket", "where": {"path": "x", "exists": True}}}
    assert compile_condition(cond)(ctx) is False


def test_selector_link():
    dep = Resource("kubernetes", "Deployment", "apps/v1/Deployment/ns/a",
                   {"spec": {"template": {"metadata": {"labels": {"app": "a"}}}}}, namespace="ns")
    pdb = Resource("kubernetes", "PodDisruptionBudget", "policy/v1/PodDisruptionBudget/ns/p",
                   {"spec": {"selector": {"matchLabels": {"app": "a"}}}}, namespace="ns")
    other_ns = Resource("kubernetes", "PodDisruptionBudget", "policy/v1/PodDisruptionBudget/x/p",
                        {"spec": {"selector": {"matchLabels": {"app": "a"}}}}, namespace="x")
    cond = compile_condition({"related": {"types": ["PodDisruptionBudget"], "link": "selector"}})
    assert cond(EvalContext(dep.attributes, dep, ResourceIndex([dep, pdb]))) is True
    assert cond(EvalContext(dep.attributes, dep, ResourceIndex([dep, other_ns]))) is False


@pytest.mark.parametrize("bad, field", [
    ({}, "condition"),
    ({"path": "a"}, "condition"),
    ({"path": "a", "equals": 1, "bogus": 2}, "condition"),
    ({"all": []}, "condition.all"),
    ({"related": {"types": ["x"], "link": "sideways"}}, "condition.related.link"),
    ({"path": "a", "matches": "("}, "condition.matches"),
])
def test_bad_conditions_name_the_field(bad, field):
    with pytest.raises(ConditionError) as exc:
        compile_condition(bad)
    assert exc.value.field == field


def test_unknown_that_is_known_to_be_set_exists():
    assert check({"path": "a", "exists": True}, {"a": Unknown("arn", nonnull=True)}) is True
    assert check({"path": "a", "exists": True}, {"a": Unknown("maybe null")}) is None


def test_candidates_pass_only_when_every_branch_complies():
    ok = {"path": "a", "in": ["AES256", "aws:kms"]}
    assert check(ok, {"a": Unknown("c", candidates=("AES256", "aws:kms"))}) is True
    assert check(ok, {"a": Unknown("c", candidates=("none", "off"))}) is False
    assert check(ok, {"a": Unknown("c", candidates=("AES256", "none"))}) is None


def test_scalar_tests_apply_to_each_element_of_a_list():
    assert check({"path": "cidrs", "not_matches": "/0$"}, {"cidrs": ["10.0.0.0/8", "0.0.0.0/0"]}) is False
    assert check({"path": "cidrs", "not_matches": "/0$"}, {"cidrs": ["10.0.0.0/8"]}) is True
    assert check({"path": "cidrs", "matches": "/0$", "quantifier": "any"}, {"cidrs": ["a", "0.0.0.0/0"]}) is True
    # Whole-list operators still see the list.
    assert check({"path": "cidrs", "contains": "a"}, {"cidrs": ["a", "b"]}) is True
    assert check({"path": "cidrs", "length_gte": 2}, {"cidrs": ["a", "b"]}) is True


def test_root_operand_compares_two_paths_of_the_resource():
    cond = {"for_all": {"path": "rules", "where": {"path": "host", "in": {"$root": "tls.hosts"}}}}
    covered = {"tls": [{"hosts": ["a", "b"]}], "rules": [{"host": "a"}, {"host": "b"}]}
    partial = {"tls": [{"hosts": ["a"]}], "rules": [{"host": "a"}, {"host": "b"}]}
    assert check(cond, covered) is True
    assert check(cond, partial) is False


def test_subject_operand_inside_related_where():
    workload = Resource("kubernetes", "StatefulSet", "apps/v1/StatefulSet/shop/db", {"_namespace": "shop"},
                        namespace="shop")
    schedule = Resource("kubernetes", "Schedule", "velero.io/v1/Schedule/velero/s",
                        {"spec": {"includedNamespaces": ["shop"]}}, namespace="velero")
    cond = compile_condition({"related": {"types": ["Schedule"], "link": "any", "where": {
        "path": "spec.includedNamespaces", "contains": {"$subject": "_namespace"}}}})
    idx = ResourceIndex([workload, schedule])
    assert cond(EvalContext(workload.attributes, workload, idx)) is True
    other = Resource("kubernetes", "StatefulSet", "apps/v1/StatefulSet/billing/l", {"_namespace": "billing"})
    assert cond(EvalContext(other.attributes, other, ResourceIndex([other, schedule]))) is False


def test_json_step_decodes_string_documents():
    """`@json` steps into a JSON string (ECS container_definitions); non-JSON gives nothing."""
    from soc2infra._core.engine.paths import parse_path, resolve

    attrs = {"defs": '[{"name": "app", "privileged": true}, {"name": "log"}]', "bad": "not json"}
    assert resolve(attrs, parse_path("defs.@json.privileged")) == [True]
    assert resolve(attrs, parse_path("defs.@json.name")) == ["app", "log"]
    assert resolve(attrs, parse_path("bad.@json")) == []
    assert resolve({"defs": [{"x": 1}]}, parse_path("defs.@json.x")) == [1]


@pytest.mark.parametrize("value, want", [
    ("22", True), (22, True), ("*", True), ("20-25", True), ("3389", True), ("1-65535", True),
    ("443", False), ("23-3388", False), ("http", False), (True, False),
    (["443", "22"], False),  # elementwise, all must hold: one element covers 22 → not_covers fails
])
def test_covers_port(value, want):
    if isinstance(value, list):
        assert check({"path": "p", "not_covers_port": [22, 3389]}, {"p": value}) is want
    else:
        assert check({"path": "p", "covers_port": [22, 3389]}, {"p": value}) is want


def test_related_unresolved_reference_gives_unknown_not_false():
    vault = res({"name": "kv"}, "vault", "vault.a", identities=frozenset({"kv"}))
    other = res({"name": "kv2"}, "vault", "vault.b", meta={"mode": "resource"})
    # points at another vault of the tree: resolved, so it cannot be ours
    to_other = res({"target": Unknown(nonnull=True), "cat": "AuditEvent"}, "diag", "diag.b",
                   references={"target": frozenset({"vault.b"})})
    # comes from a variable without a value: may be ours
    outside = res({"target": Unknown(), "cat": "AuditEvent"}, "diag", "diag.c")
    outside_wrong = res({"target": Unknown(), "cat": "Metrics"}, "diag", "diag.d")
    where = {"path": "cat", "equals": "AuditEvent"}
    cond = {"related": {"types": ["diag"], "via": "target", "where": where, "unresolved": "unknown"}}
    plain = {"related": {"types": ["diag"], "via": "target", "where": where}}

    def run(c, *others):
        idx = ResourceIndex([vault, other, *others])
        return compile_condition(c)(EvalContext(vault.attributes, vault, idx))

    assert run(cond, to_other) is False
    assert run(cond, to_other, outside) is None
    assert run(plain, to_other, outside) is False
    assert run(cond, outside_wrong) is False  # cannot satisfy `where` whatever it points at


def test_related_unresolved_own_reference():
    item = res({"policy_id": Unknown()}, "protected", "protected.a")
    cond = {"related": {"types": ["policy"], "link": "references", "via": "policy_id",
                        "unresolved": "unknown"}}
    assert compile_condition(cond)(EvalContext(item.attributes, item, ResourceIndex([item]))) is None
    known = res({"policy_id": "p-1"}, "protected", "protected.b")
    assert compile_condition(cond)(EvalContext(known.attributes, known, ResourceIndex([known]))) is False


def test_related_unresolved_needs_a_via():
    with pytest.raises(ConditionError) as exc:
        compile_condition({"related": {"types": ["x"], "unresolved": "unknown"}})
    assert exc.value.field == "condition.related.unresolved"
