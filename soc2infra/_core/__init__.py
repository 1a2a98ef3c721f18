"""The scanner's internals: sources → resources → rules → findings → reports.

Private (kopf's ``_core`` shape): nothing here is API. Import what ``soc2infra`` exports instead;
an import-linter contract keeps the operator to that.
"""
