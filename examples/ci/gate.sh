#!/usr/bin/env bash
# Gate a freshly trained model in any CI: the exit code decides, the report folder is the evidence.
#   0 PASS (deploy), 1 FAIL (block), 2 bad policy/data/usage (fix the pipeline), 3 runtime error (retry/investigate)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
python "$here/train.py" --out "$build" --kind "${KIND:-clean}"
if [ -n "${MLFLOW_TRACKING_URI:-}" ]; then tracking=(--tracking-uri "$MLFLOW_TRACKING_URI"); else tracking=(--no-mlflow); fi
camgate audit "$build/model.keras" --data "$build/heldout/annotations.json" --out "$build/camgate-report" "${tracking[@]}"
code=$?
echo "gate exit code: $code (report: $build/camgate-report/report.html, JUnit: $build/camgate-report/junit.xml)"
exit $code
