"""The images a reviewer sees: worst offenders and typical samples per class, re-explained, plus the atlas.

A second small pass over the chosen samples keeps the main pass's memory flat: it never holds images or
maps beyond a batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from validator.report.escape import filename
from validator.report.reading import caption_parts

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
    """Re-explain the few samples shown to humans (worst offenders, typical passes, examples of the SpRAy
    clusters shown) and write their figures; then the atlases (beside where the objects lie) and the mean
    maps of those clusters. File names and the overlay entries' keys are unchanged (MLflow logs them).

    A second small pass keeps the main pass's memory flat: it never holds images or maps beyond a batch.
    """
    from validator.data import iter_batches
    from validator.explain import Explainer
    from validator.report.overlay import HEAT_MAX, hot_region, render_atlas, render_panel, write_png

    discovery = run.discovery or {}
    picks = pick_overlays(run.table) + cluster_picks(discovery)
    overlays: list[dict] = []
    overlay_dir = out_dir / "overlays"
    by_id = {s.sample_id: s for s in samples}
    rows = _rows_by_id(run.table)
    chosen = [by_id[i] for i in dict.fromkeys(p["sample_id"] for p in picks) if i in by_id]
    scale = f"heat ÷ uniform map, 0 to {HEAT_MAX:g} (fixed)"
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
                facts = sample_facts(run.table, rows.get(s.sample_id), s.class_name)
                _, hot_words = hot_region(result.maps[i])
                mask = batch.masks[i] if batch.masks is not None else None
                image = render_panel(batch.raw[i], result.maps[i], batch.boxes[i], caption=caption_line(facts),
                                     mask=mask)
                for pick in kinds[s.sample_id]:  # one sample may be a worst offender and a cluster example
                    cluster = f"{pick['cluster']}_" if pick.get("cluster") is not None else ""
                    name = f"{pick['kind']}_{_class_part(s.class_name)}_{cluster}{pick['rank']}_{safe_name(s.sample_id)}.png"
                    path = write_png(overlay_dir / name, image)
                    overlays.append({**pick, **facts, "class_name": s.class_name, "hot_region": hot_words,
                                     "has_box": bool(len(batch.boxes[i])), "scale": scale,
                                     "path": str(path.relative_to(out_dir))})
    object_maps = run.object_maps or {}
    counts = discovery.get("atlas") or {}
    for key, mean_map in run.atlas.items():
        name = "atlas_overall.png" if key == "overall" else f"atlas_{_class_part(key)}.png"
        n = (counts.get(key) or {}).get("n")
        title = f"heat atlas · {'all classes' if key == 'overall' else f'class {key}'}" + (f" · {n} maps" if n else "")
        write_png(overlay_dir / name, render_atlas(mean_map, object_map=object_maps.get(key), title=title))
        overlays.append({"kind": "atlas", "class_name": None if key == "overall" else key, "path": f"overlays/{name}",
                         "sample_id": None, "rank": 0, "lift": None, "scale": scale,
                         "object_map": key in object_maps})
    for (class_name, index), mean_map in (run.cluster_maps or {}).items():
        if not shown_cluster(discovery, class_name):
            continue
        name = f"cluster_{_class_part(class_name)}_{index}.png"
        write_png(overlay_dir / name, render_atlas(mean_map, title=f"SpRAy · class {class_name} · "
                                                               f"mean map of cluster {index + 1}"))
        overlays.append({"kind": "cluster", "class_name": class_name, "path": f"overlays/{name}", "sample_id": None,
                         "rank": 0, "cluster": index, "lift": None, "caption": f"mean map of cluster {index + 1}",
                         "scale": scale})
    return overlays


def shown_cluster(discovery: dict, class_name) -> bool:
    """A class's flagged clusters are shown only when SpRAy split it (k >= 2): one cluster holding every map
    is the class itself, not a subgroup (the class's atlas shows where its heat lies)."""
    entry = ((discovery or {}).get("clusters") or {}).get(str(class_name)) or {}
    return int(entry.get("k") or 0) >= 2


def _rows_by_id(table) -> dict:
    if not table or "sample_id" not in table:
        return {}
    return {sample_id: i for i, sample_id in enumerate(table["sample_id"])}


def sample_facts(table, row: int | None, class_name) -> dict:
    """What a caption says of a sample: the true class, the predicted class and its probability, the lift
    and the corner heat (None where the table has no value)."""
    facts = {"true_name": None if class_name is None else str(class_name), "predicted_name": None,
             "confidence": None, "lift": None, "corner_heat_max": None}
    if row is None or not table:
        return facts
    for key, column in (("predicted_name", "predicted_name"), ("confidence", "confidence"), ("lift", "lift"),
                        ("corner_heat_max", "corner_heat_max")):
        if column in table:
            value = table[column][row]
            facts[key] = _finite(value) if key != "predicted_name" else (None if value is None else str(value))
    return facts


def caption_line(facts: dict) -> str:
    """'true disc · predicted square (p = 0.97) · lift 0.52 · map for the true class'."""
    return " · ".join([*caption_parts(facts), "map for the true class"])


def cluster_picks(discovery: dict) -> list[dict]:
    """The example samples of each SpRAy cluster flagged off the object, shown beside its mean map."""
    picks = []
    for class_name, entry in (discovery.get("clusters") or {}).items():
        if not shown_cluster(discovery, class_name):
            continue
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
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
