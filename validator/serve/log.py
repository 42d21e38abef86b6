"""Structured logs: one JSON object per line on stderr (``{"ts", "level", "event", ...}``)."""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER = logging.getLogger("camgate.serve")


def setup(level: int = logging.INFO) -> None:
    if not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.propagate = False
    LOGGER.setLevel(level)


def event(name: str, level: int = logging.INFO, **fields) -> None:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
              "level": logging.getLevelName(level), "event": name, **fields}
    LOGGER.log(level, json.dumps(record, default=str))
