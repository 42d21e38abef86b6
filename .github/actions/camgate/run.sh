#!/usr/bin/env bash
# The action's gate step, runnable anywhere: the same command and outputs locally as in GitHub Actions.
# Inputs come from CAMGATE_* variables; the summary and annotations are written by camgate itself
# when GITHUB_ACTIONS=true ($GITHUB_STEP_SUMMARY).
set -uo pipefail
: "${CAMGATE_MODEL:?set CAMGATE_MODEL}" "${CAMGATE_DATA:?set CAMGATE_DATA}"
out="${CAMGATE_OUT:-camgate-report}"
args=(audit "$CAMGATE_MODEL" --data "$CAMGATE_DATA" --out "$out" --fail-on "${CAMGATE_FAIL_ON:-fail}")
if [ -n "${CAMGATE_POLICY:-}" ]; then args+=(--policy "$CAMGATE_POLICY"); fi
if [ -n "${CAMGATE_TRACKING_URI:-}" ]; then args+=(--tracking-uri "$CAMGATE_TRACKING_URI"); else args+=(--no-mlflow); fi
# shellcheck disable=SC2206  # extra args are split on spaces on purpose
if [ -n "${CAMGATE_EXTRA_ARGS:-}" ]; then args+=(${CAMGATE_EXTRA_ARGS}); fi

"${CAMGATE_BIN:-camgate}" "${args[@]}"
code=$?
status=ERROR
for marker in BLESSED NOT_BLESSED; do
  if [ -f "$out/$marker" ]; then status=$(head -n 1 "$out/$marker"); fi
done
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  { echo "status=$status"; echo "exit-code=$code"; } >> "$GITHUB_OUTPUT"
fi
echo "camgate gate: $status (exit $code); report in $out/"
exit "$code"
