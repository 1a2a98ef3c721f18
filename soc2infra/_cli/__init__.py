"""The command groups of ``soc2infra`` (one module each); :mod:`soc2infra.cli` assembles them.

Private: the command line, not these modules, is the interface.
"""
