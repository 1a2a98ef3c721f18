"""Credentials in code: literal secrets in sensitive arguments and in variable defaults.

A value counts as a literal secret when it is a known, non-empty string written (directly
or through locals/tfvars) into an argument whose name says it holds a credential. Values
that cannot be known statically (a data source such as Secrets Manager, Key Vault or
Secret Manager, ``random_password``, a variable without a default) are fine: they are
:class:`~soc2infra._cogs.model.Unknown`. A reference to a secret store written as text (an ARN,
``@Microsoft.KeyVault(...)``) is fine too.

The secret itself must never leave this module: findings carry only a masked value in
``ctx.notes`` (``{"argument": "master_password", "value": "su******"}``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from soc2infra._cogs.limits import LimitExceeded, check_depth
from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import (
    CompileEnv,
    Compiler,
    ConditionError,
    EvalContext,
    Predicate,
    ResourceIndex,
    Tri,
)

VARIABLE_TYPE = "terraform_variable"

SENSITIVE_NAMES = frozenset({
    "password", "passwords", "master_password", "admin_password", "administrator_login_password",
    "root_password", "db_password", "secret", "secret_key", "access_key", "client_secret", "client_key",
    "token", "api_key", "api_token", "auth_token", "access_token", "refresh_token", "private_key",
    "secret_string", "secret_binary", "plaintext_value", "sas_token", "shared_key", "shared_secret",
    "primary_access_key", "secondary_access_key", "connection_string", "credentials", "passphrase",
    "sasl_password", "bind_password", "webhook_secret", "signing_secret",
})
SENSITIVE_SUFFIXES = ("_password", "_passwd", "_secret", "_token", "_secret_key", "_access_key", "_api_key",
                      "_private_key", "_passphrase", "_credentials")
# Switches about a credential, not the credential (manage_master_user_password = true).
SWITCH_PREFIXES = ("manage_", "enable_", "enabled_", "generate_", "require_", "use_", "rotate_")
# Blocks whose `value` is sensitive, whatever it is set for (helm_release set_sensitive).
SENSITIVE_BLOCKS = frozenset({"set_sensitive"})
# Text that points at a secret store instead of holding the secret.
STORE_REFERENCES = ("arn:aws:secretsmanager:", "arn:aws:ssm:", "arn:aws-us-gov:secretsmanager:",
                    "@microsoft.keyvault(", "projects/", "vault:", "{{resolve:", "sm://", "secretref:")


def is_sensitive_name(name: str) -> bool:
    """Does an argument (or map key, or variable) name say it holds a credential?"""
    low = name.lower().replace("-", "_")
    if low.startswith(SWITCH_PREFIXES):
        return False
    return low in SENSITIVE_NAMES or low.endswith(SENSITIVE_SUFFIXES)


def is_literal_secret(value: Any) -> bool:
    """A known, non-empty string that is not a pointer to a secret store."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not text or text.lower() in ("true", "false", "null"):
        return False
    return not text.lower().startswith(STORE_REFERENCES)


def mask(value: str) -> str:
    """What may be shown of a secret: two characters of a long one, nothing of a short one,
    and never its length."""
    return (value[:2] if len(value) >= 12 else "") + "******"


def find_secrets(value: Any, path: str = "", extra: frozenset[str] = frozenset(),
                 inherited: bool = False) -> Iterator[tuple[str, str]]:
    """Yield (argument path, literal value) for every literal secret under *value*. A key is
    sensitive by name (or in *extra*), and so is everything under it; inside a sensitive
    block (``set_sensitive``) the ``value`` argument is."""
    if isinstance(value, dict):
        named = value.get("name")
        # An environment entry {name: DB_PASSWORD, value: ...} (ECS container definitions,
        # Kubernetes env): the name says what the value is.
        if (not inherited and isinstance(named, str) and is_sensitive_name(named)
                and is_literal_secret(value.get("value"))):
            yield f"{path}[{named}]", value["value"]
        for key, item in value.items():
            key_s = str(key)
            sensitive = inherited or is_sensitive_name(key_s) or key_s.lower() in extra
            inner_extra = extra | {"value"} if key_s in SENSITIVE_BLOCKS else extra
            yield from find_secrets(item, f"{path}.{key_s}" if path else key_s, inner_extra, sensitive)
    elif isinstance(value, list):
        for item in value:
            yield from find_secrets(item, path, extra, inherited)
    elif inherited and is_literal_secret(value):
        yield path, value
    elif isinstance(value, str) and value[:1] in "[{" and (decoded := _json_document(value)) is not None:
        # jsonencode(...) output (container_definitions, policies): search the document it encodes.
        yield from find_secrets(decoded, path, extra, inherited)


def _json_document(text: str) -> Any:
    """The JSON collection *text* encodes, or None (not JSON, or nested past limits.depth)."""
    if len(text) > 1_000_000:
        return None
    try:
        decoded = json.loads(text)
        check_depth(decoded)
    except (ValueError, RecursionError, LimitExceeded):
        return None
    return decoded if isinstance(decoded, dict | list) else None


def _variable_defaults(index: ResourceIndex) -> set[tuple[str, str]]:
    """(module, default) of every secret-holding variable, memoised on the index: a literal
    that comes from such a default is reported once, on the variable."""
    memo = getattr(index, "_secret_defaults", None)
    if memo is None:
        memo = set()
        for var in index.by_type.get(VARIABLE_TYPE, ()):
            if _variable_holds_secret(var):
                module = str(var.meta.get("module", ""))
                secrets = find_secrets(var.attributes.get("default"), inherited=True)
                memo.update((module, value) for _path, value in secrets)
        index._secret_defaults = memo  # type: ignore[attr-defined]
    return memo


def _variable_holds_secret(var: Resource) -> bool:
    return is_sensitive_name(var.name) or var.attributes.get("sensitive") is True


def _record(ctx: EvalContext, found: list[tuple[str, str]]) -> None:
    first_path, first_value = found[0]
    ctx.notes["argument"] = first_path
    ctx.notes["value"] = mask(first_value)
    if len(found) > 1:
        ctx.notes["other_arguments"] = sorted({p for p, _v in found[1:]})


def _c_no_secret_literals(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``no_secret_literals: true`` or ``{names: [value]}``: no sensitive argument of the
    resource (or provider block) holds a literal secret. *names* adds argument names that
    are sensitive for this rule only (``value`` of a SecureString parameter)."""
    if arg is True:
        extra: frozenset[str] = frozenset()
    elif isinstance(arg, Mapping) and set(arg) <= {"names"} and isinstance(arg.get("names", []), list):
        extra = frozenset(str(n).lower() for n in arg.get("names", []))
    else:
        raise ConditionError("no_secret_literals takes true or {names: [...]}", where)

    def pred(ctx: EvalContext) -> Tri:
        from_variables = _variable_defaults(ctx.index)
        module = str(ctx.resource.meta.get("module", ""))
        found = [(p, v) for p, v in find_secrets(ctx.value, extra=extra) if (module, v) not in from_variables]
        if not found:
            return True
        _record(ctx, found)
        return False

    return pred


def _c_no_secret_default(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``no_secret_default: true``: a variable that holds a secret (by its name, or marked
    ``sensitive``) has no literal default; nor does any sensitive key of a map default."""
    if arg is not True:
        raise ConditionError("no_secret_default takes true", where)

    def pred(ctx: EvalContext) -> Tri:
        default = ctx.resource.attributes.get("default")
        if isinstance(default, Unknown):
            return None
        found = list(find_secrets(default, "default", inherited=_variable_holds_secret(ctx.resource)))
        if not found:
            return True
        _record(ctx, found)
        return False

    return pred


SECRET_OPERATORS: dict[str, Compiler] = {
    "no_secret_literals": _c_no_secret_literals,
    "no_secret_default": _c_no_secret_default,
}
"""Credentials-in-code operators, listed in the condition language by
:mod:`soc2infra._core.engine.registry`."""
