"""The period report renders in a real headless browser (Debian's chromium): the screenshot is a
full page, not a blank one, and the laid-out DOM holds the per-criterion table, the chart, the
headline cards and the deviation and waiver registers."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soc2infra._core.pack import load_pack
from soc2infra.evidence import build_report, open_ledger, render_html

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    pytest.skip("chromium is not installed (scripts/test.sh installs Debian's package)")


def month_of_evidence(path: Path) -> None:
    """Thirty days of audit snapshots with three missing days, denials and one waiver."""
    start = datetime(2026, 10, 1, tzinfo=UTC)
    entries = []
    for day in range(30):
        t = start + timedelta(days=day, hours=3)
        if day % 9 != 4:
            fails = max(0, 12 - day // 3)
            results = [{"rule_id": "SOC2-K8S-POD-001", "status": "fail" if i < fails else "pass",
                        "severity": "critical", "controls": ["CC6.1", "CC6.8"],
                        "address": f"apps/v1/Deployment/shop/app{i}"} for i in range(20)]
            entries.append({"source": "audit", "actor": "system:serviceaccount:soc2infra:operator",
                            "subject": "cluster", "pack_digest": "sha256:x", "results": results, "time": t})
        if day % 5 == 0:
            entries.append({"source": "admission", "actor": "alice@example.com", "decision": "deny",
                            "subject": "apps/v1/Deployment/shop/bad", "pack_digest": "sha256:x",
                            "time": t + timedelta(hours=5),
                            "results": [{"rule_id": "SOC2-K8S-POD-001", "status": "fail", "severity": "critical",
                                         "controls": ["CC6.1", "CC6.8"], "address": "apps/v1/Deployment/shop/bad"}]})
    waiver = {"source": "cluster", "owner": "team-shop", "expires": "2026-12-31", "reason": "vendor image",
              "ticket": "SEC-7", "location": "SOC2Waiver shop/vendor"}
    entries.append({"source": "waiver", "actor": "alice@example.com", "subject": "SOC2Waiver/shop/vendor",
                    "time": start + timedelta(days=20), "context": {"event": "waiver-created", "waiver": {
                        "namespace": "shop", "name": "vendor", "rule": "SOC2-K8S-POD-001", "owner": "team-shop",
                        "expires": "2026-12-31", "ticket": "SEC-7", "reason": "vendor image",
                        "approvedBy": "bob@example.com"}}})
    entries.append({"source": "audit", "actor": "system:serviceaccount:soc2infra:operator", "subject": "cluster",
                    "pack_digest": "sha256:x", "time": start + timedelta(days=29, hours=12),
                    "results": [{"rule_id": "SOC2-K8S-POD-001", "status": "waived", "severity": "critical",
                                 "controls": ["CC6.1", "CC6.8"], "address": "apps/v1/Deployment/shop/app0",
                                 "waiver": waiver}]})
    entries.sort(key=lambda e: e["time"])
    ledger = open_ledger(path)
    ledger.append(entries)
    ledger.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_renders_in_headless_chromium(tmp_path):
    browser = chromium()
    db = tmp_path / "evidence.db"
    month_of_evidence(db)
    controls = {cid: (c.name, c.intent) for cid, c in load_pack().controls.items()}
    report = build_report(db, "2026-10-01", "2026-10-30", controls)
    assert report is not None
    html = tmp_path / "report.html"
    html.write_text(render_html(report), encoding="utf-8")

    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1800"]
    shot = tmp_path / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120,
                   check=False)
    data = shot.read_bytes()
    assert png_size(data) == (1280, 1800)
    # A blank page compresses to a few kilobytes; text, a table and a chart do not.
    assert len(data) > 40_000
    artifacts = os.environ.get("SOC2INFRA_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "evidence-report.png")

    dom = subprocess.run([*common, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False).stdout
    assert "CC6.1" in dom and "Logical access security architecture" in dom
    assert "<svg" in dom and "<table" in dom
    # The registers render with one row per register entry, and the headline cards carry the
    # numbers report.json holds.
    deviations = re.search(r'<table class="deviations">.*?<tbody>(.*?)</tbody>', dom, re.S)
    waivers = re.search(r'<table class="waivers">.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert deviations and waivers
    assert deviations.group(1).count("<tr>") == len(report["deviations"]) == 12
    assert waivers.group(1).count("<tr>") == len(report["waivers"]) == 1
    assert "SOC2Waiver shop/vendor" in waivers.group(1) and "bob@example.com" in waivers.group(1)
    assert ">waived<" in deviations.group(1) and ">remediated<" in deviations.group(1)
    for key in ("denied_requests", "deviations_open", "waivers_active"):
        card = re.search(rf'data-metric="{key}"[^>]*><b>([^<]*)</b>', dom)
        assert card and card.group(1) == str(report["headline"][key]), key
    assert report["headline"]["denied_requests"] == 6
    # The whole page (registers included) as a second artefact.
    full = tmp_path / "report-full.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,5200",
                    f"--screenshot={full}", html.as_uri()], capture_output=True, timeout=120, check=False)
    assert png_size(full.read_bytes()) == (1280, 5200) and full.stat().st_size > 100_000
    if artifacts:
        shutil.copy(full, Path(artifacts) / "evidence-report-full.png")
