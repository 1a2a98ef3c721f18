"""Dump a scan's full JSON report (findings, unknowns, errors, coverage and passes) for a
before/after comparison of a performance change: run it with the old and the new code and
``cmp`` the two files. Used for issue 14 (cold path); see README.md.

    python bench/same_output.py OUT.json PATH...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Scan argv[1:] with the built-in pack and write the canonical JSON report to argv[0]."""
    os.environ["SOC2INFRA_NO_CACHE"] = "1"
    from soc2infra._core.pack import load_pack
    from soc2infra._core.reports import ReportInput, render
    from soc2infra._core.scan import ScanOptions, scan

    out, paths = argv[0], argv[1:]
    pack = load_pack()
    result = scan(paths, pack, ScanOptions(base_dir=Path.cwd()))
    doc = render("json", ReportInput(result=result, pack=pack, base_dir=Path.cwd(), include_passes=True))
    Path(out).write_text(doc, encoding="utf-8")
    print(f"{out}: {len(result.findings)} findings, {len(result.passes)} passes, {len(result.errors)} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
