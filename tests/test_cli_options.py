"""Every option of every command is checked before any work: a bad value is exit 2 with a message naming the
option and what it allows, never an "unexpected ValueError" (exit 3) from deep inside the audit."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from cli_helpers import run_cli

from validator import cli

pytestmark = pytest.mark.usefixtures("isolated_cwd")

AUDIT = ("audit", "model.keras", "--data", "data.json", "--no-mlflow")
MERGE = ("merge", ".", "--no-mlflow")
EXPLAIN = ("explain", "model.keras", "image.png")
UNWRITABLE = "/proc/camgate-cannot-create-this"  # mkdir fails here, even as root

# (command and its required arguments, option, bad value(s), words the message must hold)
CASES = [
    (AUDIT, "--seed", ["-1"], "0<=x<=4294967295"),
    (AUDIT, "--seed", ["4294967296"], "0<=x<=4294967295"),
    (AUDIT, "--seed", ["1.5"], "not a valid integer"),
    (AUDIT, "--max-samples", ["0"], "x>=1"),
    (AUDIT, "--batch-size", ["0"], "x>=1"),
    (AUDIT, "--workers", ["0", "--backend", "ray"], "x>=1"),
    (AUDIT, "--gpus-per-worker", ["-1", "--backend", "ray"], "x>=0"),
    (AUDIT, "--gpus-per-worker", ["nan", "--backend", "ray"], "not a finite number"),
    (AUDIT, "--gpus-per-worker", ["inf", "--backend", "ray"], "not a finite number"),
    (AUDIT, "--gpus-per-worker", ["1.5", "--backend", "ray"], "a share is at most 1"),
    (AUDIT, "--shard", ["3/2"], "1 <= I <= N"),
    (AUDIT, "--shard", ["0/4"], "1 <= I <= N"),
    (AUDIT, "--shard", ["half"], "expected I/N"),
    (AUDIT, "--preprocess", ["bogus"], "none, unit, symmetric, caffe, torch or module:function"),
    (AUDIT, "--method", ["bogus"], "gradcam"),
    (AUDIT, "--method-option", ["steps"], "expected NAME=VALUE"),
    (AUDIT, "--format", ["xml"], "'coco', 'voc', 'csv'"),
    (AUDIT, "--fail-on", ["never"], "'fail', 'warn'"),
    (AUDIT, "--score-on", ["gpu"], "'auto', 'host', 'device'"),
    (AUDIT, "--backend", ["spark"], "'local', 'ray'"),
    (AUDIT, "--images", ["missing-folder"], "does not exist"),
    (AUDIT, "--classes", ["missing.txt"], "does not exist"),
    (AUDIT, "--policy", ["missing.yaml"], "does not exist"),
    (AUDIT, "--layer", [""], "must not be empty"),
    (AUDIT, "--baseline", [" "], "must not be empty"),
    (AUDIT, "--out", [UNWRITABLE], "not a writable folder"),
    (AUDIT, "--out", ["a-file/report"], "not a writable folder"),
    (AUDIT, "--out", ["a-file"], "is a file"),
    (("audit", "model.keras", "--data", "data.json"), "--tracking-uri", [""], "must not be empty"),
    (AUDIT, "--experiment", [""], "must not be empty"),
    (AUDIT, "--mlflow-detail", ["everything"], "'summary', 'full'"),
    (AUDIT, "--exif-orientation", ["rotate"], "'ignore', 'apply'"),
    (AUDIT, "--run-name", [""], "must not be empty"),
    (AUDIT, "--parent-run-id", ["not a run id"], "not an MLflow run id"),
    (("audit", "model.keras", "--data", "data.json"), "--promote", ["latest"], "not 'latest' nor v<number>"),
    (("audit", "model.keras", "--data", "data.json"), "--promote", ["v3"], "not 'latest' nor v<number>"),
    (("audit", "model.keras", "--data", "data.json"), "--promote", ["bad alias"], "letters, digits"),
    (AUDIT, "--ray-address", ["", "--backend", "ray"], "must not be empty"),
    (("audit", "model.keras"), "--data", [""], "must not be empty"),
    (("audit",), "MODEL", ["", "--data", "d.json"], "must not be empty"),
    (MERGE, "--out", [UNWRITABLE], "not a writable folder"),
    (MERGE, "--fail-on", ["never"], "'fail', 'warn'"),
    (MERGE, "--parent-run-id", ["a/b"], "not an MLflow run id"),
    (("merge", "."), "--promote", ["latest"], "not 'latest'"),
    (MERGE, "--experiment", [""], "must not be empty"),
    (MERGE, "--mlflow-detail", ["everything"], "'summary', 'full'"),
    (MERGE, "--run-name", [""], "must not be empty"),
    (("merge", "."), "--tracking-uri", [""], "must not be empty"),
    (("merge",), "SHARDS", ["missing-shard"], "does not exist"),
    (("check-policy",), "POLICY_FILE", ["missing.yaml"], "does not exist"),
    (("check-policy",), "POLICY_FILE", ["."], "is a directory"),
    (("explain", "model.keras"), "IMAGE", ["missing.png"], "does not exist"),
    (("explain",), "MODEL", ["", "image.png"], "must not be empty"),
    (EXPLAIN, "--box", ["0", "0", "nan", "4"], "not a finite number"),
    (EXPLAIN, "--box", ["5", "5", "1", "1"], "0 <= x0 < x1"),
    (EXPLAIN, "--box", ["-1", "0", "2", "2"], "x>=0"),
    (EXPLAIN, "--method", ["bogus"], "gradcam"),
    (EXPLAIN, "--preprocess", ["bogus"], "module:function"),
    (EXPLAIN, "--class", [""], "must not be empty"),
    (EXPLAIN, "--classes", ["missing.txt"], "does not exist"),
    (EXPLAIN, "--layer", [""], "must not be empty"),
    (EXPLAIN, "--out", ["."], "is a directory"),
    (EXPLAIN, "--out", ["no-such-folder/overlay.png"], "does not exist"),
    (("serve",), "--config", ["no-such-config.yaml"], "does not exist"),
    (("serve", "--config", "a-file"), "--port", ["0"], "1<=x<=65535"),
    (("serve", "--config", "a-file"), "--port", ["70000"], "1<=x<=65535"),
    (("serve", "--config", "a-file"), "--host", [""], "must not be empty"),
    (("demo",), "--workdir", [UNWRITABLE], "not a writable folder"),
    (("demo",), "--tracking-uri", [""], "must not be empty"),
]


def _case_id(case) -> str:
    command, option, values, _ = case
    return f"{command[0]} {option} {' '.join(values)}"


@pytest.mark.parametrize(("command", "option", "values", "words"), CASES, ids=[_case_id(c) for c in CASES])
def test_a_bad_value_is_a_usage_error_naming_the_option(capsys, command, option, values, words):
    Path("image.png").write_bytes(b"not read: the check comes first")
    Path("a-file").write_text("a file, not a folder")
    if option in ("MODEL", "SHARDS", "POLICY_FILE", "IMAGE"):  # arguments
        args = [*command, *values]
    else:
        args = [*command, option, *values]
    result = run_cli(capsys, *args)
    assert result.exit_code == 2, (result.exit_code, result.out, result.err[-2000:])
    assert option in result.err and words in result.err, result.err
    assert "Traceback" not in result.err and "unexpected" not in result.err


def _options(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag and not param.hidden:
            names.add(max(param.opts, key=len))
        elif isinstance(param, click.Argument):
            names.add(param.human_readable_name)
    return names


@pytest.mark.parametrize("name", sorted(cli.main.commands))
def test_every_option_that_takes_a_value_has_a_bad_value_case(name):
    covered = {option for command, option, _, _ in CASES if command[0] == name}
    assert _options(cli.main.commands[name]) <= covered, _options(cli.main.commands[name]) - covered


def test_the_out_folder_is_created_up_front(capsys):
    result = run_cli(capsys, "audit", "missing.keras", "--data", "missing.json", "--no-mlflow", "--out", "new/report")
    assert result.exit_code == 3 and "model not found" in result.err  # past the checks: the model is missing
    assert Path("new/report/verdict.json").is_file()


def test_a_traceback_that_out_cannot_take_goes_to_a_temporary_file(capsys):
    """Reports unwritable after the up-front check (e.g. the disk filled): never "traceback written to None"."""
    from validator.verdict import Verdict

    verdict = Verdict(out_dir=Path(UNWRITABLE), model="m", data="d")
    verdict.set_error("could not write reports", 3, trace="Traceback (most recent call last):\n  boom\n")
    cli._print_verdict(verdict, quiet=False, verbose=False)
    err = capsys.readouterr().err
    assert "None" not in err and "traceback written to " in err
    saved = err.split("traceback written to ", 1)[1].split(" (", 1)[0]
    try:
        assert Path(saved).read_text().startswith("Traceback") and "--out could not be written" in err
    finally:
        os.unlink(saved)
