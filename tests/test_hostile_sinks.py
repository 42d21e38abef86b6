"""Class names are user input: hostile ones go through a real audit (the cached 10-class digits control, a COCO
set whose category names are hostile) and every sink keeps its shape. summary.md and the step summary keep
their table columns; junit.xml parses and holds each name; report.html gains no element; under
GITHUB_ACTIONS=true no line the runner would read as a command is anyone's but camgate's, and camgate's own
carry the name escaped; the MLflow tags hold the names intact, the metric names stay under MLflow's limit;
every class keeps its own overlay file. Unit tests pin each sink's rule (validator.report.escape)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from validator.report.escape import (
    filename,
    gh_data,
    gh_property,
    html_text,
    md_code,
    md_text,
    mlflow_key,
    mlflow_value,
    terminal,
    xml_text,
)

ROOT = Path(__file__).resolve().parents[1]
LONG = "L" * 600
HOSTILE = ("a\n::warning::pwned", "x|y", "`code`", "<script>alert(1)</script>", "%0A", "]]>", LONG,
           "b\r\n::error file=x::owned", "c,d:e $x", "\x1b[31mred")  # $: matplotlib mathtext
POLICY = """name: hostile
version: 1
sample: {min_samples: 10, min_per_class: 5, max_samples: 100}
checks:
  - {id: class-heat, metric: lift, aggregate: mean, bound: point, min: 1000, slices: per_class}
  - {id: dead, metric: dead, aggregate: rate, max: 1.0}
"""


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, heldout_digits, digits10_clean_model):
    """`camgate audit` as a process under GITHUB_ACTIONS=true, logging to a fresh SQLite store: every class
    fails its (impossible) per-class check, so every name reaches every sink."""
    data = heldout_digits(n_classes=10, n=100)
    doc = json.loads(data.coco_path.read_text())
    ids = sorted(c["id"] for c in doc["categories"])
    for cat in doc["categories"]:
        cat["name"] = HOSTILE[ids.index(cat["id"])]
    coco = data.coco_path.with_name("hostile-annotations.json")  # beside the images; the shared file is kept
    coco.write_text(json.dumps(doc))
    root = tmp_path_factory.mktemp("hostile")
    (root / "policy.yaml").write_text(POLICY)
    step_summary = root / "step_summary.md"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step_summary),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    uri = f"sqlite:///{root / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "validator.cli", "audit", str(digits10_clean_model.path), "--data", str(coco),
         "--policy", str(root / "policy.yaml"), "--out", str(root / "report"), "--tracking-uri", uri],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    verdict = json.loads((root / "report" / "verdict.json").read_text())
    assert proc.returncode == 1 and verdict["status"] == "FAIL", proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"proc": proc, "out": root / "report", "verdict": verdict, "uri": uri, "step_summary": step_summary}


def _cells(row: str) -> int:
    """Cells of a GFM table row: split on pipes not escaped by a backslash."""
    return len(re.split(r"(?<!\\)\|", row.strip().strip("|").replace("\\\\", "")))


@pytest.mark.parametrize("source", ["summary.md", "step summary"])
def test_markdown_tables_keep_their_columns(hostile_run, source):
    text = (hostile_run["out"] / "summary.md" if source == "summary.md" else hostile_run["step_summary"]).read_text()
    lines = text.splitlines()
    header = lines.index("| | check | slice | value | interval | compared | threshold | n |")
    rows = []
    for line in lines[header:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) >= 2 + 2 * len(HOSTILE)  # header, rule, a class-heat and a data.min_per_class row per class
    assert {_cells(r) for r in rows} == {8}, [r for r in rows if _cells(r) != 8][:3]
    for name in HOSTILE:
        assert md_text(f"class={name}") in text
    assert not any(line.lstrip().startswith(("::", "<script")) for line in lines)


def test_junit_parses_and_round_trips_every_name(hostile_run):
    suite = ET.parse(hostile_run["out"] / "junit.xml").getroot().find("testsuite")
    failed = {case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None}
    # ESC cannot be held by XML 1.0: it becomes U+FFFD, every other name comes back exactly
    assert failed == {xml_text(f"class={name}") for name in HOSTILE}
    assert "class=\ufffd[31mred" in failed and f"class={HOSTILE[0]}" in failed


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_gains_no_element(hostile_run):
    parser = _Elements()
    parser.feed((hostile_run["out"] / "report.html").read_text())
    assert "script" not in parser.tags
    text = "".join(parser.text)
    assert "class=<script>alert(1)</script>" in text and "class=]]>" in text  # shown as text, intact


def _runner_commands(stream: str) -> list[str]:
    """The lines the Actions runner reads as workflow commands (it trims leading white space)."""
    return [line.lstrip() for line in stream.splitlines() if line.lstrip().startswith("::")]


def _unescape_property(value: str) -> str:
    """The runner's decoding of a command property."""
    for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        value = value.replace(escaped, raw)
    return value


def test_no_line_on_stdout_or_stderr_is_an_injected_workflow_command(hostile_run):
    proc = hostile_run["proc"]
    assert _runner_commands(proc.stderr) == []
    commands = _runner_commands(proc.stdout)
    assert len(commands) == 10 and all(c.startswith("::error title=camgate ") for c in commands), commands
    titles = set()
    for command in commands:
        head, sep, data = command[2:].partition("::")
        assert sep and "\n" not in data and "\r" not in data
        name, _, props = head.partition(" ")
        assert name == "error" and props.startswith("title=") and "," not in props and "::" not in props
        titles.add(_unescape_property(props[len("title="):]))
    # ESC is shown as %1B (the runner decodes only %25 %0D %0A %3A %2C), every other name comes back exactly
    assert titles == {f"camgate class-heat (class={n})".replace("\x1b", "%1B") for n in HOSTILE}
    assert f"title={gh_property('camgate class-heat (class=a' + chr(10) + '::warning::pwned)')}::" in proc.stdout
    # the check lines and the verdict line carry the names on one line each
    assert "class=a\\n::warning::pwned" in proc.stdout and "class=\\x1b[31mred" in proc.stdout
    assert "\x1b" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("camgate: FAIL (exit 1) — 10 check(s) failed: ")


def test_mlflow_tags_hold_the_names_and_metric_names_fit(hostile_run):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=hostile_run["uri"])
    run = client.get_run(hostile_run["verdict"]["tracking"]["run_id"])
    failed = run.data.tags["camgate.failed_checks"]
    for name in HOSTILE:
        assert f"class-heat[class={name}]" in failed  # intact: the whole value is under the 8000 limit
    assert run.data.tags["mlflow.note.content"].startswith("## ")
    assert all(len(k) <= 250 for k in run.data.metrics)
    # per class, the names live in the logged tables (the bounded record keeps no per-class metric): intact
    tables = {}
    for name in ("slices", "checks"):
        path = client.download_artifacts(run.info.run_id, f"camgate/{name}.json", str(hostile_run["out"].parent))
        doc = json.loads(Path(path).read_text())  # mlflow.log_table's format: {"columns": [...], "data": [...]}
        tables[name] = [dict(zip(doc["columns"], row, strict=True)) for row in doc["data"]]
    slices = {row["slice"] for row in tables["slices"]}
    class_heat = {row["slice"] for row in tables["checks"] if row["check_id"] == "class-heat"}
    assert {f"class={name}" for name in HOSTILE} <= slices
    assert {f"class={name}" for name in HOSTILE} <= class_heat


def test_every_class_keeps_its_own_overlay_files(hostile_run):
    atlases = [o for o in hostile_run["verdict"]["overlays"] if o["kind"] == "atlas" and o["class_name"]]
    assert {o["class_name"] for o in atlases} == set(HOSTILE)
    assert len({o["path"] for o in atlases}) == len(HOSTILE)
    assert all((hostile_run["out"] / o["path"]).is_file() for o in hostile_run["verdict"]["overlays"])


# ---- each sink's rule ---------------------------------------------------------------------------------------

def test_github_command_escaping_is_the_runners():
    assert gh_data("50%\r\n::x: a,b\x1b") == "50%25%0D%0A::x: a,b%1B"
    assert gh_property("50%\r\n::x: a,b") == "50%25%0D%0A%3A%3Ax%3A a%2Cb"


def test_markdown_cell_and_code_span():
    for name in HOSTILE:
        row = f"| {md_text(name)} | {md_code(name)} |"
        assert "\n" not in row and "\r" not in row and _cells(row) == 2, row
    assert md_text("<b>*x*</b>") == r"\<b\>\*x\*\</b\>"
    assert md_code("a`b") == "``a`b``" and md_code("`x`", cell=False) == "`` `x` ``"


def test_xml_text_parses_with_any_character():
    hostile = "".join(chr(i) for i in range(32)) + "\ufffe\ud800]]><&\""
    element = ET.Element("testcase", name=xml_text(hostile))
    element.text = xml_text(hostile)
    parsed = ET.fromstring(ET.tostring(element))
    assert "\t\n" in parsed.get("name") and "]]><&\"" in parsed.text


def test_html_terminal_file_names_and_mlflow_values():
    assert html_text("<img src=x onerror='a'>") == "&lt;img src=x onerror=&#x27;a&#x27;&gt;"
    assert terminal("a\r\n::warning::x\x1b[2J\u2028") == "a\\r\\n::warning::x\\x1b[2J\\u2028"
    names = {filename(n) for n in ("x|y", "x_y", "x?y", LONG, LONG + "M")}
    assert len(names) == 5 and all(len(n) <= 64 for n in names) and filename("disc") == "disc"
    assert mlflow_key(LONG, 120) != mlflow_key(LONG + "M", 120) and len(mlflow_key(LONG, 120)) == 120
    value = mlflow_value("x\x00" + "y" * 20000)
    assert len(value) <= 8000 and "\x00" not in value and value.endswith("(truncated: 20002 characters)")


def test_mlflow_accepts_the_escaped_tag_values_as_given(tmp_path, monkeypatch):
    """With MLflow's own truncation off, an over-long value would be refused: the escaped one is stored whole."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    run = client.create_run(client.create_experiment("e"))
    raw = "a\n::warning::pwned|" + LONG * 20
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.set_tag(run.info.run_id, "raw", raw)
    client.set_tag(run.info.run_id, "camgate.failed_checks", mlflow_value(raw))
    assert client.get_run(run.info.run_id).data.tags["camgate.failed_checks"] == mlflow_value(raw)
