"""The names of the heatmap methods: the one list the policy schema, the CLI and the engine share.

A leaf without TensorFlow, so validating a policy or building the CLI does not import it.
"""

METHOD_NAMES = ("gradcam", "gradcampp", "hirescam", "cam", "layercam", "scorecam", "saliency", "smoothgrad",
                "integrated_gradients", "occlusion", "augmented_gradcam")

# Each method's options and their defaults (policy `explainer.options`, `Explainer(options=...)`).
METHOD_OPTIONS: dict[str, dict] = {
    "scorecam": {"max_channels": 64},
    "smoothgrad": {"samples": 25, "noise": 0.15},
    "integrated_gradients": {"steps": 32, "baseline": "black"},
    "occlusion": {"patch": 0.125, "stride": 0.0625},
    # tv and l2 are per view (the solver uses tv * views, l2 * views: DESIGN 2's lambda_TV = 0.002 L, mu = 1e-4 L);
    # translation is a fraction of the side (0.134 = 30 px at 224 px), rotation in radians. 16 views: measured
    # as good as 32 on the small-object shapes control at half the cost (benchmarks/bench_augmented.py).
    "augmented_gradcam": {"views": 16, "rotation": 0.5, "translation": 0.134, "steps": 200, "learning_rate": 1e-3,
                          "tv": 0.002, "l2": 1e-4, "upscale": 4, "fill": "reflect"},
}

# The values a string option may take (checked by the policy schema and by the method itself).
OPTION_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "integrated_gradients": {"baseline": ("black", "blur")},
    "augmented_gradcam": {"fill": ("reflect", "zeros")},
}

# The smallest value of an integer option (0 where not listed).
OPTION_MINIMUM: dict[str, dict[str, int]] = {
    "smoothgrad": {"samples": 1},
    "integrated_gradients": {"steps": 1},
    "augmented_gradcam": {"views": 1, "upscale": 1},
}

# Options that may be null, and what null means.
NULLABLE_OPTIONS: dict[str, dict[str, str]] = {
    "scorecam": {"max_channels": "no cap: every channel of the target layer"},
}

# Number options that must be > 0 (not merely >= 0), and those that are a fraction of the image side (<= 1).
POSITIVE_OPTIONS: dict[str, tuple[str, ...]] = {
    "occlusion": ("patch", "stride"),
    "augmented_gradcam": ("learning_rate",),
}
FRACTION_OPTIONS: dict[str, tuple[str, ...]] = {"occlusion": ("patch", "stride")}
