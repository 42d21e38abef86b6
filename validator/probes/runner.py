"""Run the probes alongside the explainer's pass over the set: per-batch columns, then the set-level sanity check.

Counterfactual probes run on every audited image (three forward passes each: background-only, Mixed-Rand,
Mixed-Same). Faithfulness and sanity run on
seeded samples of the labelled rows (their columns are NaN elsewhere); the sanity images are kept from the
main pass (``sanity_samples`` images, 32 by default) so nothing is decoded twice.
"""

from __future__ import annotations

import time

import numpy as np

from validator.errors import CamgateError

COUNTERFACTUAL_COLUMNS = ("bg_only_correct", "bg_only_skill", "bg_only_confidence", "object_only_correct",
                          "bg_gap", "mixed_same_correct", "bg_reliance", "confidence_drop")
HOTSPOT_COLUMNS = ("hotspot_drop", "hotspot_flip", "hotspot_place")
FAITHFULNESS_COLUMNS = ("deletion_auc", "insertion_auc", "faithfulness_gap", "faithfulness_gain")
SANITY_COLUMN = "sanity_spearman"


class ProbeRunner:
    """``on_batch`` returns the probe columns of one batch; ``finish`` adds the sanity column and a summary."""

    def __init__(self, loaded, samples, probes, *, seed: int, method: str, layer: str | None, batch_size: int,
                 options: dict | None = None, preprocess=None):
        self.loaded, self.probes, self.seed = loaded, probes, int(seed)
        self.samples, self.preprocess = samples, preprocess
        self.method, self.layer, self.batch_size, self.options = method, layer, batch_size, dict(options or {})
        self.seconds = {"counterfactual": 0.0, "hotspot": 0.0, "faithfulness": 0.0, "sanity": 0.0}
        self.predictor = None
        if probes.counterfactual or probes.faithfulness_samples:
            from validator.explain.predict import Predictor

            self.predictor = Predictor(loaded, batch_size=max(2 * batch_size, 64))
        self.donors = self.same_donors = None
        if probes.counterfactual:
            from validator.probes.counterfactual import draw_donors, draw_same_donors

            # from the whole set, per sample: no Mixed-Rand or Mixed-Same result depends on the batch or the shard
            self.donors = draw_donors(samples, self.seed)
            self.same_donors = draw_same_donors(samples, self.seed)
        labelled = np.array([i for i, s in enumerate(samples) if s.class_id is not None], dtype=int)
        rng = np.random.default_rng(self.seed)
        self.faith_samples = set(rng.permutation(labelled)[: probes.faithfulness_samples].tolist())
        self.sanity_samples = set(rng.permutation(labelled)[: probes.sanity_samples].tolist())
        # a seeded subset of the whole set, like faithfulness: the cost stays flat in the set's size
        self.hotspot_samples = set(rng.permutation(labelled)[: probes.hotspot_samples].tolist())
        self._sanity_images: list[np.ndarray] = []
        self._sanity_classes: list[int] = []
        self._sanity_rows: list[int] = []
        self._sanity_chunks: list[int] = []  # each image's batch: the cascade explains the same batches
        self.sanity_result = None  # the cascade's per-sample result (a shard's merge combines them)
        self.sanity_error: str | None = None
        self._rows = 0  # table rows so far (skipped samples never become rows)
        self._batches = 0

    def on_batch(self, batch, class_ids: np.ndarray, labelled: np.ndarray, result) -> dict[str, np.ndarray]:
        n = len(batch.indices)
        columns = {name: np.full(n, np.nan) for name in (*COUNTERFACTUAL_COLUMNS, *HOTSPOT_COLUMNS,
                                                         *FAITHFULNESS_COLUMNS)}
        since = time.perf_counter()
        if self.probes.counterfactual:
            from validator.probes.counterfactual import probe_scores

            rand_donors, same_donors = self._donor_images(batch)
            scores = probe_scores(self.predictor, batch.images, batch.boxes, class_ids, self.loaded.num_classes,
                                  fill=self.probes.fill, original_probabilities=result.probabilities,
                                  multi_label=self.loaded.multi_label, masks=batch.masks,
                                  donors=rand_donors, same_donors=same_donors)
            for name in COUNTERFACTUAL_COLUMNS:
                columns[name] = np.where(labelled, scores[name], np.nan)
        now = time.perf_counter()
        self.seconds["counterfactual"] += now - since
        if self.probes.counterfactual and self.hotspot_samples:
            columns.update(self._hotspot(batch, class_ids, labelled, result))
        since, now = now, time.perf_counter()
        self.seconds["hotspot"] += now - since
        picked = np.array([i for i, index in enumerate(batch.indices)
                           if int(index) in self.faith_samples and labelled[i] and not result.dead[i]], dtype=int)
        if len(picked):
            from validator.probes.faithfulness import deletion_insertion

            # the random order is drawn from the run seed and the sample's index in the whole set, so a sample's
            # gain is the same whatever batch or shard it falls in; the explainer's probabilities save a pass
            scores = deletion_insertion(self.predictor, batch.images[picked], result.maps[picked], class_ids[picked],
                                        steps=self.probes.faithfulness_steps,
                                        baseline=self.probes.faithfulness_baseline, seed=self.seed,
                                        sample_ids=np.asarray(batch.indices)[picked],
                                        original_probabilities=result.probabilities[picked])
            for name in FAITHFULNESS_COLUMNS:
                columns[name][picked] = scores[name]
        self.seconds["faithfulness"] += time.perf_counter() - now
        for i, index in enumerate(batch.indices):
            if int(index) in self.sanity_samples and labelled[i]:
                self._sanity_images.append(batch.images[i])
                self._sanity_classes.append(int(class_ids[i]))
                self._sanity_rows.append(self._rows + i)
                self._sanity_chunks.append(self._chunk(batch))
        self._rows += n
        self._batches += 1
        return columns

    def _hotspot(self, batch, class_ids, labelled, result) -> dict[str, np.ndarray]:
        """Hot spot vs random region filled (validator.probes.hotspot), on the labelled rows with a live map."""
        from validator.probes.hotspot import hotspot_scores

        chosen = np.array([int(i) in self.hotspot_samples for i in batch.indices], dtype=bool)
        rows = np.flatnonzero(chosen & labelled & ~np.asarray(result.dead, dtype=bool))
        out = {name: np.full(len(batch.indices), np.nan) for name in HOTSPOT_COLUMNS}
        if not len(rows):
            return out
        # the random region is seeded by the run seed and the sample's index in the whole set: batch-independent
        scores = hotspot_scores(self.predictor, batch.images[rows], result.maps[rows], class_ids[rows],
                                [batch.boxes[i] for i in rows], fill=self.probes.fill, seed=self.seed,
                                sample_ids=np.asarray(batch.indices)[rows],
                                original_probabilities=result.probabilities[rows],
                                multi_label=self.loaded.multi_label,
                                masks=None if batch.masks is None else [batch.masks[i] for i in rows])
        for name in HOTSPOT_COLUMNS:
            out[name][rows] = scores[name]
        return out

    def _donor_images(self, batch) -> tuple[tuple, tuple]:
        """The batch's Mixed-Rand and Mixed-Same donors, each (donor_images, donor_boxes, has_donor), decoded
        like the batch in one pass (an image both draw is decoded once). A donor's background-only image has
        its boxes filled, so its masks are not read."""
        from validator.data.pipeline import load_samples

        rows = np.asarray(batch.indices, dtype=np.int64)
        drawn = [self.donors[rows], self.same_donors[rows]]
        wanted = np.concatenate([d[d >= 0] for d in drawn])
        picked, picked_boxes, ok = load_samples(
            [self.samples[j] for j in wanted], input_size=self.loaded.input_size,
            channels=self.loaded.input_channels, preprocess=self.preprocess)
        out, offset = [], 0
        for donor in drawn:
            where = np.flatnonzero(donor >= 0)
            images = np.zeros_like(batch.images)
            boxes = [np.zeros((0, 4))] * len(donor)
            has = np.zeros(len(donor), bool)
            images[where] = picked[offset:offset + len(where)]
            for k, i in enumerate(where):
                boxes[i] = picked_boxes[offset + k]
            # a donor that cannot be read leaves its recipient unprobed (NaN), never another donor
            has[where] = ok[offset:offset + len(where)]
            out.append((images, boxes, has))
            offset += len(where)
        return out[0], out[1]

    def _chunk(self, batch) -> int:
        # a seed per chunk of the whole set (not per batch seen): a shard draws what a single process draws
        return int(batch.chunk) if batch.chunk is not None else self._batches

    def run_sanity(self) -> None:
        """The cascade on the kept images (``sanity_result``, or ``sanity_error`` when the model cannot be cloned)."""
        self.seconds["sanity"] = 0.0
        if not self._sanity_rows:
            return
        since = time.perf_counter()
        try:
            from validator.probes.sanity import cascade

            self.sanity_result = cascade(
                self.loaded.model, np.stack(self._sanity_images), np.array(self._sanity_classes),
                method=self.method, layer=self.layer, stages=self.probes.sanity_stages, seed=self.seed,
                batch_size=self.batch_size, options=self.options, groups=np.array(self._sanity_chunks))
        except CamgateError as exc:  # e.g. a model that cannot be cloned: the check is not judged, and says why
            self.sanity_error = str(exc)
        self.seconds["sanity"] = time.perf_counter() - since
        self._sanity_images.clear()

    def sanity_state(self) -> dict:
        """What a shard keeps for the merge: the per-sample cascade result, its table rows, the summary config."""
        self.run_sanity()
        return {"rows": np.array(self._sanity_rows, dtype=np.int64), "result": self.sanity_result,
                "error": self.sanity_error, "summary": self.base_summary()}

    def base_summary(self) -> dict:
        from validator.probes.faithfulness import forward_passes as faithfulness_passes

        return {
            "counterfactual": {"enabled": bool(self.probes.counterfactual), "fill": self.probes.fill,
                               "forward_passes_per_image": 3 if self.probes.counterfactual else 0},
            "hotspot": {"enabled": bool(self.probes.counterfactual), "samples": len(self.hotspot_samples),
                        "forward_passes_per_image": 2 if self.probes.counterfactual else 0},
            "faithfulness": {"samples": len(self.faith_samples), "steps": self.probes.faithfulness_steps,
                             "baseline": self.probes.faithfulness_baseline,
                             "forward_passes_per_image": faithfulness_passes(self.probes.faithfulness_steps)},
            "sanity": {"samples": len(self._sanity_rows)},
            "seconds": self.seconds,
        }

    def finish(self, n_rows: int) -> tuple[np.ndarray, dict]:
        """The sanity column for the whole table (NaN off the sample) and the probes' summary for the verdict."""
        self.run_sanity()
        return sanity_column(n_rows, np.array(self._sanity_rows, dtype=np.int64), self.sanity_result,
                             self.sanity_error, self.base_summary())


def sanity_column(n_rows: int, rows: np.ndarray, result, error: str | None, summary: dict) -> tuple[np.ndarray, dict]:
    """The sanity column (NaN off the sampled rows) and the probes' summary with the cascade's statistics."""
    column = np.full(n_rows, np.nan)
    summary = {**summary, "sanity": dict(summary["sanity"])}
    if error is not None:
        summary["sanity"]["error"] = error
    elif result is not None:
        column[rows] = result.per_sample_final
        summary["sanity"].update(result.summary())
    return column, summary
