"""The one exception type the CLI turns into exit code 2: a problem in the user's input or
configuration (not a bug). Kept in a module with no imports so ``soc2infra --version`` and
pre-commit start-up never pay for the engine."""

from __future__ import annotations


class UserError(ValueError):
    """Bad configuration, policy or command-line input; the message says where and why."""
