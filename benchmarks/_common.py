"""Shared helpers of the benchmarks: quiet TensorFlow, machine description, interleaved timing, tables.

The machines these run on are noisy (shared cores), so absolute seconds are not comparable between runs.
Every benchmark therefore times its contenders side by side in one run, interleaving the repetitions
(round robin, the starting contender rotating each round), and reports medians and paired ratios.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    """CPU model and count, accelerators TensorFlow sees, library versions, oneDNN setting.

    TensorFlow is imported through ``validator._tf``, as camgate does: it sets ``TF_ENABLE_ONEDNN_OPTS=0``
    unless the variable is already set, and the setting only counts before the first TF import."""
    from validator._tf import keras, tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpus": gpus,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "date": time.strftime("%Y-%m-%d"),
    }


def describe_machine(info: dict) -> str:
    device = ", ".join(info["gpus"]) if info["gpus"] else "no GPU (TensorFlow places ops on a GPU when one is visible)"
    return (
        f"{info['date']} | {info['cpu']} x {info['cores']} cores | {device} | "
        f"Python {info['python']}, TF {info['tensorflow']}, Keras {info['keras']}, "
        f"TF_ENABLE_ONEDNN_OPTS={info['onednn_opts']}"
    )


def interleaved(contenders: dict[str, Callable[[], int]], repeats: int,
                warmups: dict[str, Callable[[], object]] | None = None) -> dict[str, list[float]]:
    """Time each contender ``repeats`` times, round robin; return items/s per repetition.

    A contender is a callable doing one unit of work and returning how many items (images) it processed.
    Each is warmed up first, untimed (tracing, allocator growth): ``warmups[name]`` if given (a cheaper
    call), else one call of the contender itself. The order rotates every round so that no contender always
    runs right after the same neighbour.
    """
    names = list(contenders)
    warmups = warmups or {}
    for name in names:
        warmups.get(name, contenders[name])()
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            items = contenders[name]()
            rates[name].append(items / (time.perf_counter() - start))
    return rates


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repetitions of a[i] / b[i]: repetition i of both ran back to back, so load drifts cancel."""
    return median([x / y for x, y in zip(a, b, strict=True) if y > 0])


def table(headers: list[str], rows: list[list], aligns: str | None = None) -> str:
    """A Markdown table (reads fine in a terminal too)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    aligns = aligns or "l" + "r" * (len(headers) - 1)

    def line(values):
        return "| " + " | ".join(
            v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, aligns, strict=True)
        ) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, aligns, strict=True)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


def vm_hwm_kib() -> float:
    """Peak resident set of this process (VmHWM), KiB. Unlike ru_maxrss it starts afresh at exec: Linux
    carries the parent's peak over into the child's ru_maxrss, so a big parent would mask the child's."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
