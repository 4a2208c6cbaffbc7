"""Stage ``distill``: LoRA SFT (TRL + PEFT) of the base model on the distilled set, and on the label-only set as the
baseline; adapters under ``paths.distill_dir`` (a DVC output), checkpoints and merged models under
``paths.distill_work`` (a killed run resumes from its last checkpoint). The distilled model is logged with MLflow's
transformers flavour (merged) plus its adapter, and registered as a version of ``distill.registered_model``.
On a GPU worker (prefect.yaml's gpu pool) set ``distill.train.device: cuda`` and ``dtype: bfloat16``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.core.examples import read_examples
from fusion.core.lora import log_lora_model, train_lora
from fusion.core.outputs import fresh_output
from fusion.tracking import data_version, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def run(params: Params) -> Path:
    cfg = params.distill
    out = params.paths.distill_dir
    fresh_output(out)
    manifest: dict = {"enabled": cfg.enabled, "base": cfg.base, "models": {}}
    if cfg.enabled:
        data_tags = data_version(params.paths.routing_log)
        for kind in ("distilled", "label-only"):
            path = params.paths.sft_data / f"{kind}.jsonl"
            if not path.is_file():
                continue
            examples = read_examples(path)
            if examples.empty:
                logger.warning("distill %s: no SFT examples (see %s): nothing to train", kind,
                               params.paths.sft_data / "report.json")
                manifest["models"][kind] = None
                continue
            with stage_run(params.tracking, f"distill-{kind}", {"kind": kind, "base": cfg.base,
                                                                **cfg.train.model_dump()}) as ml:
                def on_log(step: int, logs: dict, ml=ml) -> None:
                    if ml:
                        ml.log_metrics({k: v for k, v in logs.items() if k in ("loss", "grad_norm", "learning_rate",
                                                                                "mean_token_accuracy")}, step=step)

                work = params.paths.distill_work / kind
                result = train_lora(examples, cfg.base, work, cfg.train, model_cache=params.paths.model_cache,
                                    on_log=on_log)
                shutil.copytree(result.adapter, out / kind / "adapter")
                entry = {"adapter": f"{kind}/adapter", "merged": str(result.merged), "examples": len(examples),
                         **result.metrics(), "version": None}
                if ml:
                    ml.set_tags(data_tags)
                    ml.log_metrics({k: float(v) for k, v in result.metrics().items()})
                    if kind == "distilled":
                        entry["version"] = log_lora_model(ml, result.merged, result.adapter,
                                                         registered_model=cfg.registered_model,
                                                         tags={**data_tags, "fusion.base": cfg.base,
                                                               "fusion.examples": str(len(examples))})
                    entry["run_id"] = ml.active_run().info.run_id
                manifest["models"][kind] = entry
                logger.info("distill %s: %d steps%s, loss %s -> %s, %.0f tokens/s%s", kind, result.steps,
                            f" (resumed from {result.resumed_from})" if result.resumed_from else "",
                            _f(result.first_loss), _f(result.last_loss), result.tokens_per_s,
                            f", registered version {entry['version']}" if entry["version"] else "")
    manifest["registered_model"] = cfg.registered_model if params.tracking.enabled else None
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def read_manifest(params: Params) -> dict:
    path = params.paths.distill_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no distilled models at {params.paths.distill_dir} ({MANIFEST} missing): run distill")
    return json.loads(path.read_text())
