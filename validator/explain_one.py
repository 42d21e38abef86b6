"""`camgate explain MODEL IMAGE`: one image, one overlay, its scores. For a quick look, not a gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from validator.errors import UsageError


def explain_image(model, image, *, class_=None, classes=None, box=None, method="gradcam", layer=None,
                  preprocess="none", out=None, trust=False) -> dict:
    from validator.data import get_preprocess, read_class_list, read_image
    from validator.data.images import ImageReadError
    from validator.data.pipeline import resize_image, to_uint8
    from validator.data.preprocess import check_channels as check_preprocess_channels
    from validator.explain import Explainer
    from validator.metrics import score_maps
    from validator.model import load_model
    from validator.report.files import written_by_gate
    from validator.report.overlay import render_overlay, write_png

    out_path = Path(out) if out else Path(str(image) + ".camgate.png")
    # the overlay may replace only an overlay the gate wrote there: never the image, the model or a user's file
    if out_path.exists() and not written_by_gate(out_path):
        raise UsageError(f"--out {out_path} exists and camgate did not write it (it could be the image, the model "
                         "or a file of yours): choose another path, or remove it")
    loaded = load_model(model, trust=trust)
    names = read_class_list(classes) if classes else [str(i) for i in range(loaded.num_classes)]
    if len(names) != loaded.num_classes:
        raise UsageError(f"--classes lists {len(names)} names but the model has {loaded.num_classes} classes")
    if not callable(preprocess):
        check_preprocess_channels(preprocess, loaded.input_channels)
    try:
        pixels, _ = read_image(image, loaded.input_channels)  # uint8, or float32 0..255 for deeper files
    except ImageReadError as exc:
        raise UsageError(f"cannot read image {image}: {exc}") from exc
    height, width = loaded.input_size
    original_h, original_w = pixels.shape[:2]
    resized = resize_image(pixels, width, height)
    raw = to_uint8(resized)  # display copy
    preprocess_fn = preprocess if callable(preprocess) else get_preprocess(preprocess)
    batch = np.asarray(preprocess_fn(resized[None].astype(np.float32)), dtype=np.float32)
    explainer = Explainer(loaded, method=method, layer=layer, batch_size=1)
    if class_ is None:
        class_id = int(explainer.explain(batch, np.zeros(1, int)).predicted[0])
    else:
        class_id = _class_index(class_, names)
    result = explainer.explain(batch, np.array([class_id]))
    boxes = np.zeros((0, 4))
    if box is not None:
        sx, sy = width / original_w, height / original_h
        x0, y0, x1, y1 = box
        boxes = np.array([[x0 * sx, y0 * sy, x1 * sx, y1 * sy]])
    scores = {k: float(v[0]) for k, v in score_maps(result.maps, [boxes]).items() if np.isfinite(v[0])}
    write_png(out_path, render_overlay(raw, result.maps[0], boxes))
    predicted = int(result.predicted[0])
    return {
        "class_id": class_id,
        "class_name": names[class_id],
        "predicted_name": names[predicted],
        "confidence": float(result.confidence[0]),
        "dead": bool(result.dead[0]),
        "scores": scores,
        "overlay": str(out_path),
    }


def _class_index(value: str, names: list[str]) -> int:
    if value in names:
        return names.index(value)
    if str(value).isdigit() and int(value) < len(names):
        return int(value)
    raise UsageError(f"unknown class '{value}'; classes: {', '.join(names)}")
