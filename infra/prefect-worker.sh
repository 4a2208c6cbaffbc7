#!/usr/bin/env bash
# Start a local Prefect server and a process worker for the `cpu-pool` work pool, then register the
# `nightly-retrain` deployment from prefect.yaml. Everything binds to 127.0.0.1.
#
#   infra/prefect-worker.sh            # foreground; Ctrl-C stops the worker and the server
#
# GPU workers: create a second pool (e.g. `gpu-pool`) on the GPU machine with the same commands and point
# deployments that need vLLM at it (`work_pool.name` in prefect.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}" FUSION_HOME="$PWD"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:4200/api}"

prefect server start --host 127.0.0.1 --port 4200 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1 && break; sleep 1; done

prefect work-pool create cpu-pool --type process 2>/dev/null || true
prefect --no-prompt deploy --name nightly-retrain
prefect worker start --pool cpu-pool
