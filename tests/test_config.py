"""Configuration: discovery, validation with located errors, precedence, rule selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc2infra._core.config import (
    ConfigError,
    RuleSelection,
    Settings,
    WaiverSettings,
    find_config,
    find_repo_root,
    load_settings,
    read_config,
    resolve_settings,
    select_rules,
)
from soc2infra._core.pack import load_pack

POLICIES = Path(__file__).parent / "data" / "policies"


def test_find_config_walks_up_to_the_repository_root(tmp_path):
    repo = tmp_path / "repo"
    deep = repo / "infra" / "prod"
    deep.mkdir(parents=True)
    (repo / ".git").mkdir()
    assert find_config(deep) is None
    (repo / ".soc2infra.yaml").write_text("severity_threshold: high\n")
    assert find_config(deep) == repo / ".soc2infra.yaml"
    # The nearest one wins.
    (repo / "infra" / ".soc2infra.yml").write_text("{}\n")
    assert find_config(deep) == repo / "infra" / ".soc2infra.yml"
    assert find_repo_root(deep) == repo.resolve()


def test_config_above_the_repository_is_not_used(tmp_path):
    (tmp_path / ".soc2infra.yaml").write_text("severity_threshold: high\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert find_config(repo) is None


def test_pyproject_counts_only_with_a_tool_table(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_config(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.soc2infra]\nformat = "json"\n')
    assert find_config(tmp_path) == tmp_path / "pyproject.toml"
    assert read_config(tmp_path / "pyproject.toml") == {"format": "json"}
    # A dedicated file beside it takes precedence.
    (tmp_path / ".soc2infra.yaml").write_text("format: sarif\n")
    assert find_config(tmp_path) == tmp_path / ".soc2infra.yaml"


def test_read_config_normalises_keys_and_resolves_paths_relative_to_the_file(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "w.yaml").write_text("waivers: []\n")
    cfg = tmp_path / ".soc2infra.yaml"
    cfg.write_text("""
severity-threshold: medium
format: sarif
fail_on_unknown: true
enable: [encryption, "TEST-*"]
disable: TEST-STORE-002
policy_dirs: [rules]
builtin_policies: false
waiver_file: w.yaml
waiver_warning_days: 30
""")
    assert read_config(cfg) == {
        "severity_threshold": "medium", "format": "sarif", "fail_on_unknown": True,
        "enable": ("encryption", "TEST-*"), "disable": ("TEST-STORE-002",), "policy_dirs": (tmp_path / "rules",),
        "builtin_policies": False, "waiver_file": tmp_path / "w.yaml", "waiver_warning_days": 30,
    }


@pytest.mark.parametrize("text, key, line, message", [
    ("format: json\nseverity_threshold: severe\n", "severity_threshold", 2, "must be one of critical"),
    ("format: html\n", "format", 1, "must be one of text, json"),
    ("fail_on_unknown: yes please\n", "fail_on_unknown", 1, "true or false"),
    ("\n\nthreshold: high\n", "threshold", 3, "unknown key"),
    ("waiver_warning_days: -1\n", "waiver_warning_days", 1, "whole number"),
    ("waiver_warning_days: true\n", "waiver_warning_days", 1, "whole number"),
    ("enable: [1, 2]\n", "enable", 1, "list of strings"),
    ("waiver_file: missing.yaml\n", "waiver_file", 1, "does not exist"),
])
def test_bad_yaml_config_names_file_key_and_line(tmp_path, text, key, line, message):
    cfg = tmp_path / ".soc2infra.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_config(cfg)
    err = info.value
    assert (err.file, err.key, err.line) == (str(cfg), key, line)
    assert str(err).startswith(f"{cfg}:{line}: key {key!r}: ") and message in str(err)


def test_bad_pyproject_config_names_the_table_and_key(tmp_path):
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text('[tool.soc2infra]\nseverity_threshold = "urgent"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.soc2infra\]: key 'severity_threshold'"):
        read_config(cfg)
    cfg.write_text("[tool.soc2infra\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_config(cfg)


@pytest.mark.parametrize("text, message", [("a: [b\n", "invalid YAML"), ("- a\n- b\n", "expected a mapping")])
def test_malformed_yaml_config(tmp_path, text, message):
    cfg = tmp_path / ".soc2infra.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_config(cfg)


def test_empty_config_file_means_defaults(tmp_path):
    cfg = tmp_path / ".soc2infra.yaml"
    cfg.write_text("# nothing yet\n")
    assert load_settings({}, config_file=cfg) == Settings(source=cfg)


def test_precedence_flags_over_file_over_defaults(tmp_path):
    file_values = {"severity_threshold": "high", "format": "sarif", "fail_on_unknown": True,
                   "policy_dirs": (Path("/org/rules"),), "disable": ("TEST-STORE-002",), "waiver_warning_days": 30}
    # Defaults where neither says anything.
    assert resolve_settings({}, {}) == Settings()
    # The file over the defaults.
    s = resolve_settings(file_values, {"severity_threshold": None, "format": None, "fail_on_unknown": None})
    assert (s.severity_threshold, s.format, s.fail_on_unknown) == ("high", "sarif", True)
    assert s.waivers == WaiverSettings(warning_days=30)
    # Flags over the file; list flags extend the file's lists.
    s = resolve_settings(file_values, {"severity_threshold": "critical", "format": "json", "fail_on_unknown": False,
                                       "policy_dirs": (Path("extra"),), "disable": ("logging",)})
    assert (s.severity_threshold, s.format, s.fail_on_unknown) == ("critical", "json", False)
    assert s.rules == RuleSelection(disable=("TEST-STORE-002", "logging"),
                                    policy_dirs=(Path("/org/rules"), Path("extra")))


def test_load_settings_finds_the_file_from_cwd_or_ignores_it(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / ".soc2infra.yaml").write_text("severity_threshold: high\n")
    assert load_settings({}, cwd=tmp_path / "sub").severity_threshold == "high"
    assert load_settings({}, cwd=tmp_path / "sub").source == tmp_path / ".soc2infra.yaml"
    assert load_settings({"severity_threshold": "low"}, cwd=tmp_path / "sub").severity_threshold == "low"
    assert load_settings({}, use_config=False, cwd=tmp_path / "sub") == Settings()


def _enabled(selection: RuleSelection) -> tuple[list[str], list[str], list[str]]:
    pack = load_pack([POLICIES], builtin=False)
    pack, warnings = select_rules(pack, selection)
    indexed = sorted(r.id for r in pack.by_type.get("aws_s3_bucket", []))
    return sorted(r.id for r in pack.rules if r.enabled), indexed, warnings


def test_rule_selection_by_id_glob_and_category():
    both = ["TEST-STORE-001", "TEST-STORE-002"]
    assert _enabled(RuleSelection()) == (both, both, [])
    assert _enabled(RuleSelection(disable=("TEST-STORE-002",))) == (["TEST-STORE-001"], ["TEST-STORE-001"], [])
    assert _enabled(RuleSelection(disable=("logging",)))[:2] == (["TEST-STORE-001"], ["TEST-STORE-001"])
    assert _enabled(RuleSelection(enable=("logging",)))[:2] == (["TEST-STORE-002"], ["TEST-STORE-002"])
    assert _enabled(RuleSelection(enable=("TEST-*",), disable=("encryption",)))[0] == ["TEST-STORE-002"]
    assert _enabled(RuleSelection(disable=("TEST-*",)))[:2] == ([], [])


def test_rule_pattern_matching_nothing_warns():
    enabled, _, warnings = _enabled(RuleSelection(disable=("TEST-STROE-*", "encryption")))
    assert enabled == ["TEST-STORE-002"]
    assert warnings == ["rule pattern 'TEST-STROE-*' matches no rule or category"]
