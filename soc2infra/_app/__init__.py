"""Use cases that compose the core with the public packages: a scan end to end with its evidence
record (:mod:`.run`), the generated policy documentation (:mod:`.policydocs`).

Private: the CLI calls these; they sit above ``_core``, ``evidence`` and ``export``.
"""
