"""Serve the `nightly-retrain` deployment from this process (no work pool needed).

    python -m flows.serve [--params params.yaml] [--cron "0 2 * * *"]

It registers the deployment with the Prefect API (a local ephemeral one by default, or PREFECT_API_URL) and
runs the flow on the schedule until stopped (Ctrl-C).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.pipeline import fusion_pipeline

NIGHTLY_CRON = "0 2 * * *"


DEPLOYMENT = "nightly-retrain"
TAGS = ["fusion", "nightly"]


def nightly_deployment(params: str | Path = "params.yaml", cron: str = NIGHTLY_CRON):
    """The ``nightly-retrain`` deployment of the pipeline flow on ``cron``, with the absolute parameters path."""
    return fusion_pipeline.to_deployment(name=DEPLOYMENT, cron=cron,
                                         parameters={"params_path": str(Path(params).resolve())}, tags=TAGS)


def main() -> None:  # pragma: no cover - a long-running server
    from prefect import serve

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--cron", default=NIGHTLY_CRON)
    args = ap.parse_args()
    serve(nightly_deployment(args.params, args.cron))


if __name__ == "__main__":  # pragma: no cover
    main()
