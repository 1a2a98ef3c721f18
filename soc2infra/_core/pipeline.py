"""The scan as the CLI runs it: with the result cache, split into shards, with the checkov lens.

:func:`soc2infra._core.scan.scan` is the plain pipeline (sources → resources → rules); this module adds
the options that wrap it without changing what a rule means: evaluated results cached per scan
unit (:mod:`soc2infra._core.result_cache`), ``--shard I/N`` (:mod:`soc2infra._core.shard`) and
``--with-checkov`` (:mod:`soc2infra._core.checkov_lens`, imported only then).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from soc2infra._cogs.model import ScanResult
from soc2infra._core.config import PipelineSettings
from soc2infra._core.engine.policy import PolicyPack
from soc2infra._core.result_cache import scan_cached
from soc2infra._core.scan import ScanOptions, discover, scan
from soc2infra._core.shard import select

CHECKOV_MAPPING = "catalog-checkov.yaml"


def run_pipeline(targets: Sequence[str], pack: PolicyPack, options: ScanOptions,
                 pipeline: PipelineSettings) -> ScanResult:
    """Scan *targets*: cached per unit unless asked not to (or the checkov lens is on, whose
    findings need the resources), restricted to one shard when asked, with checkov's findings
    merged in when asked."""
    from soc2infra._cogs import limits

    with limits.using(options.limits or limits.current()):  # the configured bounds, for every path
        return _run_pipeline(targets, pack, options, pipeline)


def _run_pipeline(targets: Sequence[str], pack: PolicyPack, options: ScanOptions,
                  pipeline: PipelineSettings) -> ScanResult:
    if pipeline.with_checkov:
        result = _plain(targets, pack, options, pipeline.shard)
        _add_checkov(result, targets, pack, options, pipeline.all_checkov)
        return result
    if pipeline.result_cache:
        return scan_cached(targets, pack, options, shard=pipeline.shard)
    return _plain(targets, pack, options, pipeline.shard)


def _plain(targets: Sequence[str], pack: PolicyPack, options: ScanOptions,
           shard: tuple[int, int] | None) -> ScanResult:
    if shard is None:
        return scan(targets, pack, options)
    # The plain pipeline over one shard's inputs: the cached path without entries.
    from soc2infra._core.result_cache import scan_uncached_inputs

    inputs = select(discover(targets), shard[0], shard[1], options.base_dir or Path.cwd())
    return scan_uncached_inputs(inputs, pack, options)


def _add_checkov(result: ScanResult, targets: Sequence[str], pack: PolicyPack, options: ScanOptions,
                 all_checkov: bool) -> None:
    import yaml

    from soc2infra._core.checkov_lens import merge_into, parse_mapping, run_checkov
    from soc2infra._core.pack import BUILTIN_POLICY_DIR
    from soc2infra._core.waivers import apply_inline_waivers

    text = (BUILTIN_POLICY_DIR / CHECKOV_MAPPING).read_text(encoding="utf-8")
    mapping = parse_mapping(yaml.safe_load(text))
    records, errors = run_checkov(targets, options.var_files)
    before = len(result.findings)
    merge_into(result.findings, result.resources, records, mapping, {r.id: r.catalog for r in pack.rules},
               all_checkov)
    result.errors += errors
    result.warnings += apply_inline_waivers(result.findings[before:])
