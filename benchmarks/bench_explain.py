"""Heatmap throughput: camgate against the floor, tf-keras-vis and the seed thesis's per-image loop.

    .venv/bin/python benchmarks/bench_explain.py                 # full run (< 10 min on a 2-core CPU)
    .venv/bin/python benchmarks/bench_explain.py --quick         # a smoke run (~2.5 min)
    .venv/bin/python benchmarks/bench_explain.py --models small_cnn --batch-sizes 32,128 --json out.json
    .venv/bin/python benchmarks/bench_explain.py --quick --methods all --no-peers   # every method vs the floor

Contenders, on the same model, target layer and batch (images/s, median of interleaved repetitions):

- ``floor``: a Functional sub-model (inputs -> [target layer output, logits]) run in a ``tf.function`` under a
  GradientTape, plus ``tape.gradient`` of the summed target logits w.r.t. the target layer output; nothing
  else (no weighting, no upsampling, no host copy of the maps: it returns one scalar).
- ``camgate <method>``: ``validator.explain.Explainer`` built once (default options), ``explain(images, class_ids)`` per batch
  (public API: weighting, ReLU, bilinear upsampling to input size, maps copied to numpy, dead-map flags).
- ``tf-keras-vis``: ``Gradcam(model, ReplaceToLinear())`` called per batch with the same layer
  (``normalize_cam=False``; it upsamples with scipy ``zoom``), if the package imports.
- ``per-image loop``: the seed thesis's Grad-CAM (ch. 4.3) ported to Keras 3: per image one eager gradient
  call (the thesis built a fresh ``K.gradients``/``K.function`` graph per image), numpy channel weighting,
  ``cv2.resize``. ``per-image compiled`` is the same loop with the gradient call in a ``tf.function`` traced
  once: what batching alone buys over a well-compiled loop.

Ratios are paired: the median over repetitions of camgate/contender measured back to back in one round.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from _common import describe_machine, interleaved, machine, median, paired_ratio, table, write_json

METHODS = ("gradcam", "gradcampp", "hirescam", "cam")
MODELS = ("resnet50", "small_cnn")
# Per model: images per timed measurement (at least one batch) and repetitions per batch size.
# The per-image loops do not batch, so they time ``loop_images`` images at every batch size.
PLAN = {
    "resnet50": {"min_images": 16, "loop_images": 8, "repeats": {1: 3, 8: 3, 32: 5}, "default_repeats": 3},
    "small_cnn": {"min_images": 256, "loop_images": 64, "repeats": {}, "default_repeats": 5},
}
QUICK = {
    "resnet50": {"min_images": 8, "loop_images": 4, "repeats": {}, "default_repeats": 2},
    "small_cnn": {"min_images": 128, "loop_images": 64, "repeats": {}, "default_repeats": 3},
}


def build_model(name: str):
    from validator._tf import keras

    if name == "resnet50":
        # Random weights are fine for timing; the default softmax head is bypassed by camgate (logits).
        return keras.applications.ResNet50(weights=None), "conv5_block3_out"
    if name == "small_cnn":
        from validator.datasets.controls import build_small_cnn

        return build_small_cnn(image_size=64, n_classes=2), "last_conv"
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def logits_submodel(model, layer_name: str):
    """(sub-model: inputs -> [layer output, pre-head features or logits], logits function).

    A Dense head with a soft activation is split off so that the score is the logit, as camgate explains it;
    the split costs one matmul, the same as the head itself."""
    from validator._tf import keras, tf

    layer = model.get_layer(layer_name)
    head = model.layers[-1]
    soft = isinstance(head, keras.layers.Dense) and head.activation is not keras.activations.linear
    if soft:
        sub = keras.Model(model.inputs, [layer.output, head.input])

        def logits(features):
            return tf.matmul(features, head.kernel) + head.bias

    else:
        sub = keras.Model(model.inputs, [layer.output, model.output])

        def logits(features):
            return features

    return sub, logits


def make_floor(model, layer_name, height, width):
    from validator._tf import tf

    sub, logits = logits_submodel(model, layer_name)

    @tf.function(
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32), tf.TensorSpec([None], tf.int32)],
        reduce_retracing=True,
    )
    def floor(images, class_ids):
        # The tape records the forward through the watched weights; tape.gradient then builds only the
        # path from the score back to the layer output (graph mode prunes the rest).
        with tf.GradientTape() as tape:
            activations, features = sub(images, training=False)
            score = tf.reduce_sum(tf.gather(logits(features), class_ids, axis=1, batch_dims=1))
        gradients = tape.gradient(score, activations)
        # One scalar back to the host (forces completion, copies nothing). It must depend on the forward
        # pass too: d(score)/d(layer) through a GAP -> Dense head does not, and with static shapes the graph
        # optimiser would prune the whole forward pass away.
        return tf.reduce_sum(gradients) + score

    return lambda images, class_ids: floor(images, class_ids).numpy()


def make_per_image_loop(model, layer_name, height, width, compiled: bool):
    """The thesis's Grad-CAM loop (seed 001, ch. 4.3) in Keras 3: per image one gradient call, numpy channel
    weighting, ``cv2.resize``.

    The thesis built its gradient graph (``K.gradients`` + ``K.function``) anew for every image; the direct
    Keras 3 port is an eager ``GradientTape`` per image (``compiled=False``, the reference for the goal).
    ``compiled=True`` is a stronger variant (one ``tf.function`` on a batch of 1, traced once) that isolates
    what batching alone buys. The gradient model is built once in both (the thesis even reloaded the model)."""
    import cv2
    import numpy as np

    from validator._tf import tf

    sub, logits = logits_submodel(model, layer_name)

    def iterate(image, class_id):  # the thesis's iterate([x]) -> [pooled_grads, conv_output[0]]
        with tf.GradientTape() as tape:
            conv_output, features = sub(image, training=False)
            output = logits(features)[0, class_id]
        grads = tape.gradient(output, conv_output)
        pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
        return pooled_grads, conv_output[0]

    if compiled:
        iterate = tf.function(
            iterate,
            input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32), tf.TensorSpec([], tf.int32)],
        )

    def run(images, class_ids):
        maps = []
        for image, class_id in zip(images, class_ids, strict=True):
            pooled_grads_value, conv_layer_output_value = (
                t.numpy() for t in iterate(tf.constant(image[None]), tf.constant(class_id, tf.int32))
            )
            conv_layer_output_value *= pooled_grads_value  # the thesis loops over channels; same result
            heatmap = np.maximum(np.mean(conv_layer_output_value, axis=-1), 0)
            maps.append(cv2.resize(heatmap, (width, height)))
        return np.stack(maps)

    return run


def make_tf_keras_vis(model, layer_name):
    """(callable, None) or (None, the import/build error as text)."""
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore

        gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    except Exception as exc:  # noqa: BLE001 - any failure to import or build is reported, not fatal
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]

    def run(images, class_ids):
        return gradcam(
            CategoricalScore([int(c) for c in class_ids]),
            images,
            penultimate_layer=layer_name,
            seek_penultimate_conv_layer=False,
            normalize_cam=False,
        )

    return run, None


def bench_model(name: str, batch_sizes: list[int], plan: dict, methods, peers: bool, log) -> dict:
    import numpy as np

    from validator._tf import tf
    from validator.explain import Explainer, heatmaps

    model, layer_name = build_model(name)
    height, width = (int(v) for v in model.input_shape[1:3])
    n_classes = int(model.output_shape[-1])
    started = time.perf_counter()
    explainers = {}
    for m in methods:  # each at its default options (validator.explain.names.METHOD_OPTIONS)
        built = time.perf_counter()
        explainers[m] = Explainer(model, method=m, layer=layer_name, batch_size=max(batch_sizes))
        log(f"[{name}] {m}: built in {time.perf_counter() - built:.1f}s; cost {explainers[m].method.cost}")
    floor = make_floor(model, layer_name, height, width)
    loop = make_per_image_loop(model, layer_name, height, width, compiled=False) if peers else None
    loop_compiled = make_per_image_loop(model, layer_name, height, width, compiled=True) if peers else None
    tkv, tkv_error = make_tf_keras_vis(model, layer_name) if peers else (None, "not run (--no-peers)")
    log(f"[{name}] built contenders in {time.perf_counter() - started:.1f}s"
        + (f"; tf-keras-vis unavailable: {tkv_error}" if tkv is None else ""))

    rng = np.random.default_rng(0)
    low, high = (0.0, 255.0) if name == "small_cnn" else (-1.0, 1.0)  # what each model's input expects
    results = {"model": name, "layer": layer_name, "input": [height, width], "tf_keras_vis_error": tkv_error,
               "options": {m: e.options for m, e in explainers.items()},
               "costs": {m: e.method.cost for m, e in explainers.items()}, "batch_sizes": {}}
    for bs in batch_sizes:
        images = rng.uniform(low, high, (bs, height, width, 3)).astype(np.float32)
        class_ids = rng.integers(0, n_classes, bs).astype(np.int32)
        images_t, class_ids_t = tf.constant(images), tf.constant(class_ids)
        iters = max(1, math.ceil(plan["min_images"] / bs))
        repeats = plan["repeats"].get(bs, plan["default_repeats"])

        def unit(fn, *args, _iters=iters, _bs=bs):
            def call():
                for _ in range(_iters):
                    fn(*args)
                return _iters * _bs

            return call

        contenders = {"floor": unit(floor, images_t, class_ids_t)}
        for m, explainer in explainers.items():
            contenders[f"camgate {m}"] = unit(explainer.explain, images, class_ids)
        # the function API: its Explainer is cached on the model, so it should run at the class's speed
        contenders["heatmaps()"] = unit(
            lambda x, c, _bs=bs: heatmaps(model, x, c, layer=layer_name, batch_size=_bs), images,
            class_ids)
        if tkv is not None:
            contenders["tf-keras-vis"] = unit(tkv, images, class_ids)
        warmups = {}
        if loop is not None:
            k = plan["loop_images"]
            loop_images, loop_ids = np.resize(images, (k, *images.shape[1:])), np.resize(class_ids, k)
            for label, fn in (("per-image loop", loop), ("per-image compiled", loop_compiled)):
                contenders[label] = unit(fn, loop_images, loop_ids, _iters=1, _bs=k)
                warmups[label] = lambda fn=fn, x=loop_images[:1], c=loop_ids[:1]: fn(x, c)
        started = time.perf_counter()
        rates = interleaved(contenders, repeats=repeats, warmups=warmups)
        gc = rates.get("camgate gradcam")
        entry = {
            "repeats": repeats,
            "images_per_measurement": iters * bs,
            "images_per_s": {k: median(v) for k, v in rates.items()},
            "samples": rates,
            "ratios": {},
        }
        if gc is not None:
            for other in ("floor", "heatmaps()", "tf-keras-vis", "per-image loop", "per-image compiled"):
                if other in rates:
                    entry["ratios"][f"gradcam/{other}"] = paired_ratio(gc, rates[other])
        for m in methods:
            entry["ratios"][f"{m}/floor"] = paired_ratio(rates[f"camgate {m}"], rates["floor"])
        entry["ratios"]["heatmaps()/floor"] = paired_ratio(rates["heatmaps()"], rates["floor"])
        results["batch_sizes"][bs] = entry
        log(f"[{name}] batch {bs}: {repeats} x {iters * bs} images per contender in "
            f"{time.perf_counter() - started:.1f}s")
    return results


def render(all_results: list[dict], methods) -> str:
    names = ["floor", *(f"camgate {m}" for m in methods), "heatmaps()", "tf-keras-vis", "per-image loop",
             "per-image compiled"]
    rows = []
    for res in all_results:
        for bs, entry in res["batch_sizes"].items():
            ips = entry["images_per_s"]
            rows.append([res["model"], bs, *(ips.get(n, float("nan")) for n in names)])
    out = ["Throughput, images/s (median of interleaved repetitions):", "",
           table(["model", "batch", *names], rows), ""]
    ratio_keys = ["gradcam/floor", "heatmaps()/floor", "gradcam/heatmaps()", "gradcam/tf-keras-vis", "gradcam/per-image loop", "gradcam/per-image compiled",
                  *(f"{m}/floor" for m in methods if m != "gradcam")]
    rows = []
    for res in all_results:
        for bs, entry in res["batch_sizes"].items():
            rows.append([res["model"], bs, *(entry["ratios"].get(k, float("nan")) for k in ratio_keys)])
    out += ["Ratios (camgate / contender; median of per-round paired ratios):", "",
            table(["model", "batch", *ratio_keys], rows), ""]
    rows = []
    for res in all_results:
        for bs, entry in res["batch_sizes"].items():
            floor = entry["images_per_s"].get("floor", float("nan"))
            rows.append([res["model"], bs, "floor (1 forward + 1 backward to the layer)", floor, "1", ""])
            for m in methods:
                options = res.get("options", {}).get(m) or {}
                ratio = entry["ratios"].get(f"{m}/floor", float("nan"))
                rows.append([res["model"], bs, m, entry["images_per_s"].get(f"camgate {m}", float("nan")),
                             f"{ratio:.3g}" if ratio == ratio else "-",  # 3 significant digits: 0.0027, not 0.00
                             ", ".join(f"{k} {v}" for k, v in options.items()) or "-"])
    out += ["Every method beside the floor (images/s; x floor = median of paired ratios; default options):", "",
            table(["model", "batch", "method", "images/s", "x floor", "options"], rows, aligns="lrlrrl"), ""]
    for res in all_results:
        if res["tf_keras_vis_error"]:
            out.append(f"tf-keras-vis on {res['model']}: {res['tf_keras_vis_error']}")
    return "\n".join(out)


def goals(all_results: list[dict]) -> list[str]:
    lines = []
    for res in all_results:
        if res["model"] != "resnet50" or 32 not in res["batch_sizes"]:
            continue
        r = res["batch_sizes"][32]["ratios"]
        for key, target in (("gradcam/floor", 0.85), ("gradcam/tf-keras-vis", 3.0), ("gradcam/per-image loop", 9.0)):
            if key in r:
                ok = "met" if r[key] >= target else "MISSED"
                lines.append(f"goal ResNet50 batch 32 {key} >= {target}: {r[key]:.2f} ({ok})")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repetitions (a smoke run)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated (default 1,8,32)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated from {', '.join(MODELS)}")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="camgate methods to time, comma-separated, or 'all' (every method, default options)")
    parser.add_argument("--repeats", type=int, help="repetitions per batch size (overrides the plan)")
    parser.add_argument("--no-peers", action="store_true", help="skip tf-keras-vis and the per-image loop")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement as JSON")
    args = parser.parse_args(argv)

    batch_sizes = [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    models = [v.strip() for v in args.models.split(",") if v.strip()]
    methods = [v.strip() for v in args.methods.split(",") if v.strip()]
    if methods == ["all"]:
        from validator.explain.names import METHOD_NAMES

        methods = list(METHOD_NAMES)
    if "gradcam" not in methods:
        methods.insert(0, "gradcam")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    info = machine()
    started = time.perf_counter()
    all_results = []
    for name in models:
        plan = dict((QUICK if args.quick else PLAN)[name])
        if args.repeats:
            plan = {**plan, "repeats": {}, "default_repeats": args.repeats}
        all_results.append(bench_model(name, batch_sizes, plan, methods, not args.no_peers, log))
    elapsed = time.perf_counter() - started

    command = "python benchmarks/bench_explain.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    print(f"camgate heatmap throughput — {describe_machine(info)}")
    print(f"command: {command.strip()}   (ran {elapsed:.0f}s)\n")
    print(render(all_results, methods))
    for line in goals(all_results):
        print(line)
    if args.json:
        write_json(args.json, {"machine": info, "command": command, "seconds": elapsed, "results": all_results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
