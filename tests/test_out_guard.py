"""An --out that holds an input is refused (exit 2) before anything is cleared: the gate never destroys an input.

The gate clears its own file names in --out (verdict.json, samples.csv, shard.npz, ...) and writes its reports
there; a shard folder or a data folder given as --out would lose the very file the run reads.
"""

from __future__ import annotations

import shutil

import pytest
from cli_helpers import run_cli

from validator.gate import audit

POLICY = ("name: tiny\nversion: 1\nsample: {min_samples: 10, min_per_class: 5}\n"
          "checks: [{id: any, metric: dead, aggregate: rate, max: 1.0}]\n")


def test_merge_into_a_shard_folder_is_refused_and_the_shard_survives(tmp_path, capsys, small_set, untrained_model):
    policy = tmp_path / "tiny.yaml"
    policy.write_text(POLICY)
    shutil.copytree(small_set.root, tmp_path / "data")
    coco = tmp_path / "data" / small_set.coco_path.relative_to(small_set.root)
    shard_dir = tmp_path / "shard1"
    v = audit(str(untrained_model), str(coco), policy=str(policy), out=shard_dir, shard="1/1")
    assert v.status == "PARTIAL", v.error
    shard = shard_dir / "shard.npz"
    before = shard.read_bytes()
    for given in (shard_dir, shard):  # the folder or the file itself
        result = run_cli(capsys, "merge", given, "--out", shard_dir, "--no-mlflow")
        assert result.exit_code == 2, result.out + result.err
        assert "--out" in result.err and str(shard.resolve()) in result.err
        assert "no report written" in result.out
        assert shard.read_bytes() == before
    # the merge re-reads the model and data the shards recorded (its overlays): their folders are inputs too
    into_data = run_cli(capsys, "merge", shard_dir, "--out", coco.parent, "--no-mlflow")
    assert into_data.exit_code == 2 and "the data the shards recorded" in into_data.err, into_data.err
    assert not (coco.parent / "verdict.json").exists()
    # the folder it came from is still the shard's: nothing of the refused merge was written there
    assert (shard_dir / "NOT_BLESSED").read_text().strip() == "PARTIAL"
    merged = run_cli(capsys, "merge", shard_dir, "--out", tmp_path / "merged", "--no-mlflow")
    assert merged.exit_code == 0, merged.out + merged.err


def test_audit_into_the_data_folder_keeps_a_manifest_named_like_an_output(tmp_path, capsys, untrained_model):
    """A CSV manifest called samples.csv (the name of the gate's own table) in the --out folder survives."""
    from validator.datasets.synthetic import write_dataset

    data = write_dataset(tmp_path / "data", 12, seed=1, formats=("csv",))
    manifest = data.manifest_path.rename(data.root / "samples.csv")
    before = manifest.read_bytes()
    policy = tmp_path / "tiny.yaml"
    policy.write_text(POLICY)
    result = run_cli(capsys, "audit", untrained_model, "--data", manifest, "--policy", policy, "--no-mlflow",
                     "--out", data.root)
    assert result.exit_code == 2, result.out + result.err
    assert "--out" in result.err and str(manifest.resolve()) in result.err
    assert manifest.read_bytes() == before
    assert not (data.root / "verdict.json").exists()
    # the images folder and the model's folder are inputs too; the Python API refuses the same way
    image_dir = data.image_paths[0].parent
    assert image_dir != data.root
    images = audit(str(untrained_model), str(manifest), policy=str(policy), images=str(image_dir), out=image_dir)
    assert images.exit_code == 2 and "--images folder" in images.error, images.error
    beside_model = audit(str(untrained_model), str(manifest), policy=str(policy), out=untrained_model.parent)
    assert beside_model.exit_code == 2 and "the model" in beside_model.error
    assert beside_model.outputs == {} and manifest.read_bytes() == before


def test_what_counts_as_holding_an_input(tmp_path):
    """A file beside the reports or the folder itself is refused; a sub-folder is safe unless it is overlays/."""
    from validator.errors import UsageError
    from validator.report.files import refuse_inputs_in

    (tmp_path / "images" / "a").mkdir(parents=True)
    (tmp_path / "overlays").mkdir()
    (tmp_path / "ann.json").write_text("{}")
    refuse_inputs_in(tmp_path, [("the --images folder", tmp_path / "images"), ("the model", "models:/m@champion"),
                                ("an in-memory model", object()), ("nothing", None)])
    for what, path in (("the --data annotations", tmp_path / "ann.json"), ("the --images folder", tmp_path),
                       ("the --images folder", tmp_path / "overlays")):
        with pytest.raises(UsageError, match=f"--out {tmp_path} holds {what}"):
            refuse_inputs_in(tmp_path, [(what, path)])


# ------------------------------------------------------- only what the gate can prove it wrote is replaced


def _snapshot(root):
    """{relative path: bytes} of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_users_files_with_report_names_are_refused_not_replaced(tmp_path, small_set, untrained_model):
    """A folder holding the user's own summary.md or overlays/worst_x.png (names the gate writes) is refused with
    exit 2 and nothing written; the gate's own earlier reports are replaced on a rerun; an edited report counts as
    the user's."""
    policy = tmp_path / "tiny.yaml"
    policy.write_text(POLICY)
    out = tmp_path / "shared"
    (out / "overlays").mkdir(parents=True)
    (out / "summary.md").write_text("# my notes\n")
    before = _snapshot(out)
    refused = audit(str(untrained_model), str(small_set.coco_path), policy=str(policy), out=out)
    assert refused.exit_code == 2 and "summary.md" in refused.error and ".camgate-written" in refused.error
    assert _snapshot(out) == before  # nothing written, nothing removed
    (out / "summary.md").unlink()
    (out / "overlays" / "worst_cat_0_x.png").write_bytes(b"my picture")
    refused = audit(str(untrained_model), str(small_set.coco_path), policy=str(policy), out=out)
    assert refused.exit_code == 2 and "overlays/worst_cat_0_x.png" in refused.error
    (out / "overlays" / "worst_cat_0_x.png").unlink()

    first = audit(str(untrained_model), str(small_set.coco_path), policy=str(policy), out=out)
    assert first.status == "PASS"
    again = audit(str(untrained_model), str(small_set.coco_path), policy=str(policy), out=out)
    assert again.status == "PASS"  # its own files: recorded, unchanged, replaced
    lines = len((out / ".camgate-written").read_text().splitlines())
    assert audit(str(untrained_model), str(small_set.coco_path), policy=str(policy), out=out).status == "PASS"
    assert len((out / ".camgate-written").read_text().splitlines()) == lines  # compacted each run: no growth
    (out / "report.html").write_text((out / "report.html").read_text() + "<!-- my edit -->")
    edited = audit(str(untrained_model), str(small_set.coco_path), policy=str(policy), out=out)
    assert edited.exit_code == 2 and "report.html" in edited.error
    assert (out / "report.html").read_text().endswith("<!-- my edit -->")


@pytest.mark.parametrize("place", ["data folder", "images folder", "model folder", "parent of data",
                                   "beside user files", "nested in data"])
def test_no_placement_of_out_deletes_or_changes_a_file_the_gate_did_not_write(tmp_path, untrained_model, place):
    """Property: whatever --out is, relative to the inputs (COCO + VOC + CSV annotations, images, model, policy)
    and to a user's files named like the reports, every file that existed before the run is there after it,
    byte for byte, unless the gate itself wrote it. Each placement either runs or is refused with exit 2."""
    from validator.datasets.synthetic import write_dataset

    root = tmp_path / "root"
    data = write_dataset(root / "data", 12, seed=1, formats=("coco", "voc", "csv"))
    model = root / "models" / "m.keras"
    model.parent.mkdir()
    shutil.copy(untrained_model, model)
    policy = root / "tiny.yaml"
    policy.write_text(POLICY)
    user = root / "user"
    (user / "overlays").mkdir(parents=True)
    for name in ("verdict.json", "samples.csv", "summary.md", "junit.xml", "report.html", "BLESSED", "error.log"):
        (user / name).write_text(f"the user's {name}")
    (user / "overlays" / "atlas_overall.png").write_bytes(b"the user's picture")
    image_dir = data.image_paths[0].parent
    out = {"data folder": data.root, "images folder": image_dir, "model folder": model.parent,
           "parent of data": root, "beside user files": user, "nested in data": data.root / "reports"}[place]
    before = _snapshot(root)
    for annotation_file in (data.coco_path, data.manifest_path):
        verdict = audit(str(model), str(annotation_file), policy=str(policy), out=out, images=str(image_dir))
        assert verdict.exit_code in (0, 2), verdict.error
        after = _snapshot(root)
        for name, content in before.items():
            assert after.get(name) == content, f"{place}: {name} was changed or removed"
