"""The names of the heatmap methods: the one list the policy schema, the CLI and the engine share.

A leaf without TensorFlow, so validating a policy or building the CLI does not import it.
"""

METHOD_NAMES = ("gradcam", "gradcampp", "hirescam", "cam", "layercam", "scorecam", "saliency", "smoothgrad",
                "integrated_gradients", "occlusion", "augmented_gradcam")
