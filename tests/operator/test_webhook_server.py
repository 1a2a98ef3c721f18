"""The webhook server's own request handling (plain data; the served path is tested end to end in
tests/e2e/test_admission.py): which reviews take the direct route to the runtime, and how a body
nested too deep for ``json.loads`` is cut to read its request."""

from __future__ import annotations

import json
from typing import Any

import pytest

from soc2infra_operator.webhookconfig import DEPTH_CUT, _routed, shallow_json


def _review(**request: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"uid": "u1", "operation": "CREATE", "userInfo": {"username": "alice"},
                            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}}
    base.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}


def test_a_review_of_the_handlers_kind_takes_the_direct_route() -> None:
    assert _routed(_review(), ("apps", "Deployment"))
    assert _routed(_review(kind={"group": "apps", "version": "v1", "kind": "Deployment"}), ("apps", "Deployment"))
    assert _routed(_review(), (None, "Deployment"))  # a kind not pinned to a group


@pytest.mark.parametrize("review", [
    _review(kind={"group": "", "version": "v1", "kind": "Pod"}),  # another kind: Kopf decides (no handler)
    _review(resource={"group": "serving.knative.dev", "version": "v1", "resource": "services"},
            object={"kind": "Deployment", "metadata": {}}),  # same kind name, another group
    _review(userInfo=None),  # Kopf answers 400: user info is missing
    _review(object=None),  # Kopf answers 400: no object
    {"request": "x"}, [], "text",
])
def test_anything_else_stays_on_kopfs_path(review: Any) -> None:
    assert not _routed(review, ("apps", "Deployment"))


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_a_body_too_deep_for_json_is_cut_at_the_limit_and_keeps_the_request() -> None:
    body = json.dumps(_review()).replace('"name": "d"}', '"name": "d"}, "deep": ' + _nested(10_000), 1)
    with pytest.raises(RecursionError):
        json.loads(body)
    cut = shallow_json(body.encode(), DEPTH_CUT)
    assert cut is not None and len(cut) < 2 * DEPTH_CUT * 10
    review = json.loads(cut)
    assert review["request"]["uid"] == "u1" and review["request"]["userInfo"] == {"username": "alice"}
    assert review["request"]["object"]["metadata"]["name"] == "d"
    deepest, levels = review["request"]["object"]["deep"], 4
    while isinstance(deepest, dict):
        deepest, levels = deepest["a"], levels + 1
    assert deepest is None and levels == DEPTH_CUT + 1  # dicts kept down to DEPTH_CUT, then null


def test_brackets_inside_strings_do_not_count_and_unbalanced_bodies_are_refused() -> None:
    text = json.dumps({"s": "{[{[\\\"}}]]", "n": [[[1]]]})
    assert shallow_json(text.encode(), 2) == json.dumps({"s": "{[{[\\\"}}]]", "n": [None]}).encode()
    assert shallow_json(text.encode(), 10) == text.encode()
    assert shallow_json(b'{"a": [1]', 5) is None
    assert shallow_json(b'{"a": 1}}', 5) is None
