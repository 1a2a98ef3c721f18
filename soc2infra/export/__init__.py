"""Exporters of the policy pack to other enforcement points (ValidatingAdmissionPolicy)."""
