"""Write every local output of an audit. Called on PASS, WARN, FAIL and ERROR alike."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from pathlib import Path

from validator.errors import UsageError
from validator.report.html import render_html
from validator.report.junit import render_junit
from validator.report.markdown import github_annotations, render_markdown

SUMMARY_LIMIT = 512 * 1024  # GitHub caps a step summary at 1 MiB; stay well under


# Files the gate owns in --out: cleared at the start of every run so that none can outlive the run that wrote
# it (a rerun into the same folder must not show an older samples.csv, error.log or overlay).
OWNED_FILES = ("verdict.json", "BLESSED", "NOT_BLESSED", "junit.xml", "summary.md", "report.html",
               "samples.csv", "error.log", "shard.npz")
OWNED_OVERLAY_PREFIXES = ("worst_", "typical_", "atlas_", "cluster_")
UNFINISHED = "the audit did not finish (it is still running, or it was killed before it could write a verdict)"
# In every folder the gate writes into: one line per file it wrote there, "<sha256>  <name>" (the last line for
# a name is its current content). The gate deletes or replaces only a file whose name and content are recorded
# here: what it cannot prove it wrote (a user's summary.md, an edited report) it leaves alone and refuses.
MANIFEST = ".camgate-written"


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: a reader sees the old file or the new one."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def commit(tmp: Path, path: Path) -> None:
    """Rename the finished temporary file ``tmp`` onto ``path``, recording it in the folder's manifest first."""
    digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
    with open(Path(path).parent / MANIFEST, "a", encoding="utf-8") as fh:
        fh.write(f"{digest}  {Path(path).name}\n")
    os.replace(tmp, path)


def _recorded(folder: Path) -> dict[str, str]:
    """{name: sha256 of the content the gate last wrote} for ``folder`` (empty without a manifest)."""
    try:
        lines = (Path(folder) / MANIFEST).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    out = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            out[name] = digest
    return out


def written_by_gate(path: Path, recorded: dict[str, str] | None = None) -> bool:
    """True when ``path`` holds exactly what the gate last wrote there (its manifest says so)."""
    path = Path(path)
    recorded = _recorded(path.parent) if recorded is None else recorded
    if path.name not in recorded or not path.is_file():
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == recorded[path.name]


def _owned_names(out: Path) -> list[Path]:
    """The files in ``out`` whose names the gate writes (reports, overlays): what a run would replace."""
    found = [out / name for name in OWNED_FILES if (out / name).exists()]
    overlays = out / "overlays"
    if overlays.is_dir():
        found += sorted(p for p in overlays.glob("*.png") if p.name.startswith(OWNED_OVERLAY_PREFIXES))
    return found


def refuse_foreign_outputs(out: Path) -> None:
    """UsageError when ``out`` holds a file with one of the gate's output names that the gate cannot prove it
    wrote (not in the folder's manifest, or changed since): a run would replace it. Checked before anything
    is cleared or written."""
    out = Path(out)
    if not out.is_dir():
        return
    manifests: dict[Path, dict] = {}
    foreign = [p for p in _owned_names(out)
               if not written_by_gate(p, manifests.setdefault(p.parent, _recorded(p.parent)))]
    if foreign:
        shown = ", ".join(str(p.relative_to(out)) for p in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise UsageError(f"--out {out} holds {len(foreign)} file(s) with the names of the gate's reports that it "
                         f"did not write, or that changed since it wrote them ({shown}; its record: {MANIFEST}): "
                         "a run would replace them, so it refuses; choose another --out, or move them away")


def refuse_inputs_in(out: Path, inputs) -> None:
    """UsageError when ``out`` is an input folder or directly holds an input file (``inputs``: ``(what, path)``
    pairs; paths that are not local files or folders, such as ``models:/`` URIs or in-memory models, are
    skipped), or when an input lies under ``out/overlays``.

    Checked before anything is cleared: the gate clears its own file names in ``out`` and writes its reports
    there, so a folder shared with an input (a shard folder, the data folder) could lose or overwrite it."""
    folder = Path(out).resolve()
    overlays = folder / "overlays"
    for what, path in inputs:
        if not isinstance(path, str | os.PathLike) or not os.path.exists(path):
            continue
        path = Path(path).resolve()
        # a file beside the reports, or the folder itself; a sub-folder is safe unless it is overlays/
        beside = path.parent == folder and not path.is_dir()
        if path in (folder, overlays) or beside or overlays in path.parents:
            raise UsageError(f"--out {out} holds {what} {path}: the gate clears its earlier outputs in --out "
                             "and writes its reports there, so it may not share a folder with an input; "
                             "choose another --out")


def clear_outputs(out: Path) -> None:
    """Remove the files an earlier run of the gate wrote into ``out`` (recorded in its manifest, unchanged);
    nothing else is touched."""
    manifests: dict[Path, dict] = {}
    for path in _owned_names(Path(out)):
        remove_own(path, manifests.setdefault(path.parent, _recorded(path.parent)))
    for folder in (Path(out), Path(out) / "overlays"):
        _compact(folder)


def _compact(folder: Path) -> None:
    """Rewrite the folder's record with one line per file still there (it grows a line per write)."""
    recorded = _recorded(folder)
    if not recorded:
        return
    kept = "".join(f"{digest}  {name}\n" for name, digest in recorded.items() if (folder / name).exists())
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    try:
        tmp.write_text(kept, encoding="utf-8")
        os.replace(tmp, folder / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)


def remove_own(path: Path, recorded: dict[str, str] | None = None) -> None:
    """Delete ``path`` if the gate wrote exactly its content; leave anything else alone."""
    if written_by_gate(path, recorded):
        Path(path).unlink(missing_ok=True)


def start_outputs(verdict) -> None:
    """Clear the earlier run's files and leave a provisional ERROR verdict until the real one replaces it,
    so a run killed hard (SIGKILL, power loss) leaves a verdict that says so, never an earlier PASS."""
    out = Path(verdict.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out)
    data = verdict.to_dict() | {"status": "ERROR", "gate_ok": False, "exit_code": 3, "error": UNFINISHED}
    write_text_atomic(out / "NOT_BLESSED", "ERROR\n")
    write_text_atomic(out / "verdict.json", json.dumps(data, indent=2, default=str))


def write_minimal(verdict) -> None:
    """verdict.json and NOT_BLESSED only: the last resort when the full reports cannot be written."""
    try:
        out = Path(verdict.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "NOT_BLESSED", verdict.status + "\n")
        write_text_atomic(out / "verdict.json", json.dumps(verdict.to_dict(), indent=2, default=str))
    except OSError:
        pass


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
            remove_own(out / stale)
    write_text_atomic(outputs["marker"], f"{verdict.status}\n")
    if verdict.traceback:
        write_text_atomic(outputs["log"], verdict.traceback)
    else:
        remove_own(out / "error.log")  # written by an earlier call of this run
    if verdict.table is not None:
        write_samples_csv(verdict.table, outputs["samples"])
    data = verdict.to_dict()
    summary = render_markdown(data)[:SUMMARY_LIMIT]
    write_text_atomic(outputs["summary"], summary)
    write_text_atomic(outputs["junit"], render_junit(data))
    write_text_atomic(outputs["html"], render_html(data, out))
    # verdict.json last: its final content means every other file was written.
    write_text_atomic(outputs["verdict"], json.dumps(data, indent=2))
    return verdict.outputs


def refresh_html(verdict) -> None:
    """Rewrite report.html alone, after the MLflow record: its header then names the run (or the command that
    opens it). The copy logged to the run is the one written before; the other files are unchanged."""
    html = (verdict.outputs or {}).get("html")
    if html:
        write_text_atomic(Path(html), render_html(verdict.to_dict(), Path(verdict.out_dir)))


def write_samples_csv(table: dict, path: Path) -> None:
    columns = list(table)
    n = len(table[columns[0]]) if columns else 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for i in range(n):
                writer.writerow([_cell(table[c][i]) for c in columns])
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
