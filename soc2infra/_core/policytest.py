"""Run every rule's own examples through the real parsers: ``soc2infra policy test``.

Each example is written to a temporary directory as real files (``main.tf``,
``manifest.yaml`` or ``plan.json`` plus any extra ``files``), loaded by the same sources a
scan uses, evaluated against its rule alone, and compared with the expectation stated in
the rule (for every targeted resource, or per address).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from soc2infra._cogs.model import Resource
from soc2infra._core.engine.core import ResourceIndex
from soc2infra._core.engine.evaluate import evaluate
from soc2infra._core.engine.policy import Example, PolicyPack, Rule

EXAMPLE_FILE = {"terraform": "main.tf", "kubernetes": "manifest.yaml", "plan": "plan.json"}


@dataclass(slots=True)
class ExampleOutcome:
    """The result of one example: ``problems`` is empty when it behaved as expected."""

    rule_id: str
    example: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def load_example(example: Example, workdir: Path) -> tuple[list[Resource], list[str]]:
    """Write the example to *workdir* and load it with the real sources."""
    from soc2infra._core.scan import ScanOptions, discover, load_resources

    main = workdir / EXAMPLE_FILE[example.source]
    main.write_text(example.text, encoding="utf-8")
    for rel, text in example.files.items():
        target = workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    inputs = discover([str(workdir)]) if example.source != "plan" else discover([str(main)])
    resources, errors = load_resources(inputs, ScanOptions(jobs=1))
    if example.source == "kubernetes":
        from soc2infra._core.sources.kubernetes import namespace_resources

        resources += namespace_resources(resources)
    return resources, [f"{e.file}:{e.line}: {e.message}" for e in errors]


def outcomes_for(rule: Rule, resources: list[Resource]) -> dict[str, str]:
    """address → pass | fail | unknown | skip for every resource *rule* targets. A rule shipped
    disabled (opt-in) is tested as if enabled: its examples must hold for whoever turns it on."""
    pack = PolicyPack(rules=[replace(rule, enabled=True)], controls={}, digest="")
    findings, passes = evaluate(resources, pack, ResourceIndex(resources))
    out = {r.address: "skip" for r in resources if pack.targets(r.type)}
    out.update({addr: "pass" for _rid, addr in passes})
    out.update({f.resource.address: f.status for f in findings})
    return out


def run_example(rule: Rule, example: Example) -> ExampleOutcome:
    """Load and evaluate one example; describe every mismatch."""
    with tempfile.TemporaryDirectory(prefix="soc2infra-example-") as tmp:
        resources, errors = load_example(example, Path(tmp))
    problems = [f"input error {e}" for e in errors]
    got = outcomes_for(rule, resources)
    if isinstance(example.expect, dict):
        for addr, want in example.expect.items():
            have = got.get(addr)
            if have is None:
                have_list = ", ".join(sorted(got)) or "none"
                problems.append(f"{addr}: no such targeted resource (have: {have_list})")
            elif have != want:
                problems.append(f"{addr}: expected {want}, got {have}")
    else:
        if not got:
            problems.append(f"no resource of a targeted type ({', '.join(rule.targets[:5])}) in the example")
        for addr, have in sorted(got.items()):
            if have != example.expect:
                problems.append(f"{addr}: expected {example.expect}, got {have}")
    return ExampleOutcome(rule.id, example.name, problems)


def structure_problems(rule: Rule) -> list[str]:
    """House rules every rule must follow (examples of both kinds, an id of the right shape)."""
    problems: list[str] = []
    kinds: set[str] = set()
    for ex in rule.examples:
        kinds.update(ex.expect.values() if isinstance(ex.expect, dict) else [ex.expect])
    if "pass" not in kinds:
        problems.append("has no example expected to pass")
    if "fail" not in kinds:
        problems.append("has no example expected to fail")
    if not rule.id.replace("-", "").replace("_", "").isalnum():
        problems.append("id must be letters, digits and dashes")
    return problems


def test_pack(pack: PolicyPack, rule_ids: set[str] | None = None) -> list[ExampleOutcome]:
    """Run every example (and structure check) of every rule in *pack*."""
    results: list[ExampleOutcome] = []
    for rule in pack.rules:
        if rule_ids and rule.id not in rule_ids:
            continue
        structure = structure_problems(rule)
        if structure:
            results.append(ExampleOutcome(rule.id, "(structure)", structure))
        for ex in rule.examples:
            results.append(run_example(rule, ex))
    return results


test_pack.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name
