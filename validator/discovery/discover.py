"""Collect the downsampled maps during the pass, then build the heat atlas and the SpRAy clusters per class.

Memory: grid x grid floats per audited image (1 KiB at the default 16), plus the same for the object masks.
"""

from __future__ import annotations

import numpy as np

EXAMPLES_PER_CLUSTER = 4


class DiscoveryCollector:
    def __init__(self, grid: int = 16, max_clusters: int = 8, seed: int = 0):
        from validator.discovery.atlas import AtlasAccumulator

        self.grid, self.max_clusters, self.seed = int(grid), int(max_clusters), int(seed)
        self.atlas = AtlasAccumulator()
        self._small: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._labelled: list[np.ndarray] = []
        self._names: list[object] = []
        self._ids: list[object] = []
        self.flagged_maps: dict[tuple[str, int], np.ndarray] = {}  # (class, cluster) -> mean map, for the report
        # atlas key -> per grid cell, the mean share covered by the object boxes over the labelled maps with a
        # box: where the objects lie, drawn beside the atlas (display only; no check reads it)
        self.object_maps: dict[str, np.ndarray] = {}

    def add(self, maps: np.ndarray, boxes, names, sample_ids, labelled: np.ndarray, object_masks=None) -> None:
        """Add one batch of maps; ``object_masks`` (per sample an [H, W] bool mask or None) replace the boxes."""
        from validator.discovery.atlas import downsample

        small = downsample(maps, self.grid)
        masks = _small_masks(boxes, maps.shape[1], maps.shape[2], self.grid, object_masks)
        self.add_small(small, masks, names, sample_ids, labelled)

    def add_grid(self, small: np.ndarray, boxes, height: int, width: int, names, sample_ids, labelled,
                 object_masks=None) -> None:
        """Add one batch whose maps were already reduced to the grid (on the device: validator.scoring_device)."""
        self.add_small(small, _small_masks(boxes, height, width, self.grid, object_masks), names, sample_ids,
                       labelled)

    def add_small(self, small: np.ndarray, masks: np.ndarray, names, sample_ids, labelled: np.ndarray) -> None:
        """Add one batch already on the grid (what :meth:`state` keeps: a merge replays the batches in order)."""
        keep = np.flatnonzero(labelled)
        if len(keep):
            self.atlas.add(small[keep], [names[i] for i in keep])
        self._small.append(small.astype(np.float32))
        self._masks.append(masks)
        self._labelled.append(np.asarray(labelled, bool))
        self._names.extend(names)
        self._ids.extend(sample_ids)

    def state(self) -> dict:
        """The batches added so far, on the grid: ``replay`` on another collector gives the same ``finish``."""
        sizes = np.array([len(b) for b in self._small], dtype=np.int64)
        empty = np.zeros((0, self.grid, self.grid), np.float32)
        return {"grid": self.grid, "max_clusters": self.max_clusters, "seed": self.seed, "batch_sizes": sizes,
                "small": np.concatenate(self._small) if self._small else empty,
                "masks": np.concatenate(self._masks).astype(np.float32) if self._masks else empty,
                "labelled": np.concatenate(self._labelled) if self._labelled else np.zeros(0, bool),
                "names": list(self._names), "ids": list(self._ids)}

    def replay(self, state: dict) -> None:
        """Add the batches of a :meth:`state`, in their order (the atlas sums batch by batch, as the stream did)."""
        start = 0
        for size in np.asarray(state["batch_sizes"], dtype=np.int64):
            rows = slice(start, start + int(size))
            self.add_small(np.asarray(state["small"][rows]), np.asarray(state["masks"][rows], np.float32),
                           state["names"][rows], state["ids"][rows], np.asarray(state["labelled"][rows], bool))
            start += int(size)

    def finish(self) -> tuple[dict, dict, np.ndarray]:
        """(atlas per key as grid x grid maps summing to 1, discovery summary for the verdict, the SpRAy cluster
        of each row within its class: -1 where the map is dead or the row is unlabelled)."""
        from validator.discovery.atlas import region_shares
        from validator.discovery.spray import describe_clusters, spray

        atlas = self.atlas.atlas()
        summary: dict = {"grid": self.grid, "atlas": {}, "clusters": {}}
        for key, mean_map in atlas.items():
            shares = region_shares(mean_map)
            summary["atlas"][key] = {"n": int(self.atlas.counts.get(key, 0)), **_plain(shares)}
        if not self._small:
            return atlas, summary, np.zeros(0, dtype=int)
        small = np.concatenate(self._small)
        cluster_column = np.full(len(small), -1, dtype=int)
        masks = np.concatenate(self._masks)
        names = np.asarray(self._names, dtype=object)
        self.object_maps = _object_maps(masks, names, np.concatenate(self._labelled), set(atlas))
        ids = np.asarray(self._ids, dtype=object)
        for name in sorted({n for n in self._names if n is not None}, key=str):
            rows = np.flatnonzero((names == name).astype(bool) & np.isfinite(small).all(axis=(1, 2)))
            if len(rows) < 2:
                continue
            has_box = masks[rows].reshape(len(rows), -1).sum(axis=1) > 0
            result = spray(small[rows], max_clusters=self.max_clusters, seed=self.seed)
            cluster_column[rows] = result.labels
            described = describe_clusters(result, small[rows], box_masks_small=masks[rows] if has_box.all() else None)
            for cluster in described["clusters"]:
                members = cluster.pop("members")
                mean_map = np.asarray(cluster.pop("mean_map"), dtype=np.float64)
                cluster["examples"] = [ids[rows[m]] for m in members[:EXAMPLES_PER_CLUSTER]]
                if cluster.get("off_object"):
                    self.flagged_maps[(str(name), int(cluster["cluster"]))] = mean_map
            summary["clusters"][str(name)] = {"n": int(len(rows)), **described}
        self._small.clear()
        self._masks.clear()
        self._labelled.clear()
        return atlas, summary, cluster_column


def _object_maps(masks: np.ndarray, names: np.ndarray, labelled: np.ndarray, keys) -> dict[str, np.ndarray]:
    """{atlas key: mean box coverage [g, g] over its labelled rows that have a box} (keys without one: left out)."""
    from validator.discovery.atlas import OVERALL

    with_box = labelled & (masks.reshape(len(masks), -1).sum(axis=1) > 0)
    out = {}
    for key in keys:
        rows = with_box if key == OVERALL else with_box & (names.astype(str) == str(key)) & np.not_equal(names, None)
        if rows.any():
            out[key] = masks[rows].astype(np.float64).mean(axis=0)
    return out


def _small_masks(boxes, height: int, width: int, grid: int, object_masks=None) -> np.ndarray:
    """Per sample, the share of each grid cell covered by the object: its mask where it has one, else its
    boxes (0 where the sample has neither)."""
    import cv2

    from validator.metrics.geometry import pad_boxes, rect_masks

    out = np.zeros((len(boxes), grid, grid), np.float32)
    for i, b in enumerate(boxes):
        given = None if object_masks is None else object_masks[i]
        if given is not None:
            mask = np.asarray(given, dtype=np.float32)
        elif len(b) == 0:
            continue
        else:
            mask = rect_masks(pad_boxes([b])[0], height, width).astype(np.float32)
        # INTER_AREA's fixed-point weights can overshoot 1 by an ulp where the grid does not divide the map
        # (60 px, 299 px): a covered share is in [0, 1] by definition
        out[i] = np.clip(cv2.resize(mask, (grid, grid), interpolation=cv2.INTER_AREA), 0.0, 1.0)
    return out


def _float(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _plain(shares) -> dict:
    return {k: (_plain(v) if isinstance(v, dict) else _float(v)) for k, v in dict(shares).items()}
