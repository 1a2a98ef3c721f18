"""Unit tests of the backup_covered operator on plain resources (no Terraform parsing)."""

from __future__ import annotations

import pytest

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import ConditionError, EvalContext, ResourceIndex
from soc2infra._core.engine.registry import compile_condition

ARNS = {"aws_db_instance": "arn:aws:rds:{region}:{account}:db:{identifier}",
        "aws_s3_bucket": "arn:aws:s3:::{bucket}"}


def res(rtype: str, name: str, attrs: dict, refs: dict | None = None, idents: tuple = ()) -> Resource:
    return Resource("terraform", rtype, f"{rtype}.{name}", attrs,
                    references={k: frozenset(v) for k, v in (refs or {}).items()}, identities=frozenset(idents))


def plan(name: str = "p", delete_after: object = 35) -> Resource:
    rule = {"rule_name": "daily", "lifecycle": [{"delete_after": delete_after}] if delete_after is not None else []}
    return res("aws_backup_plan", name, {"rule": [rule]})


def selection(name: str, attrs: dict, refs: dict | None = None, plan_name: str = "p") -> Resource:
    refs = dict(refs or {})
    refs.setdefault("plan_id", {f"aws_backup_plan.{plan_name}"})
    return res("aws_backup_selection", name, {"plan_id": Unknown("plan id"), **attrs}, refs)


def covered(subject: Resource, *others: Resource, min_days: int = 35) -> bool | None:
    pred = compile_condition({"backup_covered": {"min_retention_days": min_days, "arns": ARNS}})
    index = ResourceIndex([subject, *others])
    return pred(EvalContext(subject.attributes, subject, index))


DB = res("aws_db_instance", "orders", {"identifier": "orders", "tags": {"env": "prod"}}, idents=("orders",))


def test_selected_by_reference_with_long_enough_plan():
    sel = selection("s", {"resources": [Unknown("arn")]}, {"resources": {DB.address}})
    assert covered(DB, sel, plan()) is True
    assert covered(DB, sel, plan(delete_after=7)) is False
    assert covered(DB, sel, plan(delete_after=None)) is True  # kept until deleted by hand


def test_not_selected_is_false_and_unresolved_entry_is_unknown():
    assert covered(DB, plan()) is False
    other = res("aws_db_instance", "other", {"identifier": "other"})
    sel = selection("s", {"resources": [Unknown("arn")]}, {"resources": {other.address}})
    assert covered(DB, other, sel, plan()) is False  # the unknown entry is the other instance's ARN
    ext = selection("x", {"resources": [Unknown("data source arn")]}, {"resources": {"data.aws_db_instance.legacy"}})
    assert covered(DB, ext, plan()) is None
    var = selection("v", {"resources": Unknown("var.arns")})
    assert covered(DB, var, plan()) is None


def test_wildcard_and_literal_arns():
    assert covered(DB, selection("s", {"resources": ["arn:aws:rds:*:*:db:*"]}), plan()) is True
    assert covered(DB, selection("s", {"resources": ["arn:aws:rds:*:*:cluster:*"]}), plan()) is False
    assert covered(DB, selection("s", {"resources": ["arn:aws:rds:us-east-1:111122223333:db:ord*"]}), plan()) is True
    assert covered(DB, selection("s", {"resources": ["arn:aws:rds:us-east-1:111122223333:db:other"]}), plan()) is False
    assert covered(DB, selection("s", {"resources": ["*"]}), plan()) is True
    nameless = res("aws_db_instance", "gen", {"identifier": Unknown("random")})
    assert covered(nameless, selection("s", {"resources": ["arn:aws:rds:*:*:db:*"]}), plan()) is True
    assert covered(nameless, selection("s", {"resources": ["arn:aws:rds:*:*:db:prod-*"]}), plan()) is None


def test_tags_conditions_and_not_resources():
    by_tag = selection("t", {"selection_tag": [{"type": "STRINGEQUALS", "key": "env", "value": "prod"}]})
    assert covered(DB, by_tag, plan()) is True
    wrong = selection("t", {"selection_tag": [{"type": "STRINGEQUALS", "key": "env", "value": "dev"}]})
    assert covered(DB, wrong, plan()) is False
    cond = selection("c", {"resources": ["*"], "condition": [
        {"string_not_equals": [{"key": "aws:ResourceTag/env", "value": "prod"}]}]})
    assert covered(DB, cond, plan()) is False
    excluded = selection("n", {"resources": ["*"], "not_resources": [Unknown("arn")]},
                         {"not_resources": {DB.address}})
    assert covered(DB, excluded, plan()) is False
    unknown_tags = res("aws_db_instance", "u", {"identifier": "u", "tags": Unknown("var.tags")})
    assert covered(unknown_tags, by_tag, plan()) is None


def test_provider_default_tags_count_unless_providers_disagree():
    bucket = res("aws_s3_bucket", "b", {"bucket": "acme-b"}, idents=("acme-b",))
    sel = selection("t", {"selection_tag": [{"type": "STRINGEQUALS", "key": "backup", "value": "daily"}]})
    p1 = Resource("terraform", "provider.aws", "provider.aws", {"default_tags": [{"tags": {"backup": "daily"}}]})
    p2 = Resource("terraform", "provider.aws", "provider.aws.dr", {"default_tags": [{"tags": {"backup": "none"}}]})
    assert covered(bucket, sel, plan(), p1) is True
    assert covered(bucket, sel, plan(), p1, p2) is None


def test_plan_outside_the_tree_is_unknown():
    sel = selection("s", {"resources": ["*"]}, {"plan_id": set()})
    assert covered(DB, sel) is None


def test_bad_arguments_are_rejected():
    with pytest.raises(ConditionError):
        compile_condition({"backup_covered": {"min_retention_days": "long"}})
    with pytest.raises(ConditionError):
        compile_condition({"backup_covered": {"arn": {}}})
