"""Sharded audits: each shard explains whole chunks of the seeded sample order; the merge judges once.

A single-process audit cuts its seeded order into chunks of ``batch_size`` samples and explains one chunk
per batch, with every seed taken per chunk (validator.scoring). A shard explains a contiguous range of
those chunks, so each of its rows is computed from the very batch a single process would have used, and
keeps its rows plus what the set-level steps need: the discovery grid maps batch by batch (the atlas sums
them in stream order), the sanity cascade's per-sample correlations, its data issues. ``merge_runs``
concatenates the shards in chunk order and runs the set-level steps and the policy once: the verdict is the
single-process verdict, bit for bit, whatever the number of shards and the order they are given in.

A shard is one ``shard.npz`` (numeric arrays, read with ``allow_pickle=False``: a shard file cannot run code)
whose ``__meta__`` entry is the JSON of everything else.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from validator import __version__
from validator.errors import DataError, UsageError

FORMAT = "camgate-shard"
FORMAT_VERSION = 1
SHARD_FILE = "shard.npz"
_META = "__meta__"
# the context keys every shard of one audit must agree on (the merge refuses a mix)
_SAME = ("model", "model_name", "data", "policy", "seed", "max_samples", "n_samples", "batch_size", "explainer",
         "facts", "probes_enabled", "baseline")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (0-based) of ``count``; written ``index+1/count`` on the command line."""

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"a shard is I/N with 1 <= I <= N, got {self.label}")

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        head, sep, tail = str(text).partition("/")
        try:
            if not sep:
                raise ValueError
            index, count = int(head), int(tail)
        except ValueError:
            raise UsageError(f"--shard must be I/N (e.g. 2/8: the second of eight shards), got {text!r}") from None
        return cls(index - 1, count)


def chunk_range(n_samples: int, batch_size: int, shard: ShardSpec | None) -> tuple[int, int]:
    """The chunks [start, stop) of ``batch_size`` samples that ``shard`` explains (all of them for None).

    Contiguous and balanced (sizes differ by at most one chunk); a shard may be empty when there are more
    shards than chunks."""
    chunks = math.ceil(n_samples / batch_size)
    if shard is None:
        return 0, chunks
    return shard.index * chunks // shard.count, (shard.index + 1) * chunks // shard.count


# ------------------------------------------------------------------------------------------- the shard


@dataclass
class Partial:
    """One shard: ``meta`` (JSON: the audit's context, this shard's place, object columns) and numeric arrays."""

    meta: dict
    arrays: dict

    @property
    def spec(self) -> ShardSpec:
        return ShardSpec(int(self.meta["shard"]["index"]), int(self.meta["shard"]["count"]))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        meta = np.frombuffer(json.dumps(_plain(self.meta)).encode(), dtype=np.uint8)
        np.savez(buffer, **{_META: meta}, **self.arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> Partial:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            meta = json.loads(arrays.pop(_META).tobytes().decode())
        except Exception as exc:
            raise DataError(f"{source}: not a camgate shard file ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{source}: not a camgate shard file (no '{FORMAT}' header)")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{source}: shard format version {meta.get('format_version')} is not "
                            f"{FORMAT_VERSION} (written by camgate {meta.get('camgate')}, this is {__version__})")
        return cls(meta, arrays)

    def write(self, out_dir: Path) -> Path:
        from validator.report.files import write_bytes_atomic

        path = Path(out_dir) / SHARD_FILE
        write_bytes_atomic(path, self.to_bytes())
        return path

    @classmethod
    def read(cls, path) -> Partial:
        path = Path(path)
        if path.is_dir():
            path = path / SHARD_FILE
        if not path.is_file():
            raise DataError(f"{path}: no shard file (run `camgate audit ... --shard I/N --out DIR` first; a shard "
                            "that failed has a verdict.json with its error instead)")
        return cls.from_bytes(path.read_bytes(), str(path))


def read_meta(path) -> dict:
    """Only the ``__meta__`` entry of a shard file (an npz entry is read when it is accessed)."""
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz[_META].tobytes().decode())


def make_partial(shard: ShardSpec, context: dict, runs: dict) -> Partial:
    """``runs``: ``{"main": SetRun, "baseline": SetRun}`` (partial runs from ``explain_set(partial=True)``)."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "camgate": __version__,
            "shard": {"index": shard.index, "count": shard.count}, "context": context, "runs": {}}
    arrays: dict[str, np.ndarray] = {}
    for name, run in runs.items():
        meta["runs"][name] = _pack_run(run, f"{name}/", arrays)
    return Partial(meta, arrays)


def _pack_run(run, prefix: str, arrays: dict) -> dict:
    objects, columns = {}, list(run.table)
    for key in columns:
        values = np.asarray(run.table[key])
        if values.dtype == object:
            objects[key] = [_plain(v) for v in values.tolist()]
        else:
            arrays[f"{prefix}table/{key}"] = values
    collector = run.partial["collector"]
    for key in ("batch_sizes", "small", "masks", "labelled"):
        arrays[f"{prefix}collector/{key}"] = np.asarray(collector[key])
    packed = {"rows": run.n_rows, "columns": columns, "objects": objects, "issues": [i.to_dict() for i in run.issues],
              "settings": run.settings,
              "collector": {k: collector[k] for k in ("grid", "max_clusters", "seed", "names", "ids")},
              "sanity": None}
    sanity = run.partial.get("sanity")
    if sanity is not None:
        result = sanity["result"]
        packed["sanity"] = {"error": sanity["error"], "summary": sanity["summary"], "result": None}
        arrays[f"{prefix}sanity/rows"] = sanity["rows"]
        if result is not None:
            packed["sanity"]["result"] = {"method": result.method, "seed": result.seed, "n_top": result.n_top,
                                          "layers": result.layers, "grid": list(result.grid),
                                          "seconds": result.seconds}
            arrays[f"{prefix}sanity/spearman"] = result.spearman
            arrays[f"{prefix}sanity/dead"] = result.dead
            arrays[f"{prefix}sanity/original_dead"] = result.original_dead
    return packed


# ------------------------------------------------------------------------------------------- the merge


def check_shards(partials: list[Partial]) -> list[Partial]:
    """The shards of one audit, each exactly once, in order; a clear error for anything else."""
    if not partials:
        raise UsageError("no shard to merge")
    ordered = sorted(partials, key=lambda p: p.spec.index)
    counts = {p.spec.count for p in ordered}
    if len(counts) > 1:
        raise UsageError(f"the shards come from different splits (N = {sorted(counts)}): merge the shards of one run")
    count = counts.pop()
    seen = [p.spec.index for p in ordered]
    duplicated = sorted({i + 1 for i in seen if seen.count(i) > 1})
    missing = sorted(set(range(1, count + 1)) - {i + 1 for i in seen})
    if duplicated:
        raise UsageError(f"shard(s) {', '.join(f'{i}/{count}' for i in duplicated)} given more than once")
    if missing:
        raise UsageError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing: a merge needs all {count}")
    versions = sorted({str(p.meta.get("camgate")) for p in ordered})
    if len(versions) > 1:
        raise UsageError(f"the shards were written by different camgate versions ({', '.join(versions)}): "
                         "rerun them with one version")
    first = ordered[0].meta["context"]
    for p in ordered[1:]:
        context = p.meta["context"]
        for key in _SAME:
            if context.get(key) != first.get(key):
                raise UsageError(f"shard {p.spec.label} was run with a different {key} than shard 1/{count}: "
                                 f"{_short(context.get(key))} vs {_short(first.get(key))}")
    return ordered


def merge_runs(partials: list[Partial], name: str = "main"):
    """The shards' runs ``name`` as one :class:`~validator.scoring.SetRun`, set-level steps included."""
    from validator.data.records import DataIssue
    from validator.discovery.discover import DiscoveryCollector
    from validator.probes.runner import SANITY_COLUMN, sanity_column
    from validator.probes.sanity import SanityResult
    from validator.scoring import SetRun

    packs = [(p.meta["runs"][name], p.arrays, f"{name}/") for p in partials]
    filled = [(pack, arrays, prefix) for pack, arrays, prefix in packs if pack["rows"]]
    if not filled:
        raise DataError("no sample could be read: every image was skipped (see the data issues in the report)")
    columns = filled[0][0]["columns"]
    table = {}
    for key in columns:
        if key in filled[0][0]["objects"]:
            table[key] = np.array([v for pack, _, _ in filled for v in pack["objects"][key]], dtype=object)
        else:
            table[key] = np.concatenate([arrays[f"{prefix}table/{key}"] for _, arrays, prefix in filled])
    n_rows = len(table[columns[0]])
    issues = [DataIssue(**issue) for pack, _, _ in packs for issue in pack["issues"]]

    head = packs[0][0]["collector"]
    collector = DiscoveryCollector(head["grid"], head["max_clusters"], head["seed"])
    for pack, arrays, prefix in packs:
        state = {k: arrays[f"{prefix}collector/{k}"] for k in ("batch_sizes", "small", "masks", "labelled")}
        collector.replay({**state, "names": pack["collector"]["names"], "ids": pack["collector"]["ids"]})

    probes = None
    if packs[0][0]["sanity"] is not None:
        rows, results, offset, seconds = [], [], 0, {}
        error = next((pack["sanity"]["error"] for pack, _, _ in packs if pack["sanity"]["error"]), None)
        for pack, arrays, prefix in packs:
            sanity = pack["sanity"]
            for stage, value in sanity["summary"]["seconds"].items():
                seconds[stage] = seconds.get(stage, 0.0) + value
            rows.append(arrays[f"{prefix}sanity/rows"] + offset)
            if sanity["result"] is not None:
                results.append((sanity["result"], arrays, prefix))
            offset += pack["rows"]
        summary = {**packs[0][0]["sanity"]["summary"], "seconds": seconds}
        summary["sanity"] = {"samples": int(sum(len(r) for r in rows))}
        result = None
        if results and error is None:
            info = results[0][0]
            result = SanityResult(
                method=info["method"], seed=info["seed"], n_top=info["n_top"], layers=info["layers"],
                spearman=np.concatenate([a[f"{p}sanity/spearman"] for _, a, p in results], axis=1),
                grid=tuple(info["grid"]), original=np.zeros((0, 0, 0), np.float32),
                randomised=np.zeros((0, 0, 0, 0), np.float32),
                original_dead=np.concatenate([a[f"{p}sanity/original_dead"] for _, a, p in results]),
                dead=np.concatenate([a[f"{p}sanity/dead"] for _, a, p in results], axis=1),
                seconds=np.sum([r[0]["seconds"] for r in results], axis=0).tolist(),
            )
        table[SANITY_COLUMN], probes = sanity_column(
            n_rows, np.concatenate(rows) if rows else np.zeros(0, np.int64), result, error, summary)
    atlas, discovery, table["spray_cluster"] = collector.finish()
    return SetRun(table, n_rows, packs[0][0]["settings"], issues, atlas, None, probes, discovery,
                  collector.flagged_maps, object_maps=collector.object_maps)


def _short(value) -> str:
    text = json.dumps(_plain(value), sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def _plain(value):
    """JSON-ready: numpy scalars and arrays to Python, tuples to lists, Paths to str; NaN stays a float."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
