"""report.html renders in headless Chromium as a reviewer opens it (1400 x 900): the verdict and the failing
checks above the fold, every overlay loaded with its key beside it, the atlas findings.

The layout is measured in the browser: a copy of the report gets a measuring script (the report itself has
none) that writes the boxes it measured into the DOM, which ``--dump-dom`` returns. Screenshots are written
to the test's tmp dir and, when ``$CAMGATE_ARTIFACTS`` is set, copied there (``report_browser/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest
from test_mlflow_ui_browser import chromium  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser

WIDTH, FOLD = 1400, 900

MEASURE = """<script>
addEventListener('load', () => {
  const box = el => el ? el.getBoundingClientRect().toJSON() : null;
  const cards = [...document.querySelectorAll('article.card[data-outcome]')];
  const out = {
    viewport: [innerWidth, innerHeight], height: document.documentElement.scrollHeight,
    verdict: box(document.querySelector('#verdict')),
    cards: cards.map(c => ({outcome: c.dataset.outcome, id: c.querySelector('code').textContent, box: box(c),
      threshold: box(c.querySelector('td.threshold')), thresholdText: c.querySelector('td.threshold').textContent,
      compared: box(c.querySelector('td.compared')), sentence: box(c.querySelector('p.sentence')),
      insidePassed: !!c.closest('details#passed')})),
    passed: document.querySelector('details#passed') ? {open: document.querySelector('details#passed').open,
      box: box(document.querySelector('details#passed'))} : null,
    figures: [...document.querySelectorAll('figure.overlay')].map(f => {
      const img = f.querySelector('img'), key = f.querySelector('.legend');
      return {kind: f.dataset.kind, loaded: !!img && img.complete && img.naturalWidth > 0,
              natural: img ? [img.naturalWidth, img.naturalHeight] : null, img: box(img), key: box(key),
              keyText: key ? key.textContent : '', caption: (f.querySelector('.cap') || {}).textContent || ''};
    }),
    findings: [...document.querySelectorAll('article[data-finding]')].map(a => a.dataset.finding),
  };
  const pre = document.createElement('pre');
  pre.id = 'layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(browser: Path, url: str, profile: Path, height: int, screenshot: Path | None = None) -> str:
    args = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{height}", "--virtual-time-budget=20000", "--dump-dom"]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def measure(browser: Path, report: Path, work: Path, name: str) -> tuple[dict, str]:
    """Open ``report`` at 1400 x 900 (screenshot ``<name>-top.png``) and the whole page (``<name>-full.png``);
    return the layout the page measured and the DOM."""
    probe = work / f"{name}-measured.html"
    probe.write_text(report.read_text().replace("</body>", MEASURE + "</body>"))
    top = work / f"{name}-top.png"
    dom = _chromium(browser, probe.as_uri(), work / "profile", FOLD, top)
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    layout = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    full = work / f"{name}-full.png"
    _chromium(browser, report.as_uri(), work / "profile", min(int(layout["height"]) + 20, 16000), full)
    artifacts = os.environ.get("CAMGATE_ARTIFACTS")
    if artifacts:
        keep = Path(artifacts) / "report_browser"
        keep.mkdir(parents=True, exist_ok=True)
        for shot in (top, full):
            shutil.copy2(shot, keep / shot.name)
    return layout, dom


def test_failing_report_shows_the_failed_checks_above_the_fold(chromium, tmp_path, watermark_model,  # noqa: F811
                                                               heldout_coco):
    from validator import audit

    out = tmp_path / "r"
    verdict = audit(str(watermark_model.path), str(heldout_coco("watermark", n=120, seed=3).coco_path), out=out)
    assert verdict.status == "FAIL"
    layout, dom = measure(chromium, out / "report.html", tmp_path, "watermark")
    assert "camgate verdict: FAIL" in dom
    assert layout["viewport"][0] == WIDTH, layout["viewport"]  # the width sets the layout; positions are from the top

    # the verdict, then the failed checks first (then the warned), none of them inside the passed list
    cards = layout["cards"]
    outcomes = [c["outcome"] for c in cards]
    assert outcomes and outcomes[0] == "FAIL" and outcomes == sorted(outcomes, key=["FAIL", "INCONCLUSIVE", "WARN"].index)
    assert not any(c["insidePassed"] for c in cards)
    assert {c["id"] for c in cards if c["outcome"] == "FAIL"} >= {"corner-heat", "object-heat"}
    assert layout["verdict"]["bottom"] <= 120
    first = cards[0]
    assert first["box"]["bottom"] <= FOLD and first["threshold"]["bottom"] <= FOLD, first
    assert first["thresholdText"].startswith(("≥", "≤"))
    for card in cards:
        if card["outcome"] == "FAIL":  # every failed check starts above the fold, its numbers in reach
            assert card["box"]["top"] < FOLD and card["compared"]["bottom"] > card["sentence"]["top"]
    assert layout["passed"] is not None and not layout["passed"]["open"]
    assert layout["passed"]["box"]["top"] > max(c["box"]["bottom"] for c in cards)

    # every overlay (worst, typical, atlases) has loaded, with its key right beside it
    figures = layout["figures"]
    assert len(figures) == len(verdict.overlays) == dom.count("data:image/png;base64,")
    assert {f["kind"] for f in figures} >= {"worst", "typical", "atlas"}
    for f in figures:
        assert f["loaded"], f
        assert f["key"] is not None and "heat ÷ uniform map" in f["keyText"]
        img, key = f["img"], f["key"]
        assert 0 <= key["top"] - img["bottom"] <= 120 and key["left"] < img["right"] and key["right"] > img["left"]
        if f["kind"] in ("worst", "typical"):
            assert f["natural"][0] > 1.5 * f["natural"][1]  # the image beside its heat, then the colour bar
            assert "annotated object" in f["keyText"]
            assert re.match(r"true \w+ · predicted \w+ \(p = [01]\.\d\d\)", f["caption"]), f["caption"]
    assert "atlas" in layout["findings"]  # the corner heat shows in the atlas, as a finding card

    top = cv2.imread(str(tmp_path / "watermark-top.png"))
    assert top is not None and top.shape[:2] == (FOLD, WIDTH) and top.std() > 10
    # the banner is red (FAIL): the top rows of the screenshot contain the banner colour #cf222e
    band = top[:120].reshape(-1, 3)
    assert ((abs(band[:, 2].astype(int) - 0xCF) < 30) & (band[:, 1] < 80) & (band[:, 0] < 90)).any()
    assert cv2.imread(str(tmp_path / "watermark-full.png")).shape[0] > FOLD
