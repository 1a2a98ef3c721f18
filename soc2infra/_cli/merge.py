"""``soc2infra merge``: the shards' JSON results in, one report and one exit code out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from soc2infra import __version__
from soc2infra._core.reports import FORMATS


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the merged report here (format from --format, else from the suffix: "
                   ".json, .sarif, .xml/.junit, .md; text otherwise).")
@click.option("--format", "-f", "fmt", type=click.Choice(list(FORMATS)), default=None, help="Output format.")
@click.option("--fail-on-unknown/--no-fail-on-unknown", default=False,
              help="Treat undecidable results as failures (as the shards' scans did).")
@click.option("--fail-on-unscanned/--no-fail-on-unscanned", default=False,
              help="Exit 1 when a module could not be scanned.")
def merge(results: Sequence[Path], output_file: Path | None, fmt: str | None, fail_on_unknown: bool,
          fail_on_unscanned: bool) -> int:
    """Combine `scan --shard I/N --format json` results into one report with the exit code a
    single scan of the whole tree would give."""
    from soc2infra._cogs.exitcodes import exit_code
    from soc2infra._core.merge import merge_documents, read_document
    from soc2infra._core.pack import load_pack
    from soc2infra._core.reports import ReportInput, render

    result, threshold = merge_documents([read_document(p) for p in results])
    pack = load_pack()
    if fmt is None:
        suffix = output_file.suffix.lower() if output_file else ""
        fmt = {".json": "json", ".sarif": "sarif", ".xml": "junit", ".junit": "junit", ".md": "markdown"}.get(
            suffix, "text")
    data = ReportInput(result=result, pack=pack, threshold=threshold, tool_version=__version__,
                       base_dir=str(Path.cwd()))
    if output_file is not None:
        output_file.write_text(render(fmt, data), encoding="utf-8")
        if fmt != "text":
            click.echo(render("text", data), nl=False)
    else:
        click.echo(render(fmt, data), nl=False)
    return exit_code(result, threshold, fail_on_unknown, fail_on_unscanned)
