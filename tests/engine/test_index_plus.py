"""ResourceIndex.plus: an index with one resource added (replacing the one at its address) is the
index built from scratch over the same resources, table by table and lookup by lookup."""

from __future__ import annotations

from typing import Any

import pytest

from soc2infra import Resource, ResourceIndex


def _res(rtype: str, name: str, refs: dict[str, frozenset[str]] | None = None,
         identities: frozenset[str] = frozenset(), **attributes: Any) -> Resource:
    return Resource(kind="terraform", type=rtype, address=f"{rtype}.{name}", attributes=attributes,
                    references=refs or {}, identities=identities)


BASE = [
    _res("aws_s3_bucket", "logs", identities=frozenset({"logs-bucket"}), bucket="logs-bucket"),
    _res("aws_s3_bucket", "data", identities=frozenset({"data-bucket"}), bucket="data-bucket"),
    _res("aws_s3_bucket_versioning", "logs", {"bucket": frozenset({"aws_s3_bucket.logs"})}, bucket="logs-bucket"),
    _res("aws_s3_bucket_policy", "data", {"bucket": frozenset({"aws_s3_bucket.data"})}, bucket="data-bucket"),
]


def _tables(idx: ResourceIndex) -> tuple[Any, ...]:
    return (idx.resources, idx.by_type, idx.by_address, idx.inbound, idx.by_identity)


@pytest.mark.parametrize("extra", [
    _res("aws_s3_bucket", "new", identities=frozenset({"new-bucket"}), bucket="new-bucket"),  # added
    _res("aws_s3_bucket", "logs", identities=frozenset({"logs-2"}), bucket="logs-2"),  # replaces one
    _res("aws_s3_bucket_versioning", "data", {"bucket": frozenset({"aws_s3_bucket.data"})}, bucket="data-bucket"),
    _res("aws_s3_bucket_policy", "data", {"policy": frozenset({"aws_s3_bucket.logs"})}, bucket="logs-bucket"),
])
def test_plus_is_the_index_built_from_scratch(extra: Resource) -> None:
    base = ResourceIndex(list(BASE))
    warm = base._values_at("aws_s3_bucket_versioning", "bucket")  # a cache filled before the request
    assert warm == {"logs-bucket": [BASE[2]]}
    fresh = ResourceIndex([*(r for r in BASE if r.address != extra.address), extra])
    plus = base.plus(extra)
    assert _tables(plus) == _tables(fresh)
    for rtype in ("aws_s3_bucket", "aws_s3_bucket_versioning", "aws_s3_bucket_policy"):
        assert plus._values_at(rtype, "bucket") == fresh._values_at(rtype, "bucket")
    types = frozenset({"aws_s3_bucket_versioning", "aws_s3_bucket_policy"})
    for target in fresh.by_type["aws_s3_bucket"]:
        assert plus.referencing(target, types, "bucket") == fresh.referencing(target, types, "bucket")
    assert _tables(base) == _tables(ResourceIndex(list(BASE)))  # the base index is not changed
    again = plus.plus(_res("aws_s3_bucket", "third", identities=frozenset({"t"}), bucket="t"))
    assert [r.address for r in again.by_type["aws_s3_bucket"]][-1] == "aws_s3_bucket.third"
