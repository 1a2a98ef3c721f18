"""Non-local modules: read from where `terraform init` put them, fetched on request (real git, a
registry server of our own speaking the documented protocol over TLS), and never skipped in
silence. Every fetched variant must give the same findings and addresses as the same code
vendored as a local module."""

from __future__ import annotations

import http.server
import io
import json
import shutil
import ssl
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.scan import ScanOptions, scan
from soc2infra._core.sources.terraform_modules import (
    newest_matching,
    normalize_source,
    redact_url,
    registry_token,
    source_kind,
    version_matches,
)
from soc2infra.cli import main
from soc2infra.lab.pki import write_webhook_pki

BUCKET_MODULE = {
    "main.tf": """
variable "bucket" { type = string }
variable "versioning" {
  type    = bool
  default = false
}
resource "aws_s3_bucket" "this" {
  bucket = var.bucket
}
resource "aws_s3_bucket_versioning" "this" {
  count  = var.versioning ? 1 : 0
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}
module "logs" {
  source = "./modules/logs"
  name   = "${var.bucket}-logs"
}
output "arn" { value = aws_s3_bucket.this.arn }
""",
    "modules/logs/main.tf": """
variable "name" { type = string }
resource "aws_cloudwatch_log_group" "this" {
  name = var.name
}
""",
}

ROOT_TEMPLATE = """module "data" {{
  source = "{source}"{version}
  bucket     = "acme-data"
  versioning = true
}}
"""


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def write_tree(base: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        target = base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return base


def root_module(tmp: Path, source: str, version: str | None = None) -> Path:
    root = tmp / "root"
    root.mkdir(parents=True)
    ver = f'\n  version = "{version}"' if version else ""
    (root / "main.tf").write_text(ROOT_TEMPLATE.format(source=source, version=ver))
    return root


def outcome(result) -> set[tuple[str, str, str]]:
    """Findings as (rule, address, status): what must not depend on where a module came from."""
    return {(f.rule_id, f.resource.address, f.status) for f in result.findings}


def cli(capsys, *args: str) -> tuple[int, str]:
    """The real command line, in-process: (exit code, standard output)."""
    code = main(["scan", *args, "--no-config"] if "--config" not in args else ["scan", *args])
    return code, capsys.readouterr().out


def run(root: Path, pack, download: bool = False):
    return scan([str(root)], pack, ScanOptions(base_dir=root, download_external_modules=download))


@pytest.fixture
def vendored(tmp_path: Path, pack):
    """The reference: the same module vendored as a local module."""
    root = root_module(tmp_path / "vendored", "./vendor/data")
    write_tree(root / "vendor" / "data", BUCKET_MODULE)
    result = run(root, pack)
    assert not result.errors
    addresses = {r.address for r in result.resources if r.kind == "terraform"}
    assert {"module.data.aws_s3_bucket.this", "module.data.aws_s3_bucket_versioning.this[0]",
            "module.data.module.logs.aws_cloudwatch_log_group.this"} <= addresses
    assert result.findings, "the bucket module must produce findings for the comparison to mean anything"
    return outcome(result)


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOC2INFRA_CACHE", str(cache))
    return cache


# ------------------------------------------------------------------ unit: sources and versions

@pytest.mark.parametrize("source, kind", [
    ("./modules/x", "local"), ("../x", "local"),
    ("terraform-aws-modules/s3-bucket/aws", "registry"),
    ("app.terraform.io/acme/vpc/aws", "registry"),
    ("git::https://github.com/acme/vpc.git?ref=v1", "git"),
    ("github.com/acme/vpc", "git"), ("git@github.com:acme/vpc.git", "git"),
    ("https://example.com/vpc.zip", "http"),
    ("s3::https://s3-eu-west-1.amazonaws.com/bucket/vpc.zip", "s3"),
    ("gcs::https://www.googleapis.com/storage/v1/bucket/vpc.zip", "gcs"),
])
def test_source_kinds(source, kind):
    assert source_kind(source) == kind


def test_registry_sources_normalize_like_terraform_init():
    assert normalize_source("terraform-aws-modules/s3-bucket/aws") == \
        "registry.terraform.io/terraform-aws-modules/s3-bucket/aws"
    assert normalize_source("app.terraform.io/acme/vpc/aws") == "app.terraform.io/acme/vpc/aws"
    assert normalize_source("localhost:8443/acme/vpc/aws") == "localhost:8443/acme/vpc/aws"


@pytest.mark.parametrize("constraint, expected", [
    (None, "2.1.0"), ("~> 1.2", "1.9.0"), ("~> 1.2.0", "1.2.5"), (">= 1.0, < 2.0", "1.9.0"),
    ("1.2.0", "1.2.0"), ("= 3.0.0", None), ("!= 2.1.0", "2.0.0"),
])
def test_newest_matching_version(constraint, expected):
    versions = ["1.0.0", "1.2.0", "1.2.5", "1.9.0", "2.0.0", "2.1.0", "2.2.0-beta1"]
    assert newest_matching(versions, constraint) == expected


def test_prerelease_only_when_named_exactly():
    assert not version_matches("2.2.0-beta1", ">= 2.0")
    assert version_matches("2.2.0-beta1", "2.2.0-beta1")


def test_registry_token_from_env_and_cli_config(tmp_path: Path):
    env = {"HOME": str(tmp_path), "TF_TOKEN_registry_example_com": "from-env"}
    assert registry_token("registry.example.com", env) == "from-env"
    assert registry_token("my-reg.example.com", {"HOME": str(tmp_path),
                                                 "TF_TOKEN_my__reg_example_com": "dashed"}) == "dashed"
    (tmp_path / ".terraformrc").write_text('credentials "tf.example.com" {\n  token = "from-rc"\n}\n')
    assert registry_token("tf.example.com", {"HOME": str(tmp_path)}) == "from-rc"
    (tmp_path / ".terraform.d").mkdir()
    (tmp_path / ".terraform.d" / "credentials.tfrc.json").write_text(
        json.dumps({"credentials": {"login.example.com": {"token": "from-login"}}}))
    assert registry_token("login.example.com", {"HOME": str(tmp_path)}) == "from-login"
    assert registry_token("other.example.com", {"HOME": str(tmp_path)}) is None


def test_redacted_urls_keep_no_credentials():
    text = redact_url("https://user:hunter2@example.com/x.zip?token=abc&archive=zip")
    assert "hunter2" not in text and "abc" not in text and "archive=zip" in text


# ------------------------------------------------------------------ nothing unscanned in silence

ISSUE_EXAMPLE = """
module "bucket" {
  source  = "terraform-aws-modules/s3-bucket/aws"
  version = "4.1.0"
  bucket  = "acme-data"
}
module "vpc" {
  source = "git::https://github.com/terraform-aws-modules/terraform-aws-vpc.git?ref=v5.8.1"
  name   = "main"
}
resource "aws_cloudwatch_log_group" "app" {
  name              = "app"
  retention_in_days = 400
  kms_key_id        = module.bucket.kms_key_arn
}
"""


def test_unfetched_modules_are_listed_and_can_block(tmp_path: Path, capsys):
    (tmp_path / "main.tf").write_text(ISSUE_EXAMPLE)
    code, out = cli(capsys, str(tmp_path), "--format", "json")
    doc = json.loads(out)
    assert code == 0, out
    cov = doc["coverage"]
    assert doc["summary"]["modules_not_scanned"] == cov["modules_not_scanned"] == 2
    by_addr = {m["address"]: m for m in cov["modules"]}
    assert not by_addr["module.bucket"]["scanned"] and not by_addr["module.vpc"]["scanned"]
    assert "registry module not fetched" in by_addr["module.bucket"]["reason"]
    assert "git source not fetched" in by_addr["module.vpc"]["reason"]
    assert "--download-external-modules" in by_addr["module.vpc"]["reason"]
    assert by_addr["module.vpc"]["line"] == 7

    code, text = cli(capsys, str(tmp_path))
    assert "2 modules not scanned" in text.splitlines()[-1]
    assert "module.vpc" in text and "run terraform init" in text

    assert cli(capsys, str(tmp_path), "--fail-on-unscanned")[0] == 1
    for fmt in ("sarif", "junit", "markdown"):
        out = cli(capsys, str(tmp_path), "--format", fmt)[1]
        assert "module.vpc" in out and "not scanned" in out.replace("not-scanned", "not scanned"), fmt


def test_values_from_an_unscanned_module_are_unknown(tmp_path: Path, pack):
    (tmp_path / "main.tf").write_text(ISSUE_EXAMPLE)
    result = run(tmp_path, pack)
    group = next(r for r in result.resources if r.address == "aws_cloudwatch_log_group.app")
    from soc2infra._cogs.model import is_unknown

    assert is_unknown(group.attributes["kms_key_id"])
    assert "not scanned" in group.attributes["kms_key_id"].reason


def test_missing_local_module_is_listed(tmp_path: Path, pack):
    (tmp_path / "main.tf").write_text('module "gone" {\n  source = "./nowhere"\n}\n')
    result = run(tmp_path, pack)
    [rec] = result.coverage.unscanned_modules
    assert rec.address == "module.gone" and "does not exist" in rec.reason


def test_fail_on_unscanned_from_the_config_file(tmp_path: Path, capsys):
    (tmp_path / "main.tf").write_text(ISSUE_EXAMPLE)
    (tmp_path / ".soc2infra.yaml").write_text("fail_on_unscanned: true\n")
    assert cli(capsys, str(tmp_path), "--config", str(tmp_path / ".soc2infra.yaml"))[0] == 1


# ------------------------------------------------------------------ after terraform init

def init_like(root: Path, key: str, source: str, files: dict[str, str], version: str | None = None) -> None:
    """What `terraform init` leaves behind: the module under .terraform/modules and modules.json."""
    write_tree(root / ".terraform" / "modules" / key, files)
    entries = [{"Key": "", "Source": "", "Dir": "."},
               {"Key": key, "Source": source, "Dir": f".terraform/modules/{key}",
                **({"Version": version} if version else {})},
               {"Key": f"{key}.logs", "Source": "./modules/logs",
                "Dir": f".terraform/modules/{key}/modules/logs"}]
    (root / ".terraform" / "modules" / "modules.json").write_text(json.dumps({"Modules": entries}))


def test_init_fetched_registry_module_matches_vendored(tmp_path: Path, pack, vendored):
    root = root_module(tmp_path / "init", "acme/bucket/aws", "~> 1.0")
    init_like(root, "data", "registry.terraform.io/acme/bucket/aws", BUCKET_MODULE, "1.2.0")
    result = run(root, pack)
    assert not result.errors
    assert outcome(result) == vendored
    rec = next(m for m in result.coverage.modules if m.address == "module.data")
    assert rec.scanned and rec.origin == "terraform init" and rec.resolved_version == "1.2.0"
    assert rec.digest.startswith("sha256:")
    # The finding points into the module's file and at the calling block in the root.
    f = next(f for f in result.findings if f.resource.address == "module.data.aws_s3_bucket.this")
    assert f.resource.file == ".terraform/modules/data/main.tf"
    assert f.to_dict()["resource"]["module_call"] == {"file": "main.tf", "line": 1}


def test_stale_modules_json_entry_is_not_used(tmp_path: Path, pack):
    root = root_module(tmp_path / "stale", "acme/bucket/aws", "~> 1.0")
    init_like(root, "data", "registry.terraform.io/acme/other/aws", BUCKET_MODULE, "1.2.0")
    result = run(root, pack)
    [rec] = result.coverage.unscanned_modules
    assert "modules.json records another source" in rec.reason


def test_sarif_related_location_is_the_module_call(tmp_path: Path, capsys, monkeypatch):
    root = root_module(tmp_path / "init", "acme/bucket/aws", "~> 1.0")
    init_like(root, "data", "registry.terraform.io/acme/bucket/aws", BUCKET_MODULE, "1.2.0")
    monkeypatch.chdir(root)
    doc = json.loads(cli(capsys, ".", "--format", "sarif")[1])
    results = [r for r in doc["runs"][0]["results"]
               if r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
               == "module.data.aws_s3_bucket.this"]
    assert results
    related = results[0]["relatedLocations"][0]["physicalLocation"]
    assert related["artifactLocation"]["uri"].endswith("main.tf") and related["region"]["startLine"] == 1
    assert ".terraform" not in related["artifactLocation"]["uri"]


# ------------------------------------------------------------------ download: real git

def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository holding the module under modules/bucket, tagged v1.0.0; a later
    commit on the default branch breaks the module, so the tag must really be honoured."""
    if shutil.which("git") is None:
        pytest.fail("git is needed for this test")
    repo = tmp_path / "repo"
    write_tree(repo / "modules" / "bucket", BUCKET_MODULE)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "bucket module", cwd=repo)
    git("tag", "v1.0.0", cwd=repo)
    (repo / "modules" / "bucket" / "main.tf").write_text('resource "aws_s3_bucket" "moved" {}\n')
    git("commit", "-qam", "break it", cwd=repo)
    return repo


def test_git_module_downloaded_matches_vendored(tmp_path: Path, pack, vendored, git_repo, isolated_cache):
    source = f"git::file://{git_repo}//modules/bucket?ref=v1.0.0"
    root = root_module(tmp_path / "git", source)
    without = run(root, pack)
    assert [m.address for m in without.coverage.unscanned_modules] == ["module.data"]
    result = run(root, pack, download=True)
    assert not result.errors
    assert outcome(result) == vendored
    rec = next(m for m in result.coverage.modules if m.address == "module.data")
    assert rec.scanned and rec.origin == "download"
    assert any(isolated_cache.rglob("main.tf")), "fetched into the user cache"
    # A second scan reuses the cache: the repository can be gone.
    shutil.rmtree(git_repo)
    assert outcome(run(root, pack, download=True)) == vendored


def test_git_fetch_failure_is_reported_not_raised(tmp_path: Path, pack, isolated_cache):
    root = root_module(tmp_path / "bad", f"git::file://{tmp_path}/no-such-repo?ref=v1")
    result = run(root, pack, download=True)
    [rec] = result.coverage.unscanned_modules
    assert rec.reason.startswith("download failed: git")


# ------------------------------------------------------------------ download: registry protocol

class Registry:
    """A module registry on loopback TLS implementing the documented protocol: discovery,
    versions, download with X-Terraform-Get (here a relative URL to a tar.gz archive)."""

    def __init__(self, tmp: Path, token: str) -> None:
        self.token = token
        self.requests: list[tuple[str, str | None]] = []
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for rel, text in BUCKET_MODULE.items():
                data = text.encode()
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        self.archive = buf.getvalue()
        self.pki = write_webhook_pki(tmp / "pki")
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                auth = self.headers.get("Authorization")
                registry.requests.append((self.path, auth))
                if self.path == "/.well-known/terraform.json":
                    return self.reply(200, {"modules.v1": "/api/modules/v1/"})
                if auth != f"Bearer {registry.token}":
                    return self.reply(401, {"errors": ["unauthorized"]})
                if self.path == "/api/modules/v1/acme/bucket/aws/versions":
                    return self.reply(200, {"modules": [{"versions": [
                        {"version": "1.0.0"}, {"version": "1.2.0"}, {"version": "2.0.0"}]}]})
                if self.path == "/api/modules/v1/acme/bucket/aws/1.2.0/download":
                    self.send_response(204)
                    self.send_header("X-Terraform-Get", "../../../../archives/bucket-1.2.0.tar.gz")
                    self.end_headers()
                    return None
                if self.path == "/api/modules/v1/archives/bucket-1.2.0.tar.gz":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(registry.archive)))
                    self.end_headers()
                    self.wfile.write(registry.archive)
                    return None
                return self.reply(404, {"errors": ["not found"]})

            def reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.certfile, self.pki.pkeyfile)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> Iterator[Registry]:
    reg = Registry(tmp_path, token="s3cret-registry-token")
    monkeypatch.setenv("SSL_CERT_FILE", str(reg.pki.cafile))
    monkeypatch.setenv("TF_TOKEN_127_0_0_1_" + reg.host.split(":")[1], reg.token)
    yield reg
    reg.close()


def test_registry_module_downloaded_matches_vendored(tmp_path: Path, pack, vendored, registry, isolated_cache,
                                                     capsys):
    root = root_module(tmp_path / "reg", f"{registry.host}/acme/bucket/aws", "~> 1.0")
    result = run(root, pack, download=True)
    assert not result.errors
    assert outcome(result) == vendored
    rec = next(m for m in result.coverage.modules if m.address == "module.data")
    assert rec.scanned and rec.origin == "download" and rec.resolved_version == "1.2.0"
    paths = [p for p, _ in registry.requests]
    assert "/api/modules/v1/acme/bucket/aws/1.2.0/download" in paths
    # The token went to the registry and appears in no output.
    assert all(auth == f"Bearer {registry.token}" for p, auth in registry.requests if "/api/" in p)
    for fmt in ("json", "text", "sarif", "junit", "markdown"):
        code, out = cli(capsys, str(root), "--download-external-modules", "--format", fmt)
        err = capsys.readouterr().err
        assert registry.token not in out + err, fmt
        assert code in (0, 1), out


def test_registry_without_a_matching_version_is_reported(tmp_path: Path, pack, registry, isolated_cache):
    root = root_module(tmp_path / "reg", f"{registry.host}/acme/bucket/aws", "~> 3.0")
    [rec] = run(root, pack, download=True).coverage.unscanned_modules
    assert "no version" in rec.reason and "~> 3.0" in rec.reason


def test_registry_rejecting_the_token_is_reported_without_it(tmp_path: Path, pack, registry, isolated_cache,
                                                              monkeypatch):
    monkeypatch.setenv("TF_TOKEN_127_0_0_1_" + registry.host.split(":")[1], "wrong-token-value")
    root = root_module(tmp_path / "reg", f"{registry.host}/acme/bucket/aws", "~> 1.0")
    [rec] = run(root, pack, download=True).coverage.unscanned_modules
    assert "HTTP 401" in rec.reason and "wrong-token-value" not in rec.reason


def test_no_network_still_scans_and_reports(tmp_path: Path, pack, isolated_cache):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    root = root_module(tmp_path / "offline", "127.0.0.1:9/acme/bucket/aws", "~> 1.0")
    (root / "extra.tf").write_text('resource "aws_s3_bucket" "own" {\n  bucket = "own"\n}\n')
    result = run(root, pack, download=True)
    assert not result.errors
    assert any(f.resource.address == "aws_s3_bucket.own" for f in result.findings)
    [rec] = result.coverage.unscanned_modules
    assert rec.reason.startswith("download failed")


def test_scan_evidence_names_the_modules_and_versions_evaluated(tmp_path: Path, capsys):
    root = root_module(tmp_path / "init", "acme/bucket/aws", "~> 1.0")
    init_like(root, "data", "registry.terraform.io/acme/bucket/aws", BUCKET_MODULE, "1.2.0")
    (root / "other.tf").write_text('module "vpc" {\n  source = "git::https://example.com/vpc.git?ref=v1"\n}\n')
    db = tmp_path / "ledger.db"
    assert main(["scan", str(root), "--no-config", "--format", "json", "--evidence", str(db)]) == 1
    capsys.readouterr()
    assert main(["evidence", "export", str(db), "--format", "jsonl"]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    modules = {m["address"]: m for m in record["context"]["modules"]}
    assert modules["module.data"]["scanned"] is True and modules["module.data"]["resolved_version"] == "1.2.0"
    assert modules["module.data"]["digest"].startswith("sha256:")
    assert modules["module.data.module.logs"]["origin"] == "local"
    assert modules["module.vpc"]["scanned"] is False
    assert record["context"]["modules_not_scanned"] == 1


TWO_CALLS = """module "reg" {{
  source = "{reg}"{reg_version}
  bucket = "acme-reg"
}}

module "git" {{
  source     = "{git}"
  bucket     = "acme-git"
  versioning = true
}}
"""


def full_outcome(result) -> set[tuple]:
    """Findings with the root-level location of their module call."""
    out = set()
    for f in result.findings:
        call = f.resource.meta.get("module_call") or {}
        out.add((f.rule_id, f.resource.address, f.status, call.get("file"), call.get("line")))
    return out


def test_git_and_registry_modules_match_vendored_after_init_and_after_download(
        tmp_path: Path, pack, git_repo, registry, isolated_cache):
    def root_with(name: str, reg: str, reg_version: str, git_source: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        (root / "main.tf").write_text(TWO_CALLS.format(reg=reg, reg_version=reg_version, git=git_source))
        return root

    # A comment where the others have `version`, so the module blocks sit on the same lines.
    vendored_root = root_with("vendored", "./vendor/reg", "\n  # local", "./vendor/git")
    write_tree(vendored_root / "vendor" / "reg", BUCKET_MODULE)
    write_tree(vendored_root / "vendor" / "git", BUCKET_MODULE)
    expected = full_outcome(run(vendored_root, pack))
    assert {a for _, a, *_ in expected} >= {"module.reg.aws_s3_bucket.this", "module.git.aws_s3_bucket.this"}
    assert {(f, line) for *_, f, line in expected} == {("main.tf", 1), ("main.tf", 7)}

    reg_source = f"{registry.host}/acme/bucket/aws"
    git_source = f"git::file://{git_repo}//modules/bucket?ref=v1.0.0"
    downloaded = root_with("downloaded", reg_source, '\n  version = "~> 1.0"', git_source)
    result = run(downloaded, pack, download=True)
    assert not result.coverage.unscanned_modules and not result.errors
    assert full_outcome(result) == expected

    fetched = root_with("fetched", reg_source, '\n  version = "~> 1.0"', git_source)
    write_tree(fetched / ".terraform" / "modules" / "reg", BUCKET_MODULE)
    write_tree(fetched / ".terraform" / "modules" / "git" / "modules" / "bucket", BUCKET_MODULE)
    (fetched / ".terraform" / "modules" / "modules.json").write_text(json.dumps({"Modules": [
        {"Key": "", "Source": "", "Dir": "."},
        {"Key": "reg", "Source": reg_source, "Version": "1.2.0", "Dir": ".terraform/modules/reg"},
        {"Key": "git", "Source": git_source, "Dir": ".terraform/modules/git/modules/bucket"},
    ]}))
    result = run(fetched, pack)  # no download: modules.json alone
    assert not result.coverage.unscanned_modules
    assert full_outcome(result) == expected


def test_yaml_that_is_not_a_manifest_is_listed_as_skipped(tmp_path: Path, pack, capsys):
    (tmp_path / "mkdocs.yml").write_text("site_name: docs\nnav: []\n")
    (tmp_path / "tpl.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.x }}\n")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n")
    result = scan([str(tmp_path)], pack, ScanOptions(base_dir=tmp_path))
    reasons = {f.path: f.reason for f in result.coverage.skipped_files}
    assert reasons == {"mkdocs.yml": "not a Kubernetes manifest (no apiVersion and kind)",
                       "tpl.yaml": "unrendered template (Go template actions outside a Helm chart)"}
    code, out = cli(capsys, str(tmp_path), "--format", "json")
    doc = json.loads(out)
    assert {f["path"].rsplit("/", 1)[-1] for f in doc["coverage"]["skipped_files"]} == {"mkdocs.yml", "tpl.yaml"}
