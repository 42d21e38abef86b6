"""What the checks that do not read one heatmap found, as rows the Markdown and HTML reports both show.

Reads only verdict.json's dict (``summary``, ``probes``, ``discovery``), so a report can be re-rendered from a
stored verdict.
"""

from __future__ import annotations

# (metric, aggregate, label, how to read it)
PROBE_ROWS = (
    ("correct", "rate", "accuracy on the images", ""),
    ("bg_only_correct", "rate", "accuracy with the object removed (background only)", "chance is 1/C"),
    ("bg_only_skill", "mean", "background-only accuracy above chance", "0 = chance, 1 = the background gives the class"),
    ("object_only_correct", "rate", "accuracy on another class's background (Mixed-Rand)", ""),
    ("bg_gap", "mean", "BG-gap: accuracy lost when the background is swapped", "Xiao et al.: 7.3 points for a "
     "standard ResNet-50 on IN-9, 0.2 when trained on Mixed-Rand"),
    ("hotspot_drop", "mean", "class probability lost when the map's hottest spot off the object is filled, "
     "minus a random region of its size", "~0 when the model ignores the spot; a mark it reads: large"),
    ("deletion_auc", "mean", "deletion AUC (hottest pixels removed first)", "lower = more faithful"),
    ("insertion_auc", "mean", "insertion AUC (hottest pixels inserted first)", "higher = more faithful"),
    ("faithfulness_gain", "mean", "faithfulness gain: the map's insertion - deletion gap minus a random order's",
     "0 = no better than chance"),
    ("sanity_spearman", "mean", "map vs map with randomised weights (Spearman)", "near 1: the map ignores the model"),
    ("centre_heat", "mean", "heat in the central quarter of the image", "0.25 for a uniform map"),
)


def probe_rows(data: dict) -> list[dict]:
    """Overall value, interval and n of each probe metric the audit computed."""
    overall = (data.get("summary") or {}).get("overall") or {}
    rows = []
    for metric, aggregate, label, note in PROBE_ROWS:
        estimate = (overall.get(metric) or {}).get(aggregate)
        if not estimate or not estimate.get("n"):
            continue
        rows.append({"metric": metric, "aggregate": aggregate, "label": label, "note": note,
                     "value": estimate.get("value"), "lo": estimate.get("lo"), "hi": estimate.get("hi"),
                     "n": estimate.get("n")})
    return rows


def sanity_stages(data: dict) -> list[dict]:
    """Per cascade stage: how many top layers were randomised and the mean Spearman (empty if not run)."""
    sanity = (data.get("probes") or {}).get("sanity") or {}
    return list(sanity.get("stages") or [])


def flagged_clusters(data: dict) -> list[dict]:
    """SpRAy clusters whose heat sits off the objects (or off the centre without boxes), largest first."""
    flagged = []
    for class_name, entry in ((data.get("discovery") or {}).get("clusters") or {}).items():
        for index, cluster in enumerate(entry.get("clusters") or []):
            if cluster.get("off_object"):
                flagged.append({"class_name": class_name, "k": entry.get("k"), "n_class": entry.get("n"),
                                "cluster": index, **cluster, "reason": _reason(cluster)})
    return sorted(flagged, key=lambda c: -(c.get("size") or 0))


def atlas_rows(data: dict) -> list[dict]:
    """Per atlas key (overall first): n and the region shares with their uniform-map area shares."""
    atlas = (data.get("discovery") or {}).get("atlas") or {}
    keys = sorted(atlas, key=lambda k: (k != "overall", str(k)))
    return [{"key": k, **atlas[k]} for k in keys]


def _reason(cluster: dict) -> str:
    shares, lifts = cluster.get("shares") or {}, cluster.get("lifts") or {}
    hottest = max((k for k in lifts if k != "centre" and lifts.get(k) is not None), key=lambda k: lifts[k],
                  default=None)
    where = f"; hottest region {hottest} (lift {lifts[hottest]:.1f})" if hottest else ""
    if cluster.get("rule") == "boxes" and cluster.get("off_object_share") is not None:
        typical = cluster.get("typical_off_object_share")
        against = f" against {typical:.2f} for the rest of the class" if typical is not None else ""
        return f"{cluster['off_object_share']:.2f} of its heat off the object{against}{where}"
    centre = shares.get("centre")
    return f"heat off the centre (centre share {centre:.2f}, 0.25 for a uniform map){where}" if centre is not None \
        else f"heat off the centre{where}"
