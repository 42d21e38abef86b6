"""SpRAy (Lapuschkin et al. 2019, "Unmasking Clever Hans predictors"): spectral clustering of one class's maps.

A model that solves part of a class with a shortcut (a corner tag, a watermark) produces a subgroup of
maps that look alike and unlike the rest. Clustering the coarse, unit-sum maps (``atlas.downsample``)
surfaces that subgroup without boxes; ``describe_clusters`` then says where each cluster's heat lies.

Method (deterministic for a seed):

* affinity: symmetric k-nearest-neighbour graph on the flattened maps (an edge when either point is among
  the other's ``n_neighbors`` nearest) with self-tuning Gaussian weights exp(-d^2 / (s_i s_j)),
  s_i = distance to the 7th nearest neighbour (Zelnik-Manor & Perona 2004);
* normalised Laplacian L = I - D^-1/2 W D^-1/2 and its smallest eigenvalues (scipy.linalg.eigh);
* k: see ``choose_k``: the largest qualifying eigengap among k = 2..max_clusters, else 1; a candidate
  whose k-means leaves a cluster under MIN_CLUSTER_SIZE maps (an outlier, not a subgroup) is passed over
  for the next, and k = 1 when none is left;
* embedding: the first k eigenvectors, rows scaled to unit length (Ng, Jordan & Weiss 2002), then k-means
  (scipy.cluster.vq.kmeans2, k-means++ seeding) restarted ``KMEANS_RESTARTS`` times, lowest inertia kept.

Clusters are numbered by decreasing size (ties: smallest first member). Dead (NaN) maps get label -1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import ClusterError, kmeans2
from scipy.linalg import eigh

from validator.discovery.atlas import region_shares
from validator.errors import UsageError

# Fewer live maps than this: one cluster (a split needs two clusters of MIN_CLUSTER_SIZE).
MIN_CLUSTER_SIZE = 5
MIN_POINTS = 2 * MIN_CLUSTER_SIZE
# Neighbour whose distance sets a point's local scale (Zelnik-Manor & Perona use the 7th).
LOCAL_SCALE_NEIGHBOUR = 7
# A split into k clusters needs k near-zero eigenvalues then a jump: lambda_{k-1} <= MAX_GAP_RATIO * lambda_k.
# The test is scale-free (the eigenvalues of a cluster shrink as it gains points) and rejects the steady
# rise of the spectrum of one smooth family: a blob moving along a line has lambda_j ~ j^2, so
# lambda_1 / lambda_2 ~ 1/4; one moving in a square, lambda_2 / lambda_3 ~ 1/2. MIN_EIGENGAP only keeps
# rounding noise between eigenvalues that are all ~0 (several disconnected groups) from counting as a gap.
MAX_GAP_RATIO = 0.1
MIN_EIGENGAP = 1e-8
KMEANS_RESTARTS = 10
KMEANS_ITER = 50
# describe_clusters: a cluster whose mean off-object share exceeds the median of the rest of the class by
# at least this much is flagged.
OFF_OBJECT_MARGIN = 0.2


@dataclass(frozen=True)
class SprayCluster:
    """One cluster: its member indices (into the maps given to ``spray``) and their mean unit-sum map."""

    size: int
    members: np.ndarray
    mean_map: np.ndarray


@dataclass(frozen=True)
class SprayResult:
    """The clustering of one class's maps.

    ``labels`` [n], -1 for a dead map; ``eigenvalues`` ascending, the smallest max_clusters + 1 (empty when
    there were too few maps to cluster); ``eigengap`` lambda_k - lambda_{k-1} at the chosen k (NaN when
    not computed); ``clustered`` the indices clustered spectrally (all live maps, or the subsample).
    """

    labels: np.ndarray
    k: int
    eigenvalues: np.ndarray
    eigengap: float
    clusters: tuple[SprayCluster, ...]
    n_neighbors: int
    clustered: np.ndarray


def default_neighbors(n: int) -> int:
    """max(5, round(sqrt(n))), at most n - 1."""
    return max(1, min(n - 1, max(5, round(math.sqrt(n)))))


def choose_k(eigenvalues: np.ndarray, max_clusters: int) -> list[int]:
    """Qualifying k in 2..max_clusters, best (largest eigengap) first; empty means k = 1.

    k qualifies when lambda_{k-1} <= MAX_GAP_RATIO * lambda_k and lambda_k - lambda_{k-1} >= MIN_EIGENGAP
    (eigenvalues 0-based, ascending; lambda_0 = 0): k almost-disconnected groups, then a clear jump.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    ks = []
    for k in range(2, min(max_clusters, len(lam) - 1) + 1):
        gap = lam[k] - lam[k - 1]
        if gap >= MIN_EIGENGAP and lam[k - 1] <= MAX_GAP_RATIO * lam[k]:
            ks.append((gap, k))
    return [k for _, k in sorted(ks, key=lambda t: (-t[0], t[1]))]


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(d, 0.0, None)


def _laplacian(x: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Normalised Laplacian of the self-tuned symmetric kNN graph on the rows of x."""
    m = x.shape[0]
    d2 = _sq_distances(x, x)
    np.fill_diagonal(d2, np.inf)
    order = np.argsort(d2, axis=1, kind="stable")
    knn = np.zeros((m, m), dtype=bool)
    knn[np.arange(m)[:, None], order[:, :n_neighbors]] = True
    knn |= knn.T
    scale_idx = min(LOCAL_SCALE_NEIGHBOUR, m - 1) - 1
    sigma = np.sqrt(d2[np.arange(m), order[:, scale_idx]])
    positive = sigma[sigma > 0]
    floor = 1e-12 * (positive.max() if positive.size else 1.0)
    sigma = np.maximum(sigma, floor)  # duplicated maps: a zero scale would divide by zero
    np.fill_diagonal(d2, 0.0)
    w = np.where(knn, np.exp(-d2 / (sigma[:, None] * sigma[None, :])), 0.0)
    deg = w.sum(axis=1)
    inv = 1.0 / np.sqrt(np.maximum(deg, np.finfo(np.float64).tiny))
    lap = np.eye(m) - inv[:, None] * w * inv[None, :]
    return (lap + lap.T) / 2.0


def _kmeans(embedding: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Best of KMEANS_RESTARTS k-means++ runs (lowest inertia); restarts that empty a cluster are skipped."""
    best, best_inertia = None, np.inf
    for restart in range(KMEANS_RESTARTS):
        rng = np.random.default_rng([seed, restart])
        try:
            centroids, labels = kmeans2(embedding, k, iter=KMEANS_ITER, minit="++", missing="raise", rng=rng)
        except ClusterError:
            continue
        inertia = float(((embedding - centroids[labels]) ** 2).sum())
        if inertia < best_inertia - 1e-12:
            best, best_inertia = labels, inertia
    if best is None:
        return np.zeros(embedding.shape[0], dtype=np.int64)
    return best.astype(np.int64)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by decreasing size, ties by their first member; -1 stays -1."""
    ids = [c for c in np.unique(labels) if c >= 0]
    ids.sort(key=lambda c: (-int((labels == c).sum()), int(np.flatnonzero(labels == c)[0])))
    out = np.full_like(labels, -1)
    for new, old in enumerate(ids):
        out[labels == old] = new
    return out


def _mean_maps(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    means = np.stack([x[labels == c].mean(axis=0) for c in range(k)])
    return means / means.sum(axis=1, keepdims=True)


def spray(
    small_maps: np.ndarray,
    *,
    max_clusters: int = 8,
    n_neighbors: int | None = None,
    seed: int = 0,
    max_points: int = 500,
) -> SprayResult:
    """Cluster one class's coarse maps [n, g, g] (unit sum, NaN for dead maps); see the module docstring.

    With more than ``max_points`` live maps, a seeded subsample of ``max_points`` is clustered spectrally
    and every other live map joins the cluster whose mean map (over the subsample) is nearest in Euclidean
    distance; the cluster mean maps are then recomputed over all members. Fewer than MIN_POINTS live
    maps give one cluster.
    """
    arr = np.asarray(small_maps, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"small_maps must have shape [n, g, g], got {arr.shape}")
    if int(max_clusters) < 1:
        raise UsageError(f"max_clusters must be >= 1, got {max_clusters}")
    if int(max_points) < MIN_POINTS:
        raise UsageError(f"max_points must be >= {MIN_POINTS}, got {max_points}")
    n, gh, gw = arr.shape
    flat = arr.reshape(n, gh * gw)
    total = flat.sum(axis=1)
    live = np.flatnonzero(np.isfinite(flat).all(axis=1) & (total > 0))
    x = np.zeros_like(flat)
    x[live] = flat[live] / total[live, None]  # unit sum, even if the caller's maps drifted

    labels = np.full(n, -1, dtype=np.int64)
    if live.size == 0:
        return SprayResult(labels, 0, np.zeros(0), float("nan"), (), 0, live)

    if live.size > max_points:
        rng = np.random.default_rng(seed)
        clustered = np.sort(rng.choice(live, size=int(max_points), replace=False))
    else:
        clustered = live
    m = clustered.size
    if n_neighbors is None:
        nn = default_neighbors(m)
    else:
        if int(n_neighbors) < 1:
            raise UsageError(f"n_neighbors must be >= 1, got {n_neighbors}")
        nn = min(int(n_neighbors), max(m - 1, 1))

    eigenvalues, gap, sub_labels = np.zeros(0), float("nan"), np.zeros(m, dtype=np.int64)
    xs = x[clustered]
    if m >= MIN_POINTS and np.ptp(xs, axis=0).max() > 0:
        top = min(int(max_clusters), m - 1)
        eigenvalues, vectors = eigh(_laplacian(xs, nn), subset_by_index=[0, top])
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        gap = float(eigenvalues[1] - eigenvalues[0])
        for k in choose_k(eigenvalues, int(max_clusters)):
            u = vectors[:, :k]
            norms = np.linalg.norm(u, axis=1, keepdims=True)
            u = u / np.where(norms > 0, norms, 1.0)
            trial = _kmeans(u, k, seed)
            sizes = np.bincount(trial, minlength=k)
            if sizes.min() >= MIN_CLUSTER_SIZE:
                sub_labels, gap = trial, float(eigenvalues[k] - eigenvalues[k - 1])
                break
    sub_labels = _canonical(sub_labels)
    k = int(sub_labels.max()) + 1
    labels[clustered] = sub_labels

    if clustered.size < live.size:
        means = _mean_maps(xs, sub_labels, k)
        rest = np.setdiff1d(live, clustered)
        labels[rest] = np.argmin(_sq_distances(x[rest], means), axis=1)

    means = _mean_maps(x, labels, k) if k else np.zeros((0, gh * gw))
    clusters = tuple(
        SprayCluster(int((labels == c).sum()), np.flatnonzero(labels == c), means[c].reshape(gh, gw))
        for c in range(k)
    )
    return SprayResult(labels, k, eigenvalues, gap, clusters, nn, clustered)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def describe_clusters(
    result: SprayResult,
    small_maps: np.ndarray,
    *,
    box_masks_small: np.ndarray | None = None,
    corner_fraction: float = 0.125,
    border_fraction: float = 0.1,
    centre_fraction: float = 0.5,
) -> dict:
    """JSON-ready summary of ``spray``'s clusters: region shares and lifts of each mean map, and a flag.

    ``off_object`` rule: with object masks [n, g, g] (values in 0..1, e.g. ``atlas.downsample``-style
    coverage of the boxes on the grid), a map's off-object share is 1 - sum(map * mask), and a cluster is
    flagged when its mean off-object share exceeds the median over the rest of the class's maps by at least
    OFF_OBJECT_MARGIN (a map whose mask is empty has no object and is left out). Without masks, a cluster
    is flagged when its mean map puts less heat in the centre than a uniform map would (centre lift < 1).
    With masks a cluster is also flagged when its maps put less heat on the objects than a uniform map would
    (``object_lift`` = mean in-object share / mean object area < 1): this holds with one cluster too, so a
    class whose every map sits on a tag is shown, not only a subgroup.
    """
    arr = np.asarray(small_maps, dtype=np.float64)
    n = arr.shape[0]
    if result.labels.shape != (n,):
        raise ValueError(f"result has {result.labels.shape[0]} labels but {n} maps were given")
    off = None
    if box_masks_small is not None:
        masks = np.asarray(box_masks_small, dtype=np.float64)
        if masks.shape != arr.shape:
            raise ValueError(f"box_masks_small has shape {masks.shape}, expected {arr.shape}")
        if np.any(masks < 0) or np.any(masks > 1):
            raise ValueError("box_masks_small must hold values in [0, 1]")
        total = arr.sum(axis=(1, 2))
        area = masks.reshape(n, -1).mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            off = 1.0 - (arr * masks).sum(axis=(1, 2)) / total
        off[(masks.sum(axis=(1, 2)) <= 0) | (result.labels < 0)] = np.nan

    clusters = []
    for c, cluster in enumerate(result.clusters):
        shares = region_shares(cluster.mean_map, corner_fraction, border_fraction, centre_fraction)
        names = [key for key in shares if not key.startswith("area_")]
        lifts = {name: shares[name] / shares[f"area_{name}"] for name in names}
        entry = {
            "cluster": c,
            "size": cluster.size,
            "fraction": cluster.size / max(int((result.labels >= 0).sum()), 1),
            "members": [int(i) for i in cluster.members],
            "shares": {name: float(shares[name]) for name in names},
            "areas": {name: float(shares[f"area_{name}"]) for name in names},
            "lifts": {name: float(v) for name, v in lifts.items()},
            "mean_map": cluster.mean_map.astype(float).tolist(),
        }
        if off is not None:
            inside = result.labels == c
            mine, rest = off[inside], off[~inside & (result.labels >= 0)]
            mean_off = float(np.nanmean(mine)) if np.isfinite(mine).any() else float("nan")
            typical = float(np.nanmedian(rest)) if np.isfinite(rest).any() else float("nan")
            entry["off_object_share"] = _finite_or_none(mean_off)
            entry["typical_off_object_share"] = _finite_or_none(typical)
            flagged = math.isfinite(mean_off) and math.isfinite(typical) and mean_off - typical >= OFF_OBJECT_MARGIN
            usable = inside & np.isfinite(off)
            object_lift = float("nan")
            if usable.any() and area[usable].mean() > 0:
                object_lift = (1.0 - off[usable]).mean() / area[usable].mean()
            entry["object_lift"] = _finite_or_none(object_lift)
            flagged = flagged or (math.isfinite(object_lift) and object_lift < 1.0)
            entry["rule"] = "boxes"
        else:
            flagged = lifts["centre"] < 1.0
            entry["rule"] = "centre"
        entry["off_object"] = bool(flagged)
        clusters.append(entry)
    return {
        "k": int(result.k),
        "n_neighbors": int(result.n_neighbors),
        "eigenvalues": [float(v) for v in result.eigenvalues],
        "eigengap": _finite_or_none(result.eigengap),
        "n_clustered": int(result.clustered.size),
        "n_labelled": int((result.labels >= 0).sum()),
        "clusters": clusters,
    }
