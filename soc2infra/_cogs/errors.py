"""The error family: one base class for everything the user can fix, which the CLI's one
top-level handler (:func:`soc2infra.cli.main`) turns into one line and exit code 2. Anything
else that escapes a command is a bug: exit 3 with a traceback. Findings are not errors: a
command returns exit code 1 for them.

Kept in a module with no imports so ``soc2infra --version`` and pre-commit start-up never pay
for the engine. Subclasses live next to the code that raises them (``ConfigError``,
``PolicyError``, ``BaselineError``, ``EvidenceError``, ``BinariesMissing``, ``ControlPlaneError``).
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad configuration, policy, input file, command-line value or environment (a missing
    binary, an unreachable database); the message says where and why."""
