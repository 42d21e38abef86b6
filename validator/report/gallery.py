"""The images a reviewer sees: worst offenders and typical samples per class, re-explained, plus the atlas.

A second small pass over the chosen samples keeps the main pass's memory flat: it never holds images or
maps beyond a batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from validator.report.escape import filename

BOX_METRIC_SORT = "lift"
OVERLAYS_PER_CLASS = 3


def safe_name(label) -> str:
    """A model label or sample id as a file-name part: its stem, unsafe characters as ``_``, at most 64
    characters (a longer one is cut and ends in a hash of the whole)."""
    name = Path(str(label).rstrip("/")).stem or "model"
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.replace(":", "_"))
    return name if len(name) <= 64 else filename(name)


def _class_part(class_name) -> str:
    """A class name as a file-name part: the name itself where safe, else a safe form plus its hash, so
    ``x|y`` and ``x_y`` (or two long names) never share a file."""
    return filename(class_name)


def render_overlays(loaded, samples, run, settings: dict, out_dir: Path) -> list[dict]:
    """Re-explain the few samples shown to humans (worst offenders, typical passes) and write PNGs.

    A second small pass keeps the main pass's memory flat: it never holds images or maps beyond a batch.
    """
    from validator.data import iter_batches
    from validator.explain import Explainer
    from validator.report.overlay import render_atlas, render_overlay, write_png

    picks = pick_overlays(run.table) + cluster_picks(run.discovery or {})
    overlays: list[dict] = []
    overlay_dir = out_dir / "overlays"
    by_id = {s.sample_id: s for s in samples}
    chosen = [by_id[i] for i in dict.fromkeys(p["sample_id"] for p in picks) if i in by_id]
    if chosen:
        explainer = run.explainer or Explainer(
            loaded, method=settings["method"], layer=settings["layer"], batch_size=settings["batch_size"],
            options=settings.get("options"))
        kinds: dict = {}
        for p in picks:
            kinds.setdefault(p["sample_id"], []).append(p)
        for batch in iter_batches(chosen, input_size=loaded.input_size, channels=loaded.input_channels,
                                  batch_size=settings["batch_size"], preprocess=settings["preprocess"]):
            batch_samples = [chosen[i] for i in batch.indices]
            result = explainer.explain(batch.images, np.array([s.class_id for s in batch_samples]))
            for i, s in enumerate(batch_samples):
                image = render_overlay(batch.raw[i], result.maps[i], batch.boxes[i])
                for pick in kinds[s.sample_id]:  # one sample may be a worst offender and a cluster example
                    cluster = f"{pick['cluster']}_" if pick.get("cluster") is not None else ""
                    name = f"{pick['kind']}_{_class_part(s.class_name)}_{cluster}{pick['rank']}_{safe_name(s.sample_id)}.png"
                    path = write_png(overlay_dir / name, image)
                    overlays.append({**pick, "class_name": s.class_name, "path": str(path.relative_to(out_dir))})
    for key, mean_map in run.atlas.items():
        name = "atlas_overall.png" if key == "overall" else f"atlas_{_class_part(key)}.png"
        write_png(overlay_dir / name, render_atlas(mean_map))
        overlays.append({"kind": "atlas", "class_name": None if key == "overall" else key, "path": f"overlays/{name}",
                         "sample_id": None, "rank": 0, "lift": None})
    for (class_name, index), mean_map in (run.cluster_maps or {}).items():
        name = f"cluster_{_class_part(class_name)}_{index}.png"
        write_png(overlay_dir / name, render_atlas(mean_map))
        overlays.append({"kind": "cluster", "class_name": class_name, "path": f"overlays/{name}", "sample_id": None,
                         "rank": 0, "cluster": index, "lift": None, "caption": f"mean map of cluster {index + 1}"})
    return overlays


def cluster_picks(discovery: dict) -> list[dict]:
    """The example samples of each SpRAy cluster flagged off the object, shown beside its mean map."""
    picks = []
    for entry in (discovery.get("clusters") or {}).values():
        for cluster in entry.get("clusters") or []:
            if cluster.get("off_object"):
                for rank, sample_id in enumerate(cluster.get("examples") or []):
                    picks.append({"kind": "cluster_example", "rank": rank, "sample_id": sample_id, "lift": None,
                                  "cluster": cluster["cluster"], "caption": f"cluster {cluster['cluster'] + 1} example"})
    return picks


def pick_overlays(table) -> list[dict]:
    """Per class: the lowest-lift samples (worst offenders) and the ones nearest the class median (typical)."""
    picks = []
    lift = table[BOX_METRIC_SORT]
    for name in sorted({c for c in table["class_name"] if c is not None}):
        rows = np.flatnonzero((table["class_name"] == name) & np.isfinite(lift))
        if not len(rows):
            continue
        order = rows[np.argsort(lift[rows], kind="stable")]
        worst = order[:OVERLAYS_PER_CLASS]
        median = np.median(lift[rows])
        typical = [r for r in rows[np.argsort(np.abs(lift[rows] - median), kind="stable")] if r not in worst]
        for kind, chosen in (("worst", worst), ("typical", typical[:OVERLAYS_PER_CLASS])):
            for rank, r in enumerate(chosen):
                picks.append({"kind": kind, "rank": rank, "sample_id": table["sample_id"][r],
                              "lift": float(lift[r]), "corner_heat_max": _finite(table["corner_heat_max"][r])})
    return picks


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
