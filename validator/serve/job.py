"""One audit, in its own process: ``python -m validator.serve.job SPEC.json`` (written by the worker).

The gate run is recorded in MLflow (run id and link in ``verdict.json``) but the model version is not tagged
here (``TrackingOptions(tag_version=False)``): the service writes the version's tags and the alias after it has
read the verdict, so a process killed mid-audit leaves no tag behind. Exit code: the verdict's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RESULT = "serve-result.json"


def main(spec_path: str) -> int:
    from validator import audit
    from validator.tracking import TrackingOptions

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    tracking = TrackingOptions(uri=spec["tracking_uri"], experiment=spec["experiment"], run_name=spec["run_name"],
                               tag_version=False, extra_tags={"camgate.serve_job": spec["job"]})
    verdict = audit(spec["model"], spec["data"], policy=spec.get("policy"), out=spec["out"],
                    baseline=spec.get("baseline"), tracking=tracking, **spec.get("options", {}))
    data = verdict.to_dict()
    data["tracking"] = dict(verdict.tracking)  # verdict.json is written before the MLflow record
    result = Path(spec["out"]) / RESULT
    tmp = result.with_name(f".{RESULT}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, result)  # atomic: the service reads a whole result or none
    return verdict.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
