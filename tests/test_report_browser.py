"""report.html renders in headless Chromium: banner, checks, the worst offenders' overlays, the atlas."""

from __future__ import annotations

import cv2
import pytest
from test_mlflow_ui_browser import browse, chromium  # noqa: F401  (the fixture and the page loader)

pytestmark = pytest.mark.browser


def test_failing_report_renders_with_overlays(chromium, tmp_path, watermark_model, heldout_coco):  # noqa: F811
    from validator import audit

    verdict = audit(str(watermark_model.path), str(heldout_coco("watermark", n=120, seed=3).coco_path), out=tmp_path / "r")
    assert verdict.status == "FAIL"
    shot = tmp_path / "report.png"
    dom = browse(chromium, (tmp_path / "r" / "report.html").as_uri(), tmp_path / "profile", screenshot=shot)
    assert "camgate verdict: FAIL" in dom
    assert "corner-heat" in dom and "id=\"worst\"" in dom and "id=\"atlas\"" in dom
    assert dom.count("data:image/png;base64,") == len(verdict.overlays)
    image = cv2.imread(str(shot))
    assert image is not None and image.std() > 10  # a rendered page, not a blank one
    # The banner is red (FAIL): the top rows of the screenshot contain the banner colour #cf222e.
    top = image[:120].reshape(-1, 3)
    assert ((abs(top[:, 2].astype(int) - 0xCF) < 30) & (top[:, 1] < 80) & (top[:, 0] < 90)).any()
