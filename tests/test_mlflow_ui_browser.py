"""The gate run as a reviewer sees it: the MLflow UI loaded in headless Chromium (Debian package).

Skipped with a reason when /usr/bin/chromium is missing, except under CI (env CI set), where it fails:
.ci/run installs Chromium, so a missing browser there is a broken setup, not a reason to skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_mlflow_server import MlflowServer

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.server]

POLICY = """name: browser-pass
version: 1
sample: {max_samples: 24, seed: 0, min_samples: 10, min_per_class: 5}
checks:
  - {id: dead-maps, metric: dead, aggregate: rate, bound: point, max: 1.0, severity: fail}
"""
# the same plus a check no model meets: the second audit FAILs
FAIL_POLICY = POLICY.replace("browser-pass", "browser-fail") + (
    "  - {id: impossible-heat, metric: lift, aggregate: mean, bound: lower, min: 1000, severity: fail}\n")


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def gate_on_server(chromium, tmp_path_factory):
    """An audit recorded on a real `mlflow server` (it boots while the audit computes; the record retries)."""
    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit
    from validator.tracking import TrackingOptions

    root = tmp_path_factory.mktemp("browser")
    server = MlflowServer(root)
    try:
        data = write_dataset(root / "data", 24, seed=5)
        keras.utils.set_random_seed(2)
        model = root / "reviewed.keras"
        build_small_cnn(64, 2).save(model)
        (root / "policy.yaml").write_text(POLICY)
        (root / "fail.yaml").write_text(FAIL_POLICY)
        verdict = audit(model, data.coco_path, policy=root / "policy.yaml", out=root / "report",
                        tracking=TrackingOptions(uri=server.url, experiment="review", retry_seconds=240))
        assert verdict.status == "PASS", f"{verdict.error}\n{server.tail()}"
        failed = audit(model, data.coco_path, policy=root / "fail.yaml", out=root / "report-fail",
                       tracking=TrackingOptions(uri=server.url, experiment="review", retry_seconds=60))
        assert failed.status == "FAIL", f"{failed.error}\n{server.tail()}"
        server.wait()
        yield {"root": root, "server": server, "verdict": verdict, "failed": failed}
    finally:
        server.stop()


def browse(chromium: Path, url: str, profile: Path, screenshot: Path | None = None) -> str:
    """Load ``url`` in headless Chromium; return the DOM after the page's scripts ran (and take a screenshot)."""
    args = [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1800",
            "--virtual-time-budget=20000", "--dump-dom"]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_run_page_lists_status_tag_and_overlay_artifact(chromium, gate_on_server):
    from PIL import Image

    root, v = gate_on_server["root"], gate_on_server["verdict"]
    run_url = v.tracking["url"]
    assert run_url.startswith(gate_on_server["server"].url + "/#/experiments/")

    screenshot = root / "run-page.png"
    overview = browse(chromium, run_url, root / "profile-overview", screenshot=screenshot)
    assert "camgate.status" in overview and "PASS" in overview  # the tag, as the Tags section shows it
    assert v.tracking["run_id"] in overview and "camgate.policy_hash" in overview
    with Image.open(screenshot) as image:
        image.load()
        assert image.size == (1400, 1800)
        low, high = image.convert("L").getextrema()
    assert high - low > 100  # a rendered page, not a blank one

    worst = next(o for o in v.overlays if o["kind"] == "worst")
    artifact = f"camgate/report/{worst['path']}"
    page = browse(chromium, f"{run_url}/artifacts/{artifact}", root / "profile-artifacts")
    assert Path(worst["path"]).name in page  # the overlay is listed (and selected) in the artifact browser
    assert "<img" in page


def test_runs_table_shows_the_verdict_dataset_and_model(chromium, gate_on_server):
    """The experiment's runs table as it opens, no column configured: the run name carries the verdict, the
    Dataset column names the held-out set, the Models column the audited model file."""
    import re

    from PIL import Image

    root, server = gate_on_server["root"], gate_on_server["server"]
    passed, failed = gate_on_server["verdict"], gate_on_server["failed"]
    url = f"{server.url}/#/experiments/{passed.tracking['experiment_id']}/runs"
    screenshot = root / "runs-table.png"
    page = browse(chromium, url, root / "profile-runs", screenshot=screenshot)
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<a[^>]*>.*?</a>", page)]  # link texts
    assert "PASS · reviewed · browser-pass v1" in cells, cells[:40]
    assert "FAIL · reviewed · browser-fail v1" in cells, cells[:40]
    # Dataset column: name (digest) of the held-out set; Models column: each run's logged model of the file
    assert len(re.findall(r'title="data/annotations\.json \([0-9a-f]{16}\)"', page)) == 2
    for v in (passed, failed):
        assert re.search(rf'href="[^"]*/models/{v.tracking["model_id"]}"[^>]*>reviewed</a>', page), v.tracking
    with Image.open(screenshot) as image:
        image.load()
        low, high = image.convert("L").getextrema()
    assert high - low > 100
    assert failed.tracking["run_id"] != passed.tracking["run_id"]
