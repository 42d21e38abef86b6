"""Write every local output of an audit. Called on PASS, WARN, FAIL and ERROR alike."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from validator.report.html import render_html
from validator.report.junit import render_junit
from validator.report.markdown import github_annotations, render_markdown

SUMMARY_LIMIT = 512 * 1024  # GitHub caps a step summary at 1 MiB; stay well under


def write_reports(verdict) -> dict:
    """verdict.json, BLESSED/NOT_BLESSED, junit.xml, summary.md, report.html, samples.csv (+ error.log).

    Safe to call again (e.g. after tracking failed): every file is rewritten. GitHub output is separate
    (:func:`publish_to_github`) so it happens once per audit."""
    out = Path(verdict.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "verdict": out / "verdict.json",
        "junit": out / "junit.xml",
        "summary": out / "summary.md",
        "html": out / "report.html",
        "marker": out / ("BLESSED" if verdict.ok else "NOT_BLESSED"),
    }
    if verdict.table is not None:
        outputs["samples"] = out / "samples.csv"
    if verdict.traceback:
        outputs["log"] = out / "error.log"
    verdict.outputs = {key: str(path) for key, path in outputs.items()}

    for stale in ("BLESSED", "NOT_BLESSED"):
        if (out / stale) != outputs["marker"]:
            (out / stale).unlink(missing_ok=True)
    outputs["marker"].write_text(f"{verdict.status}\n")
    if verdict.traceback:
        outputs["log"].write_text(verdict.traceback)
    if verdict.table is not None:
        write_samples_csv(verdict.table, outputs["samples"])
    data = verdict.to_dict()
    summary = render_markdown(data)[:SUMMARY_LIMIT]
    outputs["summary"].write_text(summary)
    outputs["junit"].write_text(render_junit(data))
    outputs["html"].write_text(render_html(data, out))
    # verdict.json last: its presence means every other file was written.
    outputs["verdict"].write_text(json.dumps(data, indent=2))
    return verdict.outputs


def write_samples_csv(table: dict, path: Path) -> None:
    columns = list(table)
    n = len(table[columns[0]]) if columns else 0
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(n):
            writer.writerow([_cell(table[c][i]) for c in columns])


def _cell(value):
    if value is None:
        return ""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def publish_to_github(verdict) -> None:
    """Under GitHub Actions: append the summary to the job page and print a bounded set of annotations."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    data = verdict.to_dict()
    summary = render_markdown(data)[:SUMMARY_LIMIT]
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as handle:
            handle.write(summary + "\n")
    for line in github_annotations(data):
        print(line, flush=True)
