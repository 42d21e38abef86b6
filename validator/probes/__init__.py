"""Checks that do not trust one heatmap: counterfactual probes, faithfulness, explainer sanity.

Each takes the model through a forward (or explain) callable and returns per-sample columns for the table."""
