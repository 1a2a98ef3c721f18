"""Exporters of the policy pack to other enforcement points: the Kubernetes rules as
ValidatingAdmissionPolicies (CEL) that the API server enforces itself.

Public: :mod:`soc2infra.export.vap` (its ``__all__``) plans and renders the objects; the operator
keeps them in sync with it. :mod:`.cel` (the condition compiler) and :mod:`.k8s_schema` are its
internals.
"""

__all__ = ["vap"]
