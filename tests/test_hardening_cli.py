"""Options that contradict each other are usage errors (exit 2) naming both options, never silently resolved."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.usefixtures("isolated_cwd")


@pytest.mark.parametrize(("extra", "first", "second"), [
    (("--no-mlflow", "--tracking-uri", "sqlite:///other.db"), "--no-mlflow", "--tracking-uri"),
    (("--no-mlflow", "--promote", "champion"), "--no-mlflow", "--promote"),
    (("-q", "-v"), "--quiet", "--verbose"),
    (("--quiet", "--verbose", "--no-mlflow"), "--quiet", "--verbose"),
])
def test_conflicting_audit_options_are_usage_errors(capsys, extra, first, second):
    result = run_cli(capsys, "audit", "missing.keras", "--data", "missing.json", *extra)
    assert result.exit_code == 2, result
    assert first in result.err and second in result.err and "cannot be used together" in result.err
    assert "Traceback" not in result.err


def test_demo_refuses_no_mlflow_with_an_explicit_tracking_uri(capsys):
    result = run_cli(capsys, "demo", "--no-mlflow", "--tracking-uri", "sqlite:///x.db", "--workdir", "never")
    assert result.exit_code == 2 and "--no-mlflow" in result.err and "--tracking-uri" in result.err


def test_options_that_do_not_conflict_still_run(capsys, tmp_path):
    # --no-mlflow alone and -q alone reach the audit: the missing model is a runtime error (exit 3), not usage.
    result = run_cli(capsys, "audit", str(tmp_path / "missing.keras"), "--data", str(tmp_path / "none.json"),
                     "--no-mlflow", "-q", "--out", str(tmp_path / "report"))
    assert result.exit_code == 3, result
    assert "cannot be used together" not in result.err
