"""Small building blocks every layer uses: the data model, the error family, exit codes, limits, progress.

Private (kopf's ``_cogs`` shape): import what ``soc2infra`` exports instead.
"""
