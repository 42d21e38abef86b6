"""The names of the heatmap methods: the one list the policy schema, the CLI and the engine share.

A leaf without TensorFlow, so validating a policy or building the CLI does not import it.
"""

METHOD_NAMES = ("gradcam", "gradcampp", "hirescam", "cam", "layercam", "scorecam", "saliency", "smoothgrad",
                "integrated_gradients", "occlusion")

# Each method's options and their defaults (policy `explainer.options`, `Explainer(options=...)`).
METHOD_OPTIONS: dict[str, dict] = {
    "scorecam": {"max_channels": 64},
    "smoothgrad": {"samples": 25, "noise": 0.15},
    "integrated_gradients": {"steps": 32, "baseline": "black"},
    "occlusion": {"patch": 0.125, "stride": 0.0625},
}
