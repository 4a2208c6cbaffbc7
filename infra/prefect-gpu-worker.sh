#!/usr/bin/env bash
# On a GPU machine: a process worker for the `gpu-pool` work pool, which runs the `gpu-shards` deployment
# (flows/pipeline.py:collect_shard_flow: the collection shards of vllm pool entries) and the `gpu-distill`
# deployment (flows/pipeline.py:distill_flow: LoRA distillation with TRL + PEFT).
#
#   PREFECT_API_URL=http://<server>:4200/api infra/prefect-gpu-worker.sh
#
# Needs the project installed with the gpu extra (pip install -e '.[gpu]') and the same params.yaml and data
# folder as the pipeline (a shared filesystem: shards write their parts under paths.collect_parts). Set
# collect.scale_out.gpu_deployment: fusion-collect-shard/gpu-shards in params.yaml to route vllm shards here, and
# distill.gpu_deployment: fusion-distill/gpu-distill (with distill.train.device: cuda, dtype: bfloat16) for training.
# MLflow: set MLFLOW_TRACKING_URI to the pipeline's tracking server (the distilled model is registered there).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" FUSION_HOME="$PWD"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
: "${PREFECT_API_URL:?set PREFECT_API_URL to the Prefect server the pipeline uses}"

prefect work-pool create gpu-pool --type process 2>/dev/null || true
prefect --no-prompt deploy --name gpu-shards
prefect --no-prompt deploy --name gpu-distill
prefect worker start --pool gpu-pool
