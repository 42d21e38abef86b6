"""report.html's structure on a hand-built verdict (no model, no browser): problems first as cards with the
compared value, the bound and why, the threshold, n and a sentence; passed checks collapsed; every overlay
with its caption and key; the rows that used to read wrong; the overlay and atlas figures' legends and
colour bars (matplotlib artists)."""

from __future__ import annotations

import copy
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from validator.report.evidence import flagged_clusters
from validator.report.html import render_html
from validator.report.markdown import render_markdown
from validator.report.overlay import (
    atlas_figure,
    hot_region,
    panel_figure,
    render_atlas,
    render_panel,
    write_png,
)
from validator.report.reading import bound_words, not_shown, sentence

# ------------------------------------------------------------------------------------------------ DOM


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children, self.parts = tag, attrs, parent, [], []

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs) -> list[Node]:
        out = []
        for node in self.iter():
            if tag is not None and node.tag != tag:
                continue
            if all(_has(node, k.rstrip("_"), v) for k, v in attrs.items()):
                out.append(node)
        return out

    def find(self, tag: str | None = None, **attrs) -> Node | None:
        found = self.find_all(tag, **attrs)
        return found[0] if found else None

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


def _has(node: Node, key: str, value) -> bool:
    key = key.replace("_", "-")
    if key == "class":
        return value in (node.attrs.get("class") or "").split()
    return node.attrs.get(key) == value


VOID = {"img", "br", "meta", "hr", "input", "link"}


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        self.current.parts.append(node)
        if tag not in VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.parts.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    return builder.root


# ------------------------------------------------------------------------------------------- verdict


def _check(check_id, outcome, *, slice_="overall", metric="relative_lift", aggregate="mean", bound="lower",
           observed=0.5, lo=0.4, hi=0.6, min_=None, max_=None, n=120, confidence=0.95, severity="fail",
           message=None):
    compared = {"lower": lo, "upper": hi, "point": observed}[bound]
    return {"check_id": check_id, "slice": slice_, "metric": metric, "aggregate": aggregate, "bound": bound,
            "severity": severity, "observed": observed, "lo": lo, "hi": hi, "compared": compared, "n": n,
            "min": min_, "max": max_, "baseline": None, "change": None, "outcome": outcome,
            "message": message or f"{check_id}: {bound} bound = {compared}", "waiver": None,
            "confidence": confidence, "change_estimate": None}


POLICY_CHECKS = [
    {"id": "object-heat", "description": "Too little of the heat lies on the annotated object"},
    {"id": "class-object-heat", "description": "Heat on the object is low for this class"},
    {"id": "corner-heat", "description": "The evidence sits in the corners"},
    {"id": "background-only", "description": "The model still finds the class with the object removed"},
    {"id": "explainer-sanity", "description": "The maps do not depend on the weights"},
]
CHECKS = [  # policy order: the data checks and passes first, as evaluate() returns them
    _check("data.min_samples", "PASS", metric="n_samples", aggregate="count", bound="point", observed=120.0,
           lo=120.0, hi=120.0, min_=100.0, message="data.min_samples: 120 samples >= min 100 (overall)"),
    _check("object-heat", "FAIL", observed=-0.43, lo=-0.53, hi=-0.34, min_=0.15),
    _check("class-object-heat", "PASS", slice_="class=square", bound="upper", observed=0.0815, lo=0.0247,
           hi=0.13, min_=0.1, n=60, confidence=0.975, severity="warn"),
    _check("class-object-heat", "WARN", slice_="class=disc", bound="upper", observed=-0.93, lo=-0.98, hi=-0.84,
           min_=0.1, n=60, confidence=0.975, severity="warn"),
    _check("corner-heat", "FAIL", metric="corner_lift_max", bound="upper", observed=16.3, lo=14.5, hi=18.3,
           max_=5.0),
    _check("explainer-sanity", "INCONCLUSIVE", metric="sanity_spearman", observed=0.9, lo=0.85, hi=0.95,
           max_=0.5, n=32, severity="inconclusive"),
    _check("background-only", "PASS", metric="bg_only_skill", observed=0.2, lo=0.1, hi=0.3, max_=0.65),
]


def _cluster(index, size, off, lifts=None, **extra):
    lifts = lifts or {"corner_tl": 0.5, "corner_tr": 0.5, "corner_bl": 0.5, "corner_br": 20.0, "border": 2.0,
                      "centre": 0.3}
    return {"cluster": index, "size": size, "fraction": size / 60, "off_object": off, "rule": "boxes",
            "off_object_share": 0.9 if off else 0.3, "typical_off_object_share": 0.3, "object_lift": 0.2,
            "shares": {}, "areas": {}, "lifts": lifts, "examples": [f"images/{index}{k}.png" for k in range(2)],
            **extra}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path, str]:
    """A FAIL verdict with overlays, atlases and clusters written as the gate writes them."""
    out = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    heat = np.zeros((64, 64))
    heat[56:, 56:] = 1.0
    panel = render_panel(image, heat, [(10, 10, 30, 30)], caption="true disc · predicted square (p = 0.97)")
    atlas = np.full((16, 16), 1.0)
    atlas[14:, 14:] = 40.0
    atlas /= atlas.sum()
    objects = np.zeros((16, 16))
    objects[4:12, 4:12] = 0.5
    overlays = []
    for kind, rank in (("worst", 0), ("typical", 0)):
        path = write_png(out / "overlays" / f"{kind}_disc_{rank}_a.png", panel)
        overlays.append({"kind": kind, "rank": rank, "sample_id": f"images/{kind}.png#disc", "lift": 0.12,
                         "corner_heat_max": 0.4, "class_name": "disc", "true_name": "disc",
                         "predicted_name": "square", "confidence": 0.97, "has_box": True,
                         "hot_region": "hottest region (largest area ≥ 20% of the map's peak)",
                         "scale": "heat ÷ uniform map, 0 to 8 (fixed)", "path": str(path.relative_to(out))})
    write_png(out / "overlays" / "atlas_overall.png", render_atlas(atlas, object_map=objects))
    overlays.append({"kind": "atlas", "class_name": None, "path": "overlays/atlas_overall.png", "sample_id": None,
                     "rank": 0, "lift": None, "scale": "heat ÷ uniform map, 0 to 8 (fixed)", "object_map": True})
    write_png(out / "overlays" / "atlas_disc.png", render_atlas(np.full((16, 16), 1 / 256)))
    overlays.append({"kind": "atlas", "class_name": "disc", "path": "overlays/atlas_disc.png", "sample_id": None,
                     "rank": 0, "lift": None})
    write_png(out / "overlays" / "cluster_square_0.png", render_atlas(atlas))
    overlays.append({"kind": "cluster", "class_name": "square", "cluster": 0, "path": "overlays/cluster_square_0.png",
                     "sample_id": None, "rank": 0, "lift": None, "caption": "mean map of cluster 1"})
    path = write_png(out / "overlays" / "cluster_example_square_0_0_x.png", panel)
    overlays.append({"kind": "cluster_example", "class_name": "square", "cluster": 0, "rank": 0,
                     "sample_id": "images/00.png#square", "lift": 0.3, "true_name": "square",
                     "predicted_name": "square", "confidence": 0.99, "caption": "cluster 1 example",
                     "path": str(path.relative_to(out))})
    uniform = {"corner_tl": 0.015625, "corner_tr": 0.015625, "corner_bl": 0.015625, "corner_br": 0.015625,
               "border": 0.36, "centre": 0.25}
    data = {
        "status": "FAIL", "exit_code": 1, "model": "/m/watermark.keras", "model_name": "watermark",
        "data": "/d/annotations.json", "error": None,
        "finding": "the evidence sits in the bottom-right corner",
        "policy": {"name": "default", "version": 3, "hash": "abc123", "content": {"checks": POLICY_CHECKS}},
        "explainer": {"method": "gradcam", "layer": "conv"}, "sample": {"n_explained": 120, "n_selected": 120},
        "checks": copy.deepcopy(CHECKS), "summary": {}, "probes": {}, "overlays": overlays,
        "discovery": {"grid": 16,
                      "atlas": {"overall": {"n": 120, "corner_br": 0.42, "border": 0.5, "centre": 0.1,
                                            **{f"area_{k}": v for k, v in uniform.items()}},
                                "disc": {"n": 60, "corner_br": 0.015, "border": 0.36, "centre": 0.25,
                                         **{f"area_{k}": v for k, v in uniform.items()}}},
                      "clusters": {"disc": {"n": 60, "k": 1, "clusters": [_cluster(0, 60, True)]},
                                   "square": {"n": 60, "k": 2, "clusters": [_cluster(0, 35, True),
                                                                           _cluster(1, 25, False)]}}},
        "outputs": {"verdict": str(out / "verdict.json"), "samples": str(out / "samples.csv"),
                    "junit": str(out / "junit.xml"), "summary": str(out / "summary.md"),
                    "html": str(out / "report.html")},
        "tracking": {}, "versions": {"camgate": "9.9.9", "python": "3.11"},
    }
    return data, out, render_html(data, out)


# ------------------------------------------------------------------------------------------- checks


def _cards(dom: Node) -> list[Node]:
    return [a for a in dom.find_all("article", class_="card") if a.attrs.get("data-outcome")]


def test_problems_come_first_failed_then_inconclusive_then_warned(report):
    _, _, html = report
    dom = parse(html)
    cards = _cards(dom)
    assert [c.attrs["data-outcome"] for c in cards] == ["FAIL", "FAIL", "INCONCLUSIVE", "WARN"]
    assert [c.find("code").text() for c in cards] == ["object-heat", "corner-heat", "explainer-sanity",
                                                      "class-object-heat"]
    # every card comes before the passed list, which is collapsed and holds every pass, data checks included
    passed = dom.find("details", id="passed")
    assert passed is not None and "open" not in passed.attrs
    assert html.index("data-outcome='FAIL'") < html.index("<details id='passed'>")
    rows = passed.find_all("tr", data_outcome="PASS")
    assert [r.find("code").text() for r in rows] == ["data.min_samples", "class-object-heat", "background-only"]
    assert not any(passed in c.ancestors() for c in cards)


def test_each_problem_card_has_value_bound_threshold_n_and_a_sentence(report):
    _, _, html = report
    expected = {  # check id: (value, compared, its bound words, threshold, n)
        "object-heat": ("-0.43", "-0.53", "lower 95% bound, the pessimistic end", "≥ 0.15", "120"),
        "corner-heat": ("16.3", "18.3", "upper 95% bound, the pessimistic end", "≤ 5", "120"),
        "explainer-sanity": ("0.9", "0.85", "lower 95% bound, the lenient end", "≤ 0.5", "32"),
        "class-object-heat": ("-0.93", "-0.84", "upper 97.5% bound, the lenient end", "≥ 0.1", "60"),
    }
    for card in _cards(parse(html)):
        value, compared, bound, threshold, n = expected[card.find("code").text()]
        assert card.find("td", class_="value").text().startswith(value)
        assert card.find("td", class_="compared").text() == f"{compared} {bound}"
        assert card.find("td", class_="threshold").text() == threshold
        assert card.find("td", class_="n").text() == n
        said = card.find("p", class_="sentence").text()
        assert said.endswith(".") and value in said and threshold.split()[-1] in said
        assert card.find("div", class_="desc") is not None  # the policy's description of the check


def test_the_verdict_header_names_version_policy_files_and_mlflow(report):
    data, out, html = report
    meta = parse(html).find("div", id="meta").text()
    assert "camgate 9.9.9" in meta and "policy default v3" in meta and "UTC" in meta
    assert "MLflow: no run when this page was written" in meta
    links = [a.attrs["href"] for a in parse(html).find("div", id="meta").find_all("a")]
    assert links == ["verdict.json", "samples.csv", "junit.xml", "summary.md"]
    banner = parse(html).find("div", id="verdict").text()
    assert "camgate verdict: FAIL — watermark" in banner and "2 failed" in banner and "exit 1" in banner
    recorded = render_html({**data, "tracking": {"uri": "sqlite:////tmp/mlflow.db", "run_id": "r1",
                                                  "experiment_id": "7"}}, out)
    assert "mlflow ui --backend-store-uri sqlite:////tmp/mlflow.db" in recorded and "/#/experiments/7/runs/r1" in recorded
    served = render_html({**data, "tracking": {"uri": "http://h:5000", "run_id": "r1",
                                                "url": "http://h:5000/#/experiments/7/runs/r1"}}, out)
    assert "href='http://h:5000/#/experiments/7/runs/r1'" in served


def test_the_page_is_one_self_contained_file(report):
    data, _, html = report
    dom = parse(html)
    assert not dom.find_all("script") and not dom.find_all("link")
    images = dom.find_all("img")
    assert images and all(i.attrs["src"].startswith("data:image/png;base64,") for i in images)
    assert len(images) == len(data["overlays"])  # each picture once


# ------------------------------------------------------------------------------------------ overlays


def test_every_overlay_has_a_caption_and_a_key_beside_it(report):
    _, _, html = report
    figures = parse(html).find_all("figure", class_="overlay")
    assert figures
    for figure in figures:
        assert figure.find("img") is not None
        key = figure.find("div", class_="legend")
        assert key is not None and "heat ÷ uniform map" in key.text()
        if figure.attrs["data-kind"] in ("worst", "typical", "cluster_example"):
            assert "annotated object" in key.text() and "hottest region" in key.text()
            caption = figure.find("div", class_="cap").text()
            assert caption.startswith("true ") and "predicted " in caption and "(p = 0." in caption
            assert "lift " in caption
        else:
            assert "corner regions" in key.text()
    worst = next(f for f in figures if f.attrs["data-kind"] == "worst")
    assert worst.find("div", class_="cap").text().startswith("true disc · predicted square (p = 0.97) · lift 0.12")


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def _colour_bar_labels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]


def test_the_panel_shows_the_image_beside_the_heat_with_legend_and_colour_bar():
    image = np.full((32, 32, 3), (10, 200, 30), np.uint8)
    heat = np.zeros((32, 32))
    heat[26:, 26:] = 1.0
    fig = panel_figure(image, heat, [(4, 4, 12, 12)], caption="true disc · predicted disc (p = 0.99)")
    images = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in images] == ["image", "heat (over a grey copy)"]
    assert np.array_equal(images[0].get_images()[0].get_array(), image)  # the original, unobscured
    assert _legend_texts(fig) == ["annotated object", "hottest region (largest area ≥ 20% of the map's peak)"]
    (label,) = _colour_bar_labels(fig)
    assert "uniform" in label and "fixed scale" in label
    assert any("predicted disc" in t.get_text() for t in fig.texts)
    rgb = render_panel(image, heat, [(4, 4, 12, 12)])
    assert rgb.shape[1] > 1.5 * rgb.shape[0] and rgb.dtype == np.uint8
    # the image's own colour is on the page, as it is (not blended)
    assert (np.abs(rgb.astype(int) - (10, 200, 30)).sum(axis=2) == 0).sum() > 1000


def test_spread_heat_draws_no_picture_frame():
    flat = np.ones((32, 32)) + 0.01 * np.random.default_rng(1).random((32, 32))
    box, why = hot_region(flat)
    assert box is None and why.startswith("no hottest-region box: the heat is spread")
    fig = panel_figure(np.zeros((32, 32, 3), np.uint8), flat, [(4, 4, 12, 12)])
    assert _legend_texts(fig)[1].startswith("no hottest-region box")
    boxes = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 2  # the annotation on each image, no red box
    heat = np.zeros((32, 32))
    heat[2:6, 2:6] = 1.0
    box, why = hot_region(heat)
    assert box.tolist() == [2, 2, 6, 6] and why.startswith("hottest region")


def test_the_atlas_has_thin_outlines_a_colour_bar_and_the_objects_beside_it():
    atlas = np.full((16, 16), 1 / 256)
    objects = np.zeros((16, 16))
    objects[4:12, 4:12] = 0.5
    fig = atlas_figure(atlas, object_map=objects, title="heat atlas · all classes")
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == ["mean heat", "where the annotated objects lie"]
    labels = _colour_bar_labels(fig)
    assert len(labels) == 2 and "uniform" in labels[0] and "object" in labels[1]
    outlines = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(outlines) == 5 and all(p.get_linewidth() <= 1.0 for p in outlines)  # 4 corners + the border band
    assert [t for t in _legend_texts(fig) if "corner" in t or "border" in t]
    # the heat is drawn on the fixed scale: a uniform atlas sits at 1 (not stretched to its own maximum)
    drawn = fig.axes[0].get_images()[0]
    assert drawn.get_array().max() == pytest.approx(1.0) and drawn.norm.vmax == 8.0


# ---------------------------------------------------------------------------- rows that read wrong


def test_a_pass_on_the_lenient_end_says_not_shown_to_be_low(report):
    _, _, html = report
    lenient = CHECKS[2]
    assert not_shown(lenient) == "not shown to be low (the interval reaches the threshold)"
    said = sentence(lenient)
    assert said.startswith("Not shown to be low (the interval reaches the threshold)") and "0.0815" in said
    row = next(r for r in parse(html).find("details", id="passed").find_all("tr")
               if "class=square" in r.text())
    assert "not shown to be low" in row.text() and "upper 97.5% bound, the lenient end" in row.text()
    assert "not shown to be low" in render_markdown(report[0])
    assert not_shown(CHECKS[6]) is None  # a pass whose estimate is within the threshold


@pytest.mark.parametrize(("bound", "limits", "words"), [
    ("lower", {"min_": 0.15}, ("lower 95% bound, the pessimistic end", "the whole interval must clear the minimum")),
    ("upper", {"max_": 5.0}, ("upper 95% bound, the pessimistic end", "the whole interval must stay under the maximum")),
    ("upper", {"min_": 0.1}, ("upper 95% bound, the lenient end", "it fails only where the whole interval is under")),
    ("lower", {"max_": 0.5}, ("lower 95% bound, the lenient end", "it fails only where the whole interval is over")),
    ("point", {"min_": 1.0}, ("the point estimate", "no interval is compared")),
])
def test_which_bound_is_compared_and_why(bound, limits, words):
    short, why = bound_words(_check("c", "PASS", bound=bound, **limits))
    assert short == words[0] and why.startswith(words[1])


def test_a_single_cluster_holding_every_map_is_not_a_finding(report):
    data, _, html = report
    flagged = flagged_clusters(data)
    assert [(c["class_name"], c["cluster"]) for c in flagged] == [("square", 0)]
    dom = parse(html)
    spray = dom.find_all("article", data_finding="spray")
    assert len(spray) == 1 and "Class square: cluster 1 of 2" in spray[0].text()
    assert "cluster 1 of 1" not in html and "cluster 1 of 1" not in render_markdown(data)
    # the cluster's mean map and its example are shown in its card
    kinds = [f.attrs["data-kind"] for f in spray[0].find_all("figure")]
    assert kinds == ["cluster", "cluster_example"]


def test_a_region_colder_than_a_uniform_map_is_not_called_hot(report):
    data = copy.deepcopy(report[0])
    cold = {"corner_tl": 0.2, "corner_tr": 0.9, "corner_bl": 0.1, "corner_br": 0.5, "border": 0.8, "centre": 2.0}
    data["discovery"]["clusters"]["square"]["clusters"][0]["lifts"] = cold
    (cluster,) = flagged_clusters(data)
    assert "hottest" not in cluster["reason"] and "hotter than a uniform map" in cluster["reason"]
    hot = flagged_clusters(report[0])[0]["reason"]
    assert "hottest region bottom-right corner (20.0x a uniform map)" in hot


def test_atlas_regions_are_findings_only_when_hot(report):
    _, _, html = report
    cards = parse(html).find_all("article", data_finding="atlas")
    assert len(cards) == 1 and "all classes" in cards[0].text()  # the disc atlas is uniform: no finding
    assert "bottom-right corner holds 42% of the heat on 1.6% of the frame" in cards[0].text()
    assert [f.attrs["data-kind"] for f in cards[0].find_all("figure")] == ["atlas"]
    assert parse(html).find("div", id="atlas") is not None  # the uniform one is still shown, lower down


def test_an_inconclusive_verdict_shows_why_nothing_was_judged(report):
    data, out, _ = report
    judged_nothing = [_check("data.min_samples", "PASS", metric="n_samples", aggregate="count", bound="point",
                             observed=12.0, lo=12.0, hi=12.0, min_=10.0),
                      _check("object-heat", "NOT_JUDGED", min_=0.15, n=0,
                             message="object-heat: the data has no object boxes, and relative_lift needs them: "
                                     "not judged")]
    html = render_html({**data, "status": "INCONCLUSIVE", "exit_code": 4, "finding": None,
                        "checks": judged_nothing}, out)
    dom = parse(html)
    (card,) = _cards(dom)
    assert card.attrs["data-outcome"] == "NOT_JUDGED" and dom.find("section", id="not_judged") is not None
    assert card.find("p", class_="sentence").text().startswith("The data has no object boxes")
    rows = dom.find("details", id="passed").find_all("tr", data_outcome="PASS")
    assert [r.find("code").text() for r in rows] == ["data.min_samples"]


def test_an_error_verdict_renders_its_error_without_checks_or_pictures(tmp_path):
    data = {"status": "ERROR", "exit_code": 3, "model": "m.keras", "data": "d.json",
            "error": "could not read the model", "outputs": {"verdict": str(tmp_path / "verdict.json"),
                                                             "log": str(tmp_path / "error.log")},
            "versions": {"camgate": "1"}}
    dom = parse(render_html(data, tmp_path))
    assert "could not read the model" in dom.find("div", id="error").text()
    assert "camgate verdict: ERROR" in dom.find("div", id="verdict").text()
    assert not _cards(dom) and not dom.find_all("img")
    assert [a.attrs["href"] for a in dom.find("div", id="meta").find_all("a")] == ["verdict.json", "error.log"]


def test_a_sample_with_a_mask_is_drawn_by_its_outline_not_its_box():
    """The overlay shows the region the scores used: a thin diagonal's outline, not its mostly-empty box."""
    image = np.zeros((32, 32, 3), np.uint8)
    heat = np.zeros((32, 32))
    heat[26:, 26:] = 1.0
    mask = np.zeros((32, 32), bool)
    for k in range(4, 28):
        mask[k, k - 1:k + 2] = True
    fig = panel_figure(image, heat, [(3, 4, 29, 28)], mask=mask)
    assert _legend_texts(fig)[0] == "annotated object (its mask)"
    green = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle) and p.get_edgecolor()[1] > 0.5
             and p.get_edgecolor()[0] < 0.5]
    assert not green  # no annotation box: the outline instead
    outlines = [c for ax in fig.axes for c in ax.collections if c.get_paths()]
    assert len(outlines) >= 2  # one contour on each image
    plain = panel_figure(image, heat, [(3, 4, 29, 28)], mask=np.zeros((32, 32), bool))  # an empty mask: the box
    assert _legend_texts(plain)[0] == "annotated object"
