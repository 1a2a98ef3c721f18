"""Fuzz every front end a stranger's pull request (or a cluster user) can reach, with hypothesis.

Targets: the HCL front end and Terraform evaluator (``hcl``), plan JSON (``plan``), Kubernetes
manifests (``manifest``), waiver files (``waivers``), configuration files (``config``) and
AdmissionReview bodies through the operator's ``request_from_review`` → ``decide`` →
``build_response`` path (``admission``). Inputs are generated from small grammars (expressions,
blocks, YAML/JSON values, anchors and aliases, deep nesting, huge counts) and from byte-level
mutations of the repository's own examples.

Property, per input: no uncaught exception, at most ``--max-seconds`` of wall time, and always
a result: findings (the JSON report renders) or located errors (every error names its file).
Anything else is a *crash*; each distinct one (exception type and innermost project frame) is
saved under ``bench/fuzz-crashes/`` with the input that caused it, to become a regression test.

    .venv/bin/python bench/fuzz.py                      # 102,000 cases over all targets (17,000 each)
    .venv/bin/python bench/fuzz.py --cases 600 --json out.json   # what CI runs (tests/test_fuzz.py)

Prints one line per target and a summary; ``--json`` writes the counts. Exit 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SOC2INFRA_NO_CACHE", "1")  # every case parses for real

# ----------------------------------------------------------------------------- grammars

IDENTS = ["a", "b", "name", "tags", "bucket", "password", "value", "id", "arn", "policy", "rule",
          "environment", "variables", "ingress", "cidr_blocks", "enabled", "encrypted", "key"]
RTYPES = ["aws_s3_bucket", "aws_db_instance", "aws_security_group", "aws_iam_policy", "aws_iam_role",
          "aws_ecs_task_definition", "aws_lambda_function", "aws_kms_key", "aws_instance",
          "aws_s3_bucket_server_side_encryption_configuration", "google_sql_user", "azurerm_mssql_server",
          "kubernetes_secret", "helm_release", "aws_cloudtrail"]
FUNCS = ["length", "lookup", "merge", "concat", "flatten", "jsonencode", "jsondecode", "toset", "tolist",
         "tomap", "range", "format", "join", "split", "replace", "lower", "upper", "coalesce", "try",
         "can", "element", "keys", "values", "zipmap", "contains", "distinct", "sort", "cidrsubnet",
         "base64encode", "base64decode", "substr", "min", "max", "abs", "ceil", "floor", "tostring",
         "tonumber", "file", "templatefile", "regex", "startswith", "compact", "slice", "setproduct",
         "formatlist", "nonexistent_fn"]
REFS = ["var.x", "var.list", "local.a", "local.b", "aws_s3_bucket.b.id", "aws_s3_bucket.b[0].arn",
        "aws_s3_bucket.b[\"k\"].id", "count.index", "each.key", "each.value", "module.m.out", "self.id",
        "data.aws_iam_policy_document.p.json", "path.module", "terraform.workspace"]
OPS = ["+", "-", "*", "/", "%", "==", "!=", "<", ">", "<=", ">=", "&&", "||"]

numbers = st.one_of(st.integers(-10**12, 10**12), st.sampled_from(["1e8", "1e308", "0.5", "1000000", "-1"]))


def _quoted(s: str) -> str:
    return json.dumps(s)


hcl_leaf = st.one_of(
    numbers.map(str), st.text(max_size=12).map(_quoted), st.sampled_from(["true", "false", "null"]),
    st.sampled_from(REFS), st.sampled_from(['"${var.x}-${local.a}"', '"%{ if true }x%{ endif }"',
                                            '<<EOT\nhello ${var.x}\nEOT\n', '"0.0.0.0/0"', '"*"',
                                            '"arn:aws:s3:::b/*"', '"AKIAIOSFODNN7EXAMPLE"']))


def _hcl_extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(st.sampled_from(IDENTS), children)
    return st.one_of(
        st.lists(children, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(pair, max_size=4).map(lambda ps: "{" + ", ".join(f"{k} = {v}" for k, v in ps) + "}"),
        st.tuples(st.sampled_from(FUNCS), st.lists(children, max_size=3), st.booleans()).map(
            lambda t: f"{t[0]}({', '.join(t[1])}{'...' if t[2] and t[1] else ''})"),
        st.tuples(children, st.sampled_from(OPS), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        st.tuples(children, children).map(lambda t: f"[for x in {t[0]} : {t[1]}]"),
        st.tuples(children, children).map(lambda t: f"{{for k, v in {t[0]} : k => {t[1]}}}"),
        children.map(lambda c: f'"${{{c}}}"'),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        children.map(lambda c: f"{c}[*].id"),
        children.map(lambda c: f"!{c}"),
    )


hcl_expr = st.recursive(hcl_leaf, _hcl_extend, max_leaves=25)


@st.composite
def hcl_body(draw: st.DrawFn, depth: int = 0) -> str:
    lines = [f"  {draw(st.sampled_from(IDENTS))} = {draw(hcl_expr)}" for _ in range(draw(st.integers(0, 4)))]
    if draw(st.booleans()):
        lines.append(f"  {draw(st.sampled_from(['count', 'for_each']))} = {draw(hcl_expr)}")
    if depth < 2:
        for _ in range(draw(st.integers(0, 2))):
            name = draw(st.sampled_from(IDENTS + ["dynamic \"rule\"", "lifecycle"]))
            inner = draw(hcl_body(depth + 1))
            if name.startswith("dynamic"):
                inner = f"  for_each = {draw(hcl_expr)}\n  content {{\n{inner}\n  }}"
            lines.append(f"  {name} {{\n{inner}\n  }}")
    return "\n".join(lines)


@st.composite
def hcl_file(draw: st.DrawFn) -> str:
    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["resource", "resource", "data", "locals", "variable", "output", "module"]))
        body = draw(hcl_body())
        if kind in ("resource", "data"):
            head = f'{kind} "{draw(st.sampled_from(RTYPES))}" "{draw(st.sampled_from(["b", "c", "d"]))}"'
        elif kind == "locals":
            head = "locals"
        elif kind == "module":
            head = 'module "m"'
            source = draw(st.sampled_from(['"./m"', '"../"', '"git::x"', "1"]))
            body = f"  source = {source}\n" + body
        else:
            head = f'{kind} "{draw(st.sampled_from(["x", "list", "api_key"]))}"'
        comment = draw(st.sampled_from(["", "# soc2infra:ignore SOC2-AWS-S3-001 reason\n",
                                        "# soc2infra:ignore * all\n", "# soc2infra:ignore\n"]))
        blocks.append(f"{comment}{head} {{\n{body}\n}}\n")
    return "\n".join(blocks)


def _corpus(patterns: tuple[str, ...]) -> list[str]:
    out = []
    for pattern in patterns:
        out += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(ROOT.glob(pattern))][:60]
    return out or [""]


@st.composite
def mutated(draw: st.DrawFn, corpus: list[str], alphabet: str) -> str:
    """A corpus file with a few byte-level edits (insert, delete, duplicate, splice)."""
    text = draw(st.sampled_from(corpus))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 6))):
        pos = rnd.randrange(len(text) + 1)
        op = rnd.randrange(4)
        if op == 0:
            text = text[:pos] + rnd.choice(alphabet) * rnd.randint(1, 3) + text[pos:]
        elif op == 1:
            text = text[:pos] + text[pos + rnd.randint(1, 20):]
        elif op == 2:
            end = min(len(text), pos + rnd.randint(1, 200))
            text = text[:end] + text[pos:end] * rnd.randint(1, 3) + text[end:]
        else:
            text = text[:pos] + draw(st.text(max_size=8)) + text[pos:]
    return text


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(IDENTS + ["spec", "metadata", "containers",
                                                                         "securityContext", "rules"]),
                                               children, max_size=4)),
    max_leaves=30)


def deep(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = {"a": [value]}
    return value


KINDS = [("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Secret"), ("networking.k8s.io/v1", "NetworkPolicy"),
         ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("v1", "Service"), ("v1", "Namespace"),
         ("v1", "List"), ("batch/v1", "CronJob"), ("networking.k8s.io/v1", "Ingress")]


@st.composite
def k8s_object(draw: st.DrawFn) -> dict[str, Any]:
    api, kind = draw(st.sampled_from(KINDS))
    obj: dict[str, Any] = {"apiVersion": api, "kind": kind,
                           "metadata": draw(st.one_of(st.fixed_dictionaries(
                               {"name": st.text(min_size=1, max_size=8), "namespace": st.sampled_from(["a", "b"])},
                               optional={"annotations": st.dictionaries(st.text(max_size=30), st.text(max_size=10),
                                                                        max_size=2),
                                         # the API server's field bookkeeping (not walked at admission)
                                         "managedFields": json_value}), json_value))}
    spec = draw(st.one_of(json_value, st.just({"template": {"spec": {"containers": [
        {"name": "c", "image": draw(st.text(max_size=10)), "env": draw(json_value),
         "securityContext": draw(json_value)}]}}}), st.just({"ingress": [{}]})))
    obj["spec" if kind != "ClusterRole" else "rules"] = spec
    if kind == "List":
        obj["items"] = draw(st.lists(json_value, max_size=3))
    if draw(st.integers(0, 9)) == 0:
        obj["spec"] = deep(obj.get("spec"), draw(st.integers(100, 300)))
    return obj


def _dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False)
    except RecursionError:  # a deep document: JSON is YAML too, and json.dumps needs fewer frames
        return json.dumps(doc)


@st.composite
def manifest_text(draw: st.DrawFn) -> str:
    docs = [draw(k8s_object()) for _ in range(draw(st.integers(1, 3)))]
    text = "\n---\n".join(_dump(d) for d in docs)
    if draw(st.booleans()):  # anchors and aliases
        alias = "\n".join(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "1"] * draw(st.integers(1, 9))) + "]"
                          for i in range(draw(st.integers(1, 8))))
        text += "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata:\n" + \
            "\n".join("  " + line for line in alias.splitlines())
    return text


@st.composite
def plan_text(draw: st.DrawFn) -> str:
    resources = [{"address": draw(st.sampled_from(["aws_s3_bucket.b", "aws_s3_bucket.b[0]", "module.m.aws_kms_key.k",
                                                   "x", ""])),
                  "mode": draw(st.sampled_from(["managed", "data", 1])), "type": draw(st.sampled_from(RTYPES)),
                  "name": "b", "values": draw(json_value)} for _ in range(draw(st.integers(0, 3)))]
    plan: dict[str, Any] = {"format_version": "1.2", "terraform_version": "1.9.0",
                            "planned_values": {"root_module": {"resources": resources,
                                                               "child_modules": draw(json_value)}},
                            "resource_changes": draw(json_value), "configuration": draw(json_value)}
    levels = draw(st.integers(100, 10_000)) if draw(st.integers(0, 9)) == 0 else 0
    if levels:
        plan["planned_values"]["root_module"]["resources"].append(
            {"address": "d.d", "type": "aws_s3_bucket", "values": "DEEP"})
    text = json.dumps(plan, default=str)
    if levels:  # spliced in as text: json.dumps itself cannot nest that deep
        text = text.replace('"DEEP"', '{"a": ' * levels + "1" + "}" * levels)
    return draw(st.one_of(st.just(text), mutated([text], '{}[]",:0')))


waiver_text = st.one_of(
    st.builds(lambda entries: yaml.safe_dump({"waivers": entries}), st.lists(st.one_of(
        json_value, st.fixed_dictionaries({"rule": st.sampled_from(["SOC2-AWS-S3-001", "*", "", "x?"]),
                                           "resource": st.text(max_size=10), "reason": st.text(max_size=10),
                                           "owner": st.text(max_size=5),
                                           "expires": st.one_of(st.dates().map(str), json_value)})), max_size=4)),
    json_value.map(lambda v: yaml.safe_dump(v)),
)
config_text = st.one_of(
    st.dictionaries(st.sampled_from(["severity_threshold", "format", "fail_on_unknown", "enable", "disable",
                                     "policy_dirs", "waiver_file", "waiver_warning_days", "baseline", "limits",
                                     "bogus"]), json_value, max_size=4).map(lambda v: yaml.safe_dump(v)),
    st.dictionaries(st.sampled_from(["depth", "file_bytes", "yaml_nodes", "seconds_per_file", "x"]),
                    st.one_of(st.integers(-5, 10**6), st.text(max_size=5), st.booleans()), max_size=3)
    .map(lambda v: yaml.safe_dump({"limits": v})),
)


@st.composite
def admission_review(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)
    request = {"uid": draw(st.one_of(st.text(max_size=8), json_value)),
               "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "", 5])),
               "namespace": draw(st.sampled_from(["a", "", None, "kube-system"])),
               "object": draw(st.one_of(k8s_object(), json_value)),
               "oldObject": draw(st.one_of(st.none(), k8s_object())),
               "dryRun": draw(st.one_of(st.booleans(), json_value)),
               "userInfo": draw(st.one_of(json_value, st.fixed_dictionaries(
                   {"username": st.text(max_size=8), "groups": st.lists(st.text(max_size=5), max_size=3)}))),
               "resource": draw(st.one_of(json_value, st.just({"group": "apps", "version": "v1",
                                                                "resource": "deployments"})))}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


# ----------------------------------------------------------------------------- runners

class Runner:
    """Runs one input through the real code path and checks the property."""

    def __init__(self, workdir: Path) -> None:
        from soc2infra._core.pack import load_pack

        self.workdir = workdir
        self.pack = load_pack()
        self._policy: Any = None

    def _scan_text(self, name: str, text: str) -> None:
        from soc2infra._core.reports import ReportInput, render
        from soc2infra._core.scan import ScanOptions, scan

        case = Path(tempfile.mkdtemp(dir=self.workdir))
        (case / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        result = scan([str(case)], self.pack, ScanOptions(base_dir=case, jobs=1))
        for error in result.errors:
            assert error.file, f"an error without a file: {error}"
        render("json", ReportInput(result=result, pack=self.pack, base_dir=str(case)))

    def hcl(self, text: str) -> None:
        self._scan_text("main.tf", text)

    def plan(self, text: str) -> None:
        self._scan_text("plan.tfplan.json", text)

    def manifest(self, text: str) -> None:
        self._scan_text("manifest.yaml", text)

    def waivers(self, text: str) -> None:
        from soc2infra._core.waivers import load_waiver_file

        path = Path(tempfile.mkdtemp(dir=self.workdir)) / ".soc2infra-waivers.yaml"
        path.write_text(text, encoding="utf-8")
        _entries, errors = load_waiver_file(path)
        assert all(e.file for e in errors)

    def config(self, text: str) -> None:
        from soc2infra._core.config import ConfigError, read_config

        path = Path(tempfile.mkdtemp(dir=self.workdir)) / ".soc2infra.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            read_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc)

    def admission(self, review: Any) -> None:
        from soc2infra_operator.admission import (
            AdmissionPolicy,
            build_response,
            decide,
            request_from_review,
            review_response,
            rule_relations,
        )
        from soc2infra_operator.settings import OperatorSettings

        if self._policy is None:
            self._policy = AdmissionPolicy.build(self.pack, OperatorSettings(), rule_relations(self.pack))
        decision = decide(request_from_review(review), self._policy)
        answer = review_response(review, build_response(decision))
        assert isinstance(answer["response"]["allowed"], bool)
        json.dumps(answer)
        # The decision's evidence record is always a valid entry (checked, redacted, serialised).
        from soc2infra.evidence.records import prepare_entry
        from soc2infra_operator.evidence import admission_record

        meta = {r.id: (r.severity, r.controls) for r in self.pack.rules}
        prepare_entry(admission_record(decision, self.pack.digest, meta))


def strategies() -> dict[str, st.SearchStrategy[Any]]:
    tf_corpus = _corpus(("examples/**/*.tf", "tests/data/**/*.tf"))
    yaml_corpus = _corpus(("examples/**/*.yaml", "tests/data/**/*.yaml"))
    return {
        "hcl": st.one_of(hcl_file(), mutated(tf_corpus, '{}[]()"$=#\n.*?:')),
        "plan": plan_text(),
        "manifest": st.one_of(manifest_text(), mutated(yaml_corpus, "{}[]&*:-|>'\"\n\t #!")),
        "waivers": waiver_text,
        "config": config_text,
        "admission": admission_review(),
    }


@dataclass
class Tally:
    cases: int = 0
    slowest: float = 0.0
    crashes: dict[str, dict[str, str]] = field(default_factory=dict)


def _signature(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "soc2infra" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


_PACK_RUNNER: Runner | None = None


def fuzz(target: str, cases: int, seed: int, max_seconds: float, out_dir: Path | None) -> Tally:
    """Run *cases* inputs of *target*; crashes are recorded, not raised."""
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix=f"soc2infra-fuzz-{target}-") as tmp:
        global _PACK_RUNNER
        if _PACK_RUNNER is None:
            _PACK_RUNNER = Runner(Path(tmp))  # loading the pack once per process
        runner = _PACK_RUNNER
        runner.workdir = Path(tmp)
        run: Callable[[Any], None] = getattr(runner, target)

        def record(data: Any, signature: str, detail: str) -> None:
            if signature in tally.crashes:
                return
            tally.crashes[signature] = {"input": data if isinstance(data, str) else json.dumps(data, default=str),
                                        "detail": detail[-4000:]}
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                name = f"{target}-{len(tally.crashes)}"
                (out_dir / f"{name}.input").write_text(tally.crashes[signature]["input"], encoding="utf-8",
                                                        errors="surrogatepass")
                (out_dir / f"{name}.txt").write_text(f"{signature}\n\n{detail}", encoding="utf-8")

        @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(strategies()[target])
        def one(data: Any) -> None:
            tally.cases += 1
            t0 = time.monotonic()
            try:
                run(data)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - every escape is a finding (OutOfTime too)
                record(data, _signature(exc), traceback.format_exc())
            elapsed = time.monotonic() - t0
            tally.slowest = max(tally.slowest, elapsed)
            if elapsed > max_seconds:
                record(data, f"slow ({elapsed:.1f} s > {max_seconds:g} s)", "")

        one._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
        one()
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=102_000,
                        help="total inputs, split evenly over the targets (102,000: 17,000 each, at least 100,000)")
    parser.add_argument("--target", action="append", choices=sorted(strategies()), help="only these targets")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--round", type=int, default=500, help="cases per target per round (a new seed each)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="per-input time bound")
    parser.add_argument("--json", type=Path, help="write the counts here (after every round)")
    parser.add_argument("--crash-dir", type=Path, default=ROOT / "bench" / "fuzz-crashes")
    args = parser.parse_args(argv)
    targets = args.target or sorted(strategies())
    per = max(1, args.cases // len(targets))
    totals = {t: {"cases": 0, "crashes": set(), "seconds": 0.0, "slowest_case_seconds": 0.0} for t in targets}
    t0 = time.monotonic()
    # Rounds over every target, so a run stopped early has still covered them all.
    done, round_no = 0, 0
    while done < per:
        chunk = min(args.round, per - done)
        for target in targets:
            start = time.monotonic()
            tally = fuzz(target, chunk, args.seed + round_no, args.max_seconds, args.crash_dir)
            row = totals[target]
            row["cases"] += tally.cases
            row["crashes"] |= set(tally.crashes)
            row["seconds"] += time.monotonic() - start
            row["slowest_case_seconds"] = max(row["slowest_case_seconds"], tally.slowest)
        done += chunk
        round_no += 1
        report = _report(args.seed, totals, time.monotonic() - t0)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    for target, row in totals.items():
        print(f"{target:<10} {row['cases']:>7} cases {row['seconds']:7.1f} s  slowest "
              f"{row['slowest_case_seconds']:6.3f} s  crashes {len(row['crashes'])}" +
              "".join(f"\n    {c}" for c in sorted(row["crashes"])), flush=True)
    print(f"total      {report['cases']:>7} cases {report['seconds']:7.1f} s  crashes {report['crashes']}")
    return 1 if report["crashes"] else 0


def _report(seed: int, totals: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    targets = {t: {**row, "crashes": sorted(row["crashes"]), "seconds": round(row["seconds"], 1),
                   "slowest_case_seconds": round(row["slowest_case_seconds"], 3)} for t, row in totals.items()}
    return {"seed": seed, "targets": targets, "cases": sum(r["cases"] for r in targets.values()),
            "crashes": sum(len(r["crashes"]) for r in targets.values()), "seconds": round(seconds, 1)}


if __name__ == "__main__":
    sys.exit(main())
