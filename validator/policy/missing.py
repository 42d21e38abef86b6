"""Why a check was left with too few values: a sentence for metrics whose NaN means more than "not sampled".

A probe's column is NaN off its sample, and for some metrics also where the probe ran but could not answer
(``MetricInfo.undefined``: faithfulness_gain where the model does not react to deletion). "Only 0 samples
with a defined faithfulness_gain" is true but does not say which; this counts the rows the probe ran on and
the ones it could not judge.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from validator.metrics import MetricInfo


def undefined_sentence(table: Mapping[str, np.ndarray], info: MetricInfo, rows: np.ndarray) -> str | None:
    """Why ``info.name`` is NaN on the slice's ``rows`` (bool mask), or None when the metric gives no reason."""
    if info.undefined is None or info.undefined[0] not in table or info.name not in table:
        return None
    column, reason = info.undefined
    ran = rows & np.isfinite(np.asarray(table[column], dtype=float))
    if not ran.any():
        return f"the probe ran on no row here ({column} is undefined on every one: switched off, no live map, " \
               f"or off its sample)"
    blank = int(np.sum(ran & ~np.isfinite(np.asarray(table[info.name], dtype=float))))
    return f"{blank} of the {int(ran.sum())} rows the probe ran on have no {info.name}: {reason}"
