"""The gate's outputs tell the truth: nothing stale survives a rerun, an interrupted run says so, an unknown
option is an ERROR with reports, a policy that compared nothing is INCONCLUSIVE, and the interval a report
shows is the interval a check judged."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from validator import audit
from validator.interrupt import AuditInterrupted
from validator.report.markdown import fmt

LENIENT = {"name": "lenient", "version": 1, "sample": {"min_samples": 10, "min_per_class": 5},
           "checks": [{"id": "any", "metric": "dead", "aggregate": "rate", "max": 1.0}]}


def _verdict(out: Path) -> dict:
    return json.loads((out / "verdict.json").read_text())


def test_a_rerun_into_the_same_folder_leaves_nothing_of_the_earlier_run(tmp_path, small_set, untrained_model):
    out = tmp_path / "report"
    first = audit(str(untrained_model), str(small_set.coco_path), policy=LENIENT, out=out)
    assert first.status == "PASS" and (out / "samples.csv").exists() and (out / "BLESSED").exists()
    pngs = list((out / "overlays").glob("*.png"))
    assert pngs
    (out / "notes.txt").write_text("the user's own file")
    second = audit(str(untrained_model), str(tmp_path / "missing.json"), policy=LENIENT, out=out)
    assert second.status == "ERROR"
    assert _verdict(out)["status"] == "ERROR"
    for stale in ("samples.csv", "BLESSED"):
        assert not (out / stale).exists(), stale
    assert not any(p.exists() for p in pngs)
    assert (out / "NOT_BLESSED").read_text().strip() == "ERROR"
    assert (out / "notes.txt").read_text() == "the user's own file"  # only the gate's own files are cleared
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


def test_while_the_audit_runs_the_verdict_on_disk_says_it_has_not_finished(tmp_path, small_set, untrained_model):
    out = tmp_path / "report"
    earlier = audit(str(untrained_model), str(small_set.coco_path), policy=LENIENT, out=out)  # an earlier PASS there
    assert earlier.status == "PASS" and (out / "BLESSED").exists()
    seen = []

    def progress(done, total):
        seen.append((_verdict(out)["status"], _verdict(out)["error"], (out / "BLESSED").exists()))

    verdict = audit(str(untrained_model), str(small_set.coco_path), policy=LENIENT, out=out, progress=progress,
                    batch_size=8)
    assert verdict.status == "PASS" and _verdict(out)["status"] == "PASS"
    assert seen and all(status == "ERROR" and "did not finish" in error and not blessed
                        for status, error, blessed in seen)


def test_sigterm_mid_audit_leaves_an_interrupted_error_verdict(tmp_path, small_set, untrained_model):
    out = tmp_path / "report"
    before = signal.getsignal(signal.SIGTERM)

    def progress(done, total):  # a CI runner cancelling the job after the first batch
        if done <= 8:
            os.kill(os.getpid(), signal.SIGTERM)

    # the reports are written, then the stop goes on to the caller: a loop of audits does not carry on
    with pytest.raises(AuditInterrupted) as raised:
        audit(str(untrained_model), str(small_set.coco_path), policy=LENIENT, out=out, progress=progress,
              batch_size=8)
    verdict = raised.value.verdict
    assert raised.value.signal_name == "SIGTERM"
    assert verdict.status == "ERROR" and verdict.exit_code == 3
    assert "interrupted by SIGTERM" in verdict.error
    on_disk = _verdict(out)
    assert on_disk["status"] == "ERROR" and "interrupted by SIGTERM" in on_disk["error"]
    assert (out / "NOT_BLESSED").exists() and not (out / "BLESSED").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is gone after the audit


def test_a_stop_signal_that_library_code_swallows_still_stops_the_audit(tmp_path, small_set, untrained_model):
    """A SIGTERM landing inside a C extension's callback comes out of TensorFlow as a SystemError that code may
    catch and carry on from (seen once: the CLI then exited 0 with a PASS). The gate remembers the signal."""
    out = tmp_path / "report"

    def progress(done, total):  # the signal arrives, and something between it and the gate swallows it
        if done <= 8:
            with contextlib.suppress(BaseException):
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(AuditInterrupted) as raised:
        audit(str(untrained_model), str(small_set.coco_path), policy=LENIENT, out=out, progress=progress,
              batch_size=8)
    assert raised.value.verdict.status == "ERROR" and "interrupted by SIGTERM" in raised.value.verdict.error
    assert _verdict(out)["status"] == "ERROR" and not (out / "BLESSED").exists()


def test_sigterm_to_the_cli_process(tmp_path, small_set, untrained_model):
    """A real `camgate audit` process killed by SIGTERM while it works: exit 3, an interrupted ERROR verdict."""
    out = tmp_path / "report"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = ("import sys, time; from validator.cli import run; "
            "sys.argv = ['camgate', 'audit', sys.argv[1], '--data', sys.argv[2], '--out', sys.argv[3], '--no-mlflow',"
            " '--policy', sys.argv[4]]; run()")
    policy = tmp_path / "lenient.yaml"
    policy.write_text(json.dumps(LENIENT))  # JSON is YAML
    proc = subprocess.Popen([sys.executable, "-c", code, str(untrained_model), str(small_set.coco_path), str(out),
                             str(policy)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "verdict.json").exists():
        time.sleep(0.05)
    assert (out / "verdict.json").exists(), proc.communicate(timeout=60)
    proc.send_signal(signal.SIGTERM)  # the audit is loading TensorFlow / the model / explaining now
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err.decode()[-2000:]
    on_disk = _verdict(out)
    assert on_disk["status"] == "ERROR" and "interrupted by SIGTERM" in on_disk["error"]


def test_an_unknown_audit_option_is_an_error_with_reports_not_a_raise(tmp_path, small_set, untrained_model):
    out = tmp_path / "report"
    verdict = audit(str(untrained_model), str(small_set.coco_path), policy=LENIENT, out=out, max_sample=5)
    assert verdict.status == "ERROR" and verdict.exit_code == 2
    assert "max_sample" in verdict.error and "did you mean 'max_samples'" in verdict.error
    assert _verdict(out)["status"] == "ERROR"


def test_only_skipped_change_checks_give_inconclusive_exit_4(tmp_path, small_set, untrained_model):
    policy = {**LENIENT, "checks": [{"id": "no-regression", "metric": "lift", "change": {"absolute": -0.1}}]}
    verdict = audit(str(untrained_model), str(small_set.coco_path), policy=policy, out=tmp_path / "r")
    assert verdict.status == "INCONCLUSIVE" and verdict.exit_code == 4 and not verdict.ok
    assert _verdict(tmp_path / "r")["status"] == "INCONCLUSIVE"
    assert (tmp_path / "r" / "NOT_BLESSED").exists()


def test_the_interval_shown_is_the_interval_judged(tmp_path, small_set, untrained_model):
    # a 15-sample budget draws the two classes unevenly, so the overall slice is weighted; the class check
    # judges Bonferroni 97.5% intervals
    policy = {**LENIENT, "sample": {**LENIENT["sample"], "max_samples": 15},
              "checks": [{"id": "heat", "metric": "lift", "aggregate": "mean", "bound": "lower", "min": 0.0},
                         {"id": "class-heat", "metric": "lift", "aggregate": "mean", "bound": "lower",
                          "min": 0.0, "slices": "per_class"}]}
    out = tmp_path / "r"
    verdict = audit(str(untrained_model), str(small_set.coco_path), policy=policy, out=out)
    per_class = verdict.sample["per_class"]
    assert per_class["disc"]["selected"] != per_class["square"]["selected"]
    judged = [c for c in verdict.checks if c["check_id"] in ("heat", "class-heat")]
    assert [c["slice"] for c in judged] == ["overall", "class=disc", "class=square"]
    for check in judged:
        shown = verdict.summary[check["slice"]]["lift"]["mean"]
        assert (check["observed"], check["lo"], check["hi"]) == (shown["value"], shown["lo"], shown["hi"])
        assert shown.get("confidence", 0.95) == check["confidence"]
    assert [c["confidence"] for c in judged] == [0.95, 0.975, 0.975]
    # and every report says at which level: the HTML class table, the Markdown checks table, MLflow's names
    disc = verdict.summary["class=disc"]["lift"]["mean"]
    html = (out / "report.html").read_text()
    assert f"97.5% CI [{fmt(disc['lo'])}, {fmt(disc['hi'])}]" in html
    assert f"97.5% CI [{fmt(disc['lo'])}, {fmt(disc['hi'])}]" in (out / "summary.md").read_text()
    from validator.tracking.names import summary_metrics

    metrics = summary_metrics(verdict)
    assert metrics["lift_mean/class_disc_level"] == 0.975 and metrics["lift_mean/class_disc_lo"] == disc["lo"]
    assert "lift_mean/overall_level" not in metrics


def test_images_of_classes_outside_the_list_are_out_of_scope_not_skipped(tmp_path, small_set, untrained_model):
    doc = json.loads(small_set.coco_path.read_text())
    for image in doc["images"]:
        image["file_name"] = str(small_set.coco_path.parent / image["file_name"])
    doc["categories"].append({"id": 99, "name": "horse"})  # in the file, not among the model's classes
    horse = tmp_path / "horse.png"  # an image of its own: one file under two ids is an identity clash (exit 2)
    horse.write_bytes(Path(doc["images"][0]["file_name"]).read_bytes())
    doc["images"].append({**doc["images"][0], "id": 9999, "file_name": str(horse)})
    doc["annotations"].append({"id": 9999, "image_id": 9999, "category_id": 99, "bbox": [1, 1, 10, 10]})
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "r"
    verdict = audit(str(untrained_model), str(path), policy=LENIENT, out=out, classes=list(small_set.class_names))
    skipped = next(c for c in verdict.checks if c["check_id"] == "data.skipped")
    assert skipped["outcome"] == "PASS", skipped["message"]
    assert "1 records of classes outside --classes not audited, not counted" in skipped["message"]
    assert verdict.sample["n_out_of_scope"] == 1 and verdict.status == "PASS"
    assert "Out of scope: 1 record(s)" in (out / "summary.md").read_text()
    assert "Out of scope" in (out / "report.html").read_text()
