"""Provider configurations as Terraform passes them down a module tree, and what they add to
resources: the AWS provider's ``default_tags`` become part of every resource's effective tags
(``tags_all``, as in a plan), so tag-based rules and backup selections see them.

Terraform's rules: a child module inherits its parent's *default* (unaliased) provider
configurations implicitly; aliased ones reach it only through the module block's
``providers = { aws = aws.eu, aws.west = aws.west }``; a resource uses the default configuration
of its type's provider unless its ``provider = aws.eu`` meta-argument names another.
"""

from __future__ import annotations

from typing import Any

from soc2infra._cogs.model import Unknown
from soc2infra._core.sources.hcl_ast import Expr

#: Provider configurations by local name: "aws" (the default one), "aws.eu" (an alias).
ProviderConfigs = dict[str, dict[str, Any]]


def provider_ref(expr: Expr | None) -> str | None:
    """``aws`` / ``aws.eu`` written as a traversal (or a string), or None."""
    if expr is None:
        return None
    if expr[0] == "var":
        return str(expr[1])
    if expr[0] == "get" and expr[1][0] == "var":
        return f"{expr[1][1]}.{expr[2]}"
    if expr[0] == "lit" and isinstance(expr[1], str):
        return expr[1]
    return None


def config_key(name: str, attrs: dict[str, Any]) -> str:
    """The local name of a ``provider "NAME"`` block with evaluated *attrs* (alias included)."""
    alias = attrs.get("alias")
    return f"{name}.{alias}" if isinstance(alias, str) and alias else name


def child_configs(parent: ProviderConfigs, providers_expr: Expr | None) -> ProviderConfigs:
    """What a module call passes to its child: the parent's default configurations, replaced or
    extended by the call's ``providers`` map."""
    out = {k: v for k, v in parent.items() if "." not in k}
    if providers_expr is None or providers_expr[0] != "obj":
        return out
    for key_expr, value_expr in providers_expr[1]:
        child_name, parent_name = provider_ref(key_expr), provider_ref(value_expr)
        if child_name and parent_name:
            out[child_name] = parent.get(parent_name, {})
    return out


def resource_provider(rtype: str, provider_expr: Expr | None) -> str:
    """The configuration a resource of *rtype* uses: its ``provider`` argument or the default."""
    return provider_ref(provider_expr) or rtype.split("_", 1)[0]


def default_tags(config: dict[str, Any] | None) -> dict[str, Any] | Unknown | None:
    """The ``default_tags { tags = … }`` of an AWS provider configuration, if any."""
    if not config:
        return None
    blocks = config.get("default_tags")
    if not isinstance(blocks, list) or not blocks or not isinstance(blocks[0], dict):
        return None
    tags = blocks[0].get("tags")
    if isinstance(tags, (dict, Unknown)):
        return tags
    return None


def effective_tags(tags: Any, defaults: dict[str, Any] | Unknown | None) -> Any:
    """``tags_all`` as the AWS provider computes it: default tags overridden by the resource's."""
    if isinstance(defaults, Unknown) or isinstance(tags, Unknown):
        return Unknown("tags_all depends on tags that are not known statically", nonnull=True)
    merged = dict(defaults or {})
    if isinstance(tags, dict):
        merged.update(tags)
    return merged
