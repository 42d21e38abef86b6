"""Sharded audits and `camgate merge`: the merged verdict is the single-process verdict, bit for bit.

The watermark control FAILs the default policy (probes, sanity cascade and discovery on), so every check,
interval, table column, atlas and cluster is compared, on a held-out set with an unreadable image (a skipped
sample shrinks its batch) and a baseline model whose table is sharded too: the policy adds a change check
(mean energy against the baseline's), so a change result is compared as well.
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import numpy as np
import pytest
import yaml
from cli_helpers import run_cli

from validator.errors import DataError, UsageError
from validator.gate import audit, merge
from validator.policy import default_policy_path
from validator.shard import Partial, ShardSpec, chunk_range

TODAY = date(2026, 12, 3)
BATCH = 8  # 45 readable of 46 samples: 6 chunks
# what differs between two runs of the same audit: wall time, where files went, the shard bookkeeping
VOLATILE = ("wall_seconds", "timings", "outputs", "tracking", "shards", "overlays")
# judged only with the baseline's table: a shard that lost or mangled the baseline rows changes its result
CHANGE_CHECK = {"id": "energy-change", "description": "In-box heat share fell against the baseline",
                "metric": "energy", "aggregate": "mean", "bound": "lower", "change": {"absolute": -0.05},
                "severity": "warn"}


def comparable(verdict) -> dict:
    data = verdict.to_dict()
    for key in VOLATILE:
        data.pop(key)
    probes = data["probes"]
    probes.pop("seconds", None)
    for stage in probes.get("sanity", {}).get("stages", []):
        stage.pop("seconds")
    return data


def assert_same_tables(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        if a[key].dtype == object:
            assert a[key].tolist() == b[key].tolist(), key
        else:
            assert a[key].dtype == b[key].dtype, key
            assert np.array_equal(a[key], b[key], equal_nan=True), f"column {key} differs"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, watermark_model, clean_model, heldout_coco):
    root = tmp_path_factory.mktemp("shards")
    source = heldout_coco("watermark", n=46, seed=3)
    shutil.copytree(source.root, root / "data")
    coco = root / "data" / source.coco_path.relative_to(source.root)
    broken = root / "data" / source.image_paths[5].relative_to(source.root)
    broken.write_bytes(b"not an image")
    policy = yaml.safe_load(default_policy_path().read_text())
    policy["checks"].append(CHANGE_CHECK)
    (root / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    common = {"today": TODAY, "batch_size": BATCH, "baseline": str(clean_model.path),
              "policy": str(root / "policy.yaml")}
    single = audit(str(watermark_model.path), str(coco), out=root / "single", **common)
    assert single.status == "FAIL", single.error
    shards = {}
    for i in (2, 3, 1):  # out of order on purpose
        shards[i] = audit(str(watermark_model.path), str(coco), out=root / f"shard{i}", shard=f"{i}/3", **common)
        assert shards[i].status == "PARTIAL", shards[i].error
    return {"root": root, "coco": coco, "single": single, "shards": shards, "model": watermark_model,
            "baseline": clean_model, "broken": broken, "common": common}


def change_result(verdict) -> dict:
    (result,) = [c for c in verdict.checks if c["check_id"] == CHANGE_CHECK["id"]]
    return result


def test_shard_spec_and_chunk_ranges_cover_every_chunk_once():
    assert ShardSpec.parse("2/8") == ShardSpec(1, 8) and ShardSpec(1, 8).label == "2/8"
    for bad in ("0/3", "4/3", "3", "a/b", "1/0", "-1/2"):
        with pytest.raises(UsageError, match="I/N"):
            ShardSpec.parse(bad)
    for n, batch, count in ((46, 8, 3), (46, 8, 8), (1, 32, 4), (1000, 32, 7), (64, 32, 2)):
        chunks = -(-n // batch)
        ranges = [chunk_range(n, batch, ShardSpec(i, count)) for i in range(count)]
        assert ranges[0][0] == 0 and ranges[-1][1] == chunks
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous, in order
        sizes = [stop - start for start, stop in ranges]
        assert max(sizes) - min(sizes) <= 1, (n, batch, count, sizes)  # balanced


def test_each_shard_writes_its_rows_and_blesses_nothing(sharded):
    rows = [sharded["shards"][i].shards["rows"] for i in (1, 2, 3)]
    assert sum(rows) == sharded["single"].sample["n_explained"] == 45  # 46 samples, one unreadable image
    for i in (1, 2, 3):
        out = sharded["root"] / f"shard{i}"
        verdict = json.loads((out / "verdict.json").read_text())
        assert verdict["status"] == "PARTIAL" and verdict["checks"] == [] and not verdict["gate_ok"]
        assert (out / "NOT_BLESSED").exists() and not (out / "BLESSED").exists()
        assert (out / "shard.npz").stat().st_size > 0


def test_merge_equals_single_process_bit_for_bit(sharded):
    dirs = [sharded["root"] / f"shard{i}" for i in (3, 1, 2)]  # any order
    merged = merge(dirs, out=sharded["root"] / "merged", today=TODAY)
    single = sharded["single"]
    assert merged.status == "FAIL" and merged.exit_code == single.exit_code == 1
    assert comparable(merged) == comparable(single)
    assert_same_tables(merged.table, single.table)
    assert merged.atlas.keys() == single.atlas.keys()
    for key in single.atlas:
        assert np.array_equal(merged.atlas[key], single.atlas[key])
    assert "corner-heat" in {c["check_id"] for c in merged.failed_checks}
    change = change_result(merged)  # judged against the merged baseline rows, equal to the single run's
    assert change["outcome"] != "SKIPPED" and np.isfinite(change["baseline"]), change
    assert change == change_result(single)
    assert any("not an image" in i["reason"] or i["action"] == "skipped_sample" for i in merged.data_issues)
    assert merged.shards["overlays"] == "rendered" and len(merged.overlays) == len(single.overlays)
    assert (sharded["root"] / "merged" / "NOT_BLESSED").exists()


def test_more_shards_than_chunks_still_merge_exactly(sharded, tmp_path):
    dirs = []
    for i in range(1, 9):  # 6 chunks over 8 shards: two shards have no rows
        out = tmp_path / f"s{i}"
        v = audit(str(sharded["model"].path), str(sharded["coco"]), out=out, shard=f"{i}/8", **sharded["common"])
        assert v.status == "PARTIAL", v.error
        dirs.append(out)
    assert sorted(json.loads((d / "verdict.json").read_text())["shards"]["rows"] for d in dirs)[:2] == [0, 0]
    merged = merge(dirs, out=tmp_path / "merged", today=TODAY)
    assert comparable(merged) == comparable(sharded["single"])
    assert_same_tables(merged.table, sharded["single"].table)


def test_merge_refuses_missing_duplicate_and_foreign_shards(sharded, tmp_path):
    root = sharded["root"]
    cases = {
        "missing": ([root / "shard1", root / "shard3"], "2/3 missing"),
        "duplicate": ([root / "shard1", root / "shard1", root / "shard2", root / "shard3"], "more than once"),
    }
    other = tmp_path / "other-seed"
    v = audit(str(sharded["model"].path), str(sharded["coco"]), out=other, shard="2/3", seed=11,
              **sharded["common"])
    assert v.status == "PARTIAL", v.error
    cases["foreign"] = ([root / "shard1", other, root / "shard3"], "shard 2/3 was run with a different")
    half = tmp_path / "half"
    v = audit(str(sharded["model"].path), str(sharded["coco"]), out=half, shard="1/2", **sharded["common"])
    cases["split"] = ([root / "shard1", half], "different splits")
    old = Partial.read(root / "shard2")
    old.meta["camgate"] = "0.0.1"
    (tmp_path / "old").mkdir()
    old.write(tmp_path / "old")
    cases["version"] = ([root / "shard1", tmp_path / "old", root / "shard3"], "different camgate versions")
    for name, (dirs, message) in cases.items():
        verdict = merge(dirs, out=tmp_path / f"merged-{name}", today=TODAY)
        assert verdict.status == "ERROR" and verdict.exit_code == 2, name
        assert message in verdict.error, (name, verdict.error)
        assert json.loads((tmp_path / f"merged-{name}" / "verdict.json").read_text())["status"] == "ERROR"


def test_a_file_that_is_not_a_shard_is_a_data_error(tmp_path, sharded):
    fake = tmp_path / "fake" / "shard.npz"
    fake.parent.mkdir()
    fake.write_bytes(b"PK junk")
    with pytest.raises(DataError, match="not a camgate shard file"):
        Partial.read(fake)
    verdict = merge([fake.parent], out=tmp_path / "m", today=TODAY)
    assert verdict.status == "ERROR" and "not a camgate shard file" in verdict.error
    empty = tmp_path / "failed-shard"
    empty.mkdir()
    with pytest.raises(DataError, match="no shard file"):
        Partial.read(empty)
    bad_version = Partial.read(sharded["root"] / "shard1")
    bad_version.meta["format_version"] = 99
    with pytest.raises(DataError, match="format version 99"):
        Partial.from_bytes(bad_version.to_bytes(), "x")


def test_cli_shard_then_merge_logs_one_mlflow_run(capsys, sharded, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    refused = run_cli(capsys, "audit", sharded["model"].path, "--data", sharded["coco"], "--shard", "1/3",
                      "--tracking-uri", uri, "--out", tmp_path / "x")
    assert refused.exit_code == 2 and "cannot be used with --shard" in refused.err
    dirs = [str(sharded["root"] / f"shard{i}") for i in (1, 2, 3)]
    result = run_cli(capsys, "merge", *dirs, "--out", tmp_path / "merged", "--tracking-uri", uri,
                     "--experiment", "shards")
    assert result.exit_code == 1, result.out + result.err
    assert "FAIL" in result.out and "corner-heat" in result.out
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("shards").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["camgate.status"] == "FAIL"
    verdict = json.loads((tmp_path / "merged" / "verdict.json").read_text())
    assert verdict["shards"]["count"] == 3 and sum(verdict["shards"]["rows"]) == 45


def test_sanity_cascade_in_groups_equals_each_group_alone(clean_model, heldout_coco):
    """Why a shard's sanity column is exact: an image's maps depend only on its own group (batch)."""
    from validator.data import iter_batches, load_dataset
    from validator.model import load_model
    from validator.probes.sanity import cascade

    loaded = load_model(clean_model.path)
    data = heldout_coco(None, n=12, seed=4)
    samples = load_dataset(data.coco_path).samples
    images = np.concatenate([b.images for b in iter_batches(samples, input_size=loaded.input_size, batch_size=12)])
    classes = np.array([s.class_id for s in samples])
    groups = np.array([0] * 5 + [1] * 7)
    together = cascade(loaded.model, images, classes, seed=3, stages=2, batch_size=8, groups=groups)
    first = cascade(loaded.model, images[:5], classes[:5], seed=3, stages=2, batch_size=8)
    second = cascade(loaded.model, images[5:], classes[5:], seed=3, stages=2, batch_size=8)
    assert np.array_equal(together.spearman, np.concatenate([first.spearman, second.spearman], axis=1),
                          equal_nan=True)
    assert np.isfinite(together.spearman).sum() >= 10  # real correlations, not all dead


def test_aligned_batches_keep_their_chunk_when_a_sample_is_skipped(tmp_path):
    """Known answer: 7 samples, batch 3, sample 1 unreadable -> batches [0, 2], [3, 4, 5], [6]."""
    import cv2

    from validator.data import Sample, iter_batches

    samples = []
    for i in range(7):
        path = tmp_path / f"{i}.png"
        if i == 1:
            path.write_bytes(b"broken")
        else:
            cv2.imwrite(str(path), np.full((8, 8, 3), 10 * i, np.uint8))
        samples.append(Sample(f"s{i}", str(path), 0, "a", ((1.0, 1.0, 4.0, 4.0),), (f"a{i}",), (8, 8)))
    issues = []
    batches = list(iter_batches(samples, input_size=(8, 8), batch_size=3, aligned=True, issues=issues))
    assert [b.indices.tolist() for b in batches] == [[0, 2], [3, 4, 5], [6]]
    assert [b.chunk for b in batches] == [0, 1, 2]
    assert np.allclose(batches[0].images[1], 20.0)  # sample 2's pixels, not a neighbour's
    assert len(issues) == 1 and issues[0].action == "skipped_sample"
    unaligned = list(iter_batches(samples, input_size=(8, 8), batch_size=3))
    assert [b.indices.tolist() for b in unaligned] == [[0, 2, 3], [4, 5, 6]]
