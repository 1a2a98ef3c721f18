"""Who created and who approved a SOC2Waiver, decided at admission so an auditor can rely on it.

The rule (docs/operator.md, "Waiver approval"):

- **Identities come from the API server**, never from a field a client writes: the admission
  request's ``userInfo`` (username, uid, groups) as the API server authenticated it. (The
  ``manager`` of ``managedFields`` names the apply tool and is chosen by the client.)
- The operator stamps three annotations on every SOC2Waiver / SOC2ClusterWaiver (its mutating
  webhook writes them; its validating webhook rejects any request whose annotations differ from
  what this module computes, so a client cannot forge them and a missing mutating webhook fails
  closed, not open):

  ``soc2infra.io/created-by``   the user of the CREATE request; never changes afterwards;
  ``soc2infra.io/requested-by`` the user whose request wrote the waiver's current *terms* (its
                                spec without ``approvedBy``): the creator, or whoever changed them;
  ``soc2infra.io/approved-by``  the user whose request set ``spec.approvedBy`` (present exactly
                                while the approval is valid).

- **An approval is valid only when the approver writes it.** A request that sets or changes
  ``spec.approvedBy``, or changes the terms while ``approvedBy`` stays set, must come from the
  user ``approvedBy`` names; otherwise it is rejected (nobody approves on someone else's behalf,
  and an approval never silently covers terms the approver did not see).
- ``waivers.require_independent_approval``: an approval by the creator or by the author of the
  current terms is rejected (self-approval), and a waiver without a valid independent approval is
  *pending*: it never applies.
- ``waivers.max_days``: a waiver whose ``expires`` is more than that many days ahead is rejected.

Everything here is pure (requests in, problems and annotation values out).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

CREATED_BY = "soc2infra.io/created-by"
REQUESTED_BY = "soc2infra.io/requested-by"
APPROVED_BY = "soc2infra.io/approved-by"
STAMPS = (CREATED_BY, REQUESTED_BY, APPROVED_BY)

Identity = dict[str, Any]  # {"username": str, "uid": str, "groups": [str, ...]}


def identity(username: str, uid: str = "", groups: tuple[str, ...] | list[str] = ()) -> Identity:
    """An identity as recorded (and as stamped, JSON-encoded, in the annotations)."""
    return {"username": username, "uid": uid, "groups": list(groups)}


def encode(ident: Identity | None) -> str | None:
    """The annotation value of an identity (compact, key order fixed)."""
    if ident is None:
        return None
    return json.dumps({"username": ident.get("username", ""), "uid": ident.get("uid", ""),
                       "groups": list(ident.get("groups") or [])}, separators=(",", ":"))


def decode(value: Any) -> Identity | None:
    """The identity in an annotation value; None when absent or not one of ours."""
    if not isinstance(value, str) or not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("username"), str):
        return None
    groups = data.get("groups")
    return identity(data["username"], str(data.get("uid") or ""),
                    [str(g) for g in groups] if isinstance(groups, list) else [])


def same_user(a: Identity | None, b: Identity | None) -> bool:
    """Whether two identities are the same authenticated user (name and uid)."""
    return a is not None and b is not None and a.get("username") == b.get("username") \
        and (a.get("uid") or "") == (b.get("uid") or "")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _annotations(obj: Any) -> dict[str, Any]:
    return _mapping(_mapping(_mapping(obj).get("metadata")).get("annotations"))


def approved_by(obj: Any) -> str:
    """``spec.approvedBy`` of a waiver object ("" when unset)."""
    value = _mapping(_mapping(obj).get("spec")).get("approvedBy")
    return value.strip() if isinstance(value, str) else ""


def terms(obj: Any) -> str:
    """The waiver's terms, canonical: its spec without ``approvedBy``."""
    spec = {k: v for k, v in _mapping(_mapping(obj).get("spec")).items() if k != "approvedBy"}
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class Review:
    """What the rule says about one CREATE/UPDATE of a waiver."""

    stamps: Mapping[str, Identity | None]  # annotation → identity it must hold (None: absent)
    approval_written: bool  # this request sets the approval (or keeps it over changed terms)
    terms_changed: bool
    problem: str | None = None  # why the request is rejected (None: allowed)

    @property
    def creator(self) -> Identity | None:
        """Who created the waiver (None: it predates the operator's waiver webhook)."""
        return self.stamps.get(CREATED_BY)

    @property
    def approver(self) -> Identity | None:
        """Who approved the waiver's current terms (None: not approved)."""
        return self.stamps.get(APPROVED_BY)


def review(operation: str, obj: Any, old: Any, requester: Identity, *, require_independent: bool = False,
           max_days: int = 0, today: date | None = None) -> Review:
    """Apply the rule to one request. Pure; *requester* is the request's userInfo."""
    create = operation == "CREATE"
    old_stamps = {k: decode(v) for k, v in _annotations(old).items() if k in STAMPS} if not create else {}
    terms_changed = create or terms(obj) != terms(old)
    approver_name = approved_by(obj)
    approval_written = bool(approver_name) and (create or terms_changed or approver_name != approved_by(old))
    created = requester if create else old_stamps.get(CREATED_BY)
    # A waiver written before the webhook existed has no author on record: whoever writes it next
    # becomes its author (so that user cannot approve it either).
    old_author = old_stamps.get(REQUESTED_BY)
    author = requester if terms_changed or old_author is None else old_author
    if approval_written:
        approver: Identity | None = requester
    elif approver_name:
        approver = old_stamps.get(APPROVED_BY)
    else:
        approver = None
    stamps = {CREATED_BY: created, REQUESTED_BY: author, APPROVED_BY: approver}
    problem = _problem(obj, requester, approver_name, approval_written, terms_changed and not create,
                       stamps, require_independent, max_days, today or date.today())
    return Review(stamps=stamps, approval_written=approval_written, terms_changed=terms_changed,
                  problem=problem)


def _problem(obj: Any, requester: Identity, approver_name: str, approval_written: bool, changed: bool,
             stamps: Mapping[str, Identity | None], require_independent: bool, max_days: int,
             today: date) -> str | None:
    expires = _mapping(_mapping(obj).get("spec")).get("expires")
    if max_days and isinstance(expires, str):
        try:
            days = (date.fromisoformat(expires.strip()[:10]) - today).days
        except ValueError:
            days = None  # the CRD schema (format: date) and the store report a bad date
        if days is not None and days > max_days:
            return (f"spec.expires {expires} is {days} days away; waivers.max_days allows at most {max_days} "
                    f"(expires on or before {date.fromordinal(today.toordinal() + max_days)})")
    user = requester.get("username", "")
    if approval_written and user != approver_name:
        if changed and approver_name:
            return (f"this changes the terms of a waiver approved by {approver_name}: remove spec.approvedBy "
                    f"in the same change (the approval does not cover terms {approver_name} has not seen)")
        return (f"spec.approvedBy names {approver_name!r} but this request is from {user!r}: an approval is "
                f"valid only when the approver sets it (as {approver_name}: kubectl patch soc2waiver NAME "
                f"--type merge -p '{{\"spec\":{{\"approvedBy\":\"{approver_name}\"}}}}')")
    if require_independent and approval_written:
        roles = (("created", stamps.get(CREATED_BY)), ("wrote the terms of", stamps.get(REQUESTED_BY)))
        for role, who in roles:
            if same_user(who, requester):
                return (f"self-approval: {user} {role} this waiver and cannot approve it "
                        "(waivers.require_independent_approval); another user sets spec.approvedBy")
    return None


def forged(obj: Any, expected: Mapping[str, Identity | None]) -> str | None:
    """Which stamp annotation on *obj* differs from what the rule gives (None: all match).

    The mutating webhook writes the expected values, so with it in place this never fires; without
    it, a client that writes (or keeps a stale) stamp is rejected rather than trusted."""
    found = _annotations(obj)
    for key in STAMPS:
        want = expected.get(key)
        have = decode(found.get(key))
        if (want is None) != (key not in found) or (want is not None and encode(have) != encode(want)):
            return (f"annotation {key} is written by soc2infra from the request's user and cannot be set or "
                    "changed by hand (is the soc2infra mutating webhook registered?)")
    return None


def stamp_patch(obj: Any, expected: Mapping[str, Identity | None]) -> dict[str, str | None]:
    """Annotation changes that make *obj* carry the expected stamps (value None: remove)."""
    found = _annotations(obj)
    out: dict[str, str | None] = {}
    for key in STAMPS:
        want = encode(expected.get(key))
        if found.get(key) != want and not (want is None and key not in found):
            out[key] = want
    return out


def approval_status(annotations: Mapping[str, Any], approver_name: str) -> str:
    """How far a stored waiver is approved: ``none`` (no approvedBy), ``unverified`` (approvedBy
    without a matching stamp: written while the webhook was not checking), ``self`` (approved by
    its creator or the author of its terms), ``independent``."""
    if not approver_name:
        return "none"
    approver = decode(annotations.get(APPROVED_BY))
    if approver is None or approver.get("username") != approver_name:
        return "unverified"
    for key in (CREATED_BY, REQUESTED_BY):
        if same_user(decode(annotations.get(key)), approver):
            return "self"
    if decode(annotations.get(REQUESTED_BY)) is None:
        return "unverified"  # nobody on record wrote the terms: independence cannot be shown
    return "independent"
