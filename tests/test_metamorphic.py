"""Metamorphic properties of the verdict, on real control models and the default policy (probes on).

The verdict may depend on the model, the data and the policy, never on how the work was cut: the batch size,
the shard count, the order in which the annotation file lists its images and annotations. And a model
compared with itself never regresses, while a measurably worse baseline makes a clean candidate pass a
"must not regress" check (and the reverse fails it).
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import date

import numpy as np
import pytest

from validator.gate import audit, merge
from validator.metrics.registry import HEATMAP, PREDICTION
from validator.policy import default_policy_path, load_policy
from validator.policy.schema import metric_infos

pytestmark = pytest.mark.slow

TODAY = date(2026, 12, 6)
N = 48
# float noise between batch shapes (TF picks other kernels) may move a value in its last bits, never more
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def watermark_set(tmp_path_factory, heldout_coco):
    """The watermark held-out set, copied, with a second COCO file listing images and annotations reversed."""
    root = tmp_path_factory.mktemp("metamorphic")
    source = heldout_coco("watermark", n=N, seed=11)
    shutil.copytree(source.root, root / "data")
    coco = root / "data" / source.coco_path.relative_to(source.root)
    doc = json.loads(coco.read_text())
    rng = np.random.default_rng(0)
    doc["images"] = [doc["images"][i] for i in rng.permutation(len(doc["images"]))]
    doc["annotations"] = doc["annotations"][::-1]
    shuffled = coco.with_name("shuffled.json")
    shuffled.write_text(json.dumps(doc))
    return {"root": root, "coco": coco, "shuffled": shuffled}


def run(model, data, out, **options):
    verdict = audit(str(model.path), str(data), out=out, today=TODAY, **options)
    assert verdict.status in ("PASS", "WARN", "FAIL", "INCONCLUSIVE"), verdict.error
    return verdict


def assert_same_verdict(a, b, what: str) -> None:
    """Every check's outcome identical, every estimate equal to float tolerance, the same samples explained."""
    assert a.status == b.status, f"{what}: {a.status} vs {b.status}"
    ca, cb = a.to_dict()["checks"], b.to_dict()["checks"]
    assert [(c["check_id"], c["slice"]) for c in ca] == [(c["check_id"], c["slice"]) for c in cb], what
    for x, y in zip(ca, cb, strict=True):
        label = f"{what}: {x['check_id']} {x['slice']}"
        assert x["outcome"] == y["outcome"], f"{label}: {x['message']} | {y['message']}"
        assert x["n"] == y["n"], label
        for key in ("observed", "lo", "hi", "compared"):
            u, v = x[key], y[key]
            if u is None or v is None:
                assert u is None and v is None, f"{label} {key}: {u} vs {v}"
            else:
                assert math.isclose(u, v, rel_tol=RTOL, abs_tol=ATOL), f"{label} {key}: {u} vs {v}"
    ta, tb = a.table, b.table
    order_a, order_b = list(ta["sample_id"]), list(tb["sample_id"])
    assert sorted(order_a) == sorted(order_b), what
    rows = [order_b.index(s) for s in order_a]
    for column in ta:
        if ta[column].dtype == object:
            assert ta[column].tolist() == tb[column][rows].tolist(), f"{what}: column {column}"
        else:
            np.testing.assert_allclose(ta[column], tb[column][rows], rtol=RTOL, atol=ATOL, equal_nan=True,
                                       err_msg=f"{what}: column {column}")


@pytest.fixture(scope="module")
def by_batch(tmp_path_factory, watermark_model, watermark_set):
    root = tmp_path_factory.mktemp("by_batch")
    return {b: run(watermark_model, watermark_set["coco"], root / f"b{b}", batch_size=b) for b in (1, 7, 32, 64)}


def test_the_verdict_does_not_depend_on_the_batch_size(by_batch):
    reference = by_batch[32]
    assert reference.status == "FAIL"  # the watermark control is caught, so there is something to keep
    # Mixed-Rand needs a donor of another class: at batch size 1 every bg_gap used to be NaN
    assert np.isfinite(by_batch[1].table["bg_gap"]).sum() >= N // 2
    for size in (1, 7, 64):
        assert_same_verdict(reference, by_batch[size], f"--batch-size {size} vs 32")


def test_a_donor_is_another_image_of_another_class(by_batch, watermark_set):
    from validator.data import load_dataset
    from validator.probes.counterfactual import draw_donors
    from validator.scoring import mixed_order

    samples = mixed_order(load_dataset(str(watermark_set["coco"])).samples, 0)
    donors = draw_donors(samples, 0)
    assert (donors >= 0).all()
    for i, j in enumerate(donors):
        assert samples[j].image_path != samples[i].image_path
        assert samples[j].class_id != samples[i].class_id


def test_a_mixed_same_donor_is_another_image_of_the_same_class_whatever_the_order(watermark_set):
    from validator.data import load_dataset
    from validator.probes.counterfactual import draw_same_donors
    from validator.scoring import mixed_order

    samples = mixed_order(load_dataset(str(watermark_set["coco"])).samples, 0)
    donors = draw_same_donors(samples, 0)
    assert (donors >= 0).all()
    for i, j in enumerate(donors):
        assert samples[j].image_path != samples[i].image_path
        assert samples[j].class_id == samples[i].class_id
    # the donor follows the sample, not its place in the list
    reordered = samples[::-1]
    again = draw_same_donors(reordered, 0)
    by_id = {s.sample_id: samples[d].sample_id for s, d in zip(samples, donors, strict=True)}
    assert all(by_id[s.sample_id] == reordered[d].sample_id for s, d in zip(reordered, again, strict=True))
    assert (draw_same_donors(samples, 1) != donors).any()  # the seed draws them


@pytest.mark.parametrize("count", [1, 3, 8])
def test_the_merged_verdict_does_not_depend_on_the_shard_count(count, tmp_path, watermark_model, watermark_set,
                                                               by_batch):
    parts = [audit(str(watermark_model.path), str(watermark_set["coco"]), out=tmp_path / f"s{i}", today=TODAY,
                   batch_size=7, shard=f"{i}/{count}") for i in range(1, count + 1)]
    assert all(p.status == "PARTIAL" for p in parts), [p.error for p in parts]
    merged = merge([tmp_path / f"s{i}" for i in range(1, count + 1)], out=tmp_path / "merged", today=TODAY)
    assert_same_verdict(by_batch[7], merged, f"{count} shards merged vs one process")


def test_the_verdict_does_not_depend_on_the_order_of_the_annotation_file(tmp_path, watermark_model, watermark_set,
                                                                        by_batch):
    shuffled = run(watermark_model, watermark_set["shuffled"], tmp_path / "shuffled", batch_size=32)
    assert_same_verdict(by_batch[32], shuffled, "images and annotations listed in another order")


def _every_change_check() -> dict:
    """The default policy plus, for every metric a change check accepts, a check that allows no regression at
    all, at the interval end that is hardest to pass (the lower end of a higher-is-better metric)."""
    policy = load_policy(default_policy_path()).to_dict()
    checks = []
    for name, info in metric_infos({}).items():
        if info.higher_is_better is None:
            continue
        checks.append({"id": f"no-regression-{name}", "metric": name, "aggregate": "mean",
                       "bound": "lower" if info.higher_is_better else "upper", "change": {"absolute": 0.0},
                       "severity": "fail", "min_samples": 2, "on_missing": "not_judged"})
    policy["checks"] = checks
    policy["name"] = "every-change"
    return policy


def test_a_model_compared_with_itself_never_regresses(tmp_path, watermark_model, watermark_set):
    policy = _every_change_check()
    verdict = run(watermark_model, watermark_set["coco"], tmp_path / "self", policy=policy, batch_size=32,
                  baseline=str(watermark_model.path))
    sources = {c["metric"]: metric_infos({})[c["metric"]].source for c in policy["checks"]}
    assert {HEATMAP, PREDICTION} < set(sources.values()) and len(set(sources.values())) == 4  # probes + sanity
    changes = [c for c in verdict.to_dict()["checks"] if c["check_id"].startswith("no-regression-")]
    assert len(changes) == len(policy["checks"])
    for c in changes:
        assert c["outcome"] in ("PASS", "NOT_JUDGED"), c["message"]
        if c["outcome"] == "PASS":
            assert c["change_estimate"]["lo"] <= 0.0 <= c["change_estimate"]["hi"], c
    judged = {c["metric"] for c in changes if c["outcome"] == "PASS"}
    # the probe and sanity columns reach the baseline too (they used to end the audit in ERROR)
    assert {"bg_only_skill", "bg_gap", "sanity_spearman"} <= judged, judged


REGRESSION_CHECKS = [
    {"id": "no-heat-regression", "metric": "lift", "aggregate": "mean", "bound": "lower",
     "change": {"absolute": -0.05}, "severity": "fail"},
    {"id": "no-background-reliance-regression", "metric": "bg_gap", "aggregate": "mean", "bound": "upper",
     "change": {"absolute": 0.05}, "severity": "fail"},
]


@pytest.mark.parametrize(("candidate", "baseline", "outcome"), [("clean", "watermark", "PASS"),
                                                                ("watermark", "clean", "FAIL")])
def test_a_measurably_worse_baseline_is_caught_in_the_right_direction(candidate, baseline, outcome, tmp_path,
                                                                      request, watermark_set):
    policy = load_policy(default_policy_path()).to_dict() | {"checks": REGRESSION_CHECKS, "name": "regression"}
    new, old = request.getfixturevalue(f"{candidate}_model"), request.getfixturevalue(f"{baseline}_model")
    verdict = run(new, watermark_set["coco"], tmp_path / "v", policy=policy, batch_size=32, baseline=str(old.path))
    results = {c["check_id"]: c for c in verdict.to_dict()["checks"]}
    for check in REGRESSION_CHECKS:
        assert results[check["id"]]["outcome"] == outcome, results[check["id"]]["message"]


def test_the_verdict_does_not_depend_on_the_number_of_sanity_stages(tmp_path, watermark_model, watermark_set,
                                                                  by_batch):
    # The stages nest (each layer is re-drawn from its own seed): the last stage, every layer re-drawn, is
    # the one the check reads, whether the cascade shows 2 stages (the default) or 8.
    policy = load_policy(default_policy_path()).to_dict()
    policy["probes"]["sanity"]["stages"] = 8
    eight = run(watermark_model, watermark_set["coco"], tmp_path / "eight", policy=policy, batch_size=32)
    assert len(eight.probes["sanity"]["stages"]) > len(by_batch[32].probes["sanity"]["stages"]) == 2
    assert_same_verdict(by_batch[32], eight, "8 sanity stages vs 2")
