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
    ("bg_gap", "mean", "accuracy lost when the background is swapped (the paste's cost included)", ""),
    ("mixed_same_correct", "rate", "accuracy on another image's background of the same class (Mixed-Same)", ""),
    ("bg_reliance", "mean", "BG-gap: Mixed-Same minus Mixed-Rand accuracy, what follows the background's class",
     "Xiao et al.: 7.3 points for a standard ResNet-50 on IN-9, 0.2 when trained on Mixed-Rand"),
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
    """SpRAy clusters whose heat sits off the objects (or off the centre without boxes), largest first.

    Only where SpRAy split the class (k >= 2): a single cluster holding every map is the class itself, not a
    subgroup, and is no finding of its own (the class's atlas and checks say where its heat lies)."""
    flagged = []
    for class_name, entry in ((data.get("discovery") or {}).get("clusters") or {}).items():
        if int(entry.get("k") or 0) < 2:
            continue
        for index, cluster in enumerate(entry.get("clusters") or []):
            if cluster.get("off_object"):
                flagged.append({"class_name": class_name, "k": entry.get("k"), "n_class": entry.get("n"),
                                "cluster": index, **cluster, "reason": _reason(cluster)})
    return sorted(flagged, key=lambda c: -(c.get("size") or 0))


def unsplit_classes(data: dict) -> list[dict]:
    """Classes SpRAy did not split (one cluster holds every map), with what their maps do as a whole."""
    out = []
    for class_name, entry in ((data.get("discovery") or {}).get("clusters") or {}).items():
        clusters = entry.get("clusters") or []
        if int(entry.get("k") or 0) == 1 and clusters:
            out.append({"class_name": class_name, "n": entry.get("n"), "object_lift": clusters[0].get("object_lift"),
                        "off_object": bool(clusters[0].get("off_object"))})
    return out


# A region of an atlas is shown as a finding when it holds at least this many times the heat a uniform map
# gives it (display only: no check reads the atlas). The centre is left out: heat there is what a model
# reading centred objects gives.
ATLAS_FINDING_LIFT = 2.0
REGION_WORDS = {"corner_tl": "top-left corner", "corner_tr": "top-right corner", "corner_bl": "bottom-left corner",
                "corner_br": "bottom-right corner", "border": "border band", "centre": "centre"}


def atlas_findings(data: dict) -> list[dict]:
    """Per atlas key (overall first), the regions whose heat share is >= ATLAS_FINDING_LIFT x their area share,
    hottest first; keys without such a region are left out."""
    out = []
    for row in atlas_rows(data):
        hot = []
        for region, words in REGION_WORDS.items():
            share, area = row.get(region), row.get(f"area_{region}")
            if region == "centre" or share is None or not area:
                continue
            if share / area >= ATLAS_FINDING_LIFT:
                hot.append({"region": region, "words": words, "share": share, "area": area, "lift": share / area})
        if hot:
            out.append({"key": row["key"], "n": row.get("n"), "regions": sorted(hot, key=lambda h: -h["lift"])})
    return out


def atlas_rows(data: dict) -> list[dict]:
    """Per atlas key (overall first): n and the region shares with their uniform-map area shares."""
    atlas = (data.get("discovery") or {}).get("atlas") or {}
    keys = sorted(atlas, key=lambda k: (k != "overall", str(k)))
    return [{"key": k, **atlas[k]} for k in keys]


def _reason(cluster: dict) -> str:
    shares, lifts = cluster.get("shares") or {}, cluster.get("lifts") or {}
    hottest = max((k for k in lifts if k != "centre" and lifts.get(k) is not None), key=lambda k: lifts[k],
                  default=None)
    # a region is called hot only when it holds more heat than a uniform map gives it (lift > 1)
    where = f"; hottest region {REGION_WORDS.get(hottest, hottest)} ({lifts[hottest]:.1f}x a uniform map)" \
        if hottest and lifts[hottest] > 1.0 else "; neither a corner nor the border band is hotter than a uniform map"
    if cluster.get("rule") == "boxes" and cluster.get("off_object_share") is not None:
        typical = cluster.get("typical_off_object_share")
        against = f" against {typical:.2f} for the rest of the class" if typical is not None else ""
        return f"{cluster['off_object_share']:.2f} of its heat off the object{against}{where}"
    centre = shares.get("centre")
    return f"heat off the centre (centre share {centre:.2f}, 0.25 for a uniform map){where}" if centre is not None \
        else f"heat off the centre{where}"
