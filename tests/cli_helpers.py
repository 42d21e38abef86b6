"""Run the real `camgate` entry point in-process (same code path as the console script)."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass
class CliResult:
    exit_code: int
    out: str
    err: str


def run_cli(capsys, *args: str) -> CliResult:
    from validator.cli import run

    saved = sys.argv
    sys.argv = ["camgate", *map(str, args)]
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
