"""Stage ``experts``: the domain LoRA experts of ``tokenroute.experts`` (those with ``train``: each on
``tokenroute.base``, trained on its task's worked reference solutions), adapters under ``paths.experts_dir`` (a DVC output), each registered in MLflow
(merged model + adapter, ``fusion-expert-<name>``) for the token-level router. No expert listed: an empty
manifest."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.core.lora import log_lora_model, train_lora
from fusion.core.outputs import fresh_output
from fusion.levels.token.experts import expert_examples, registered_name
from fusion.tracking import stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def run(params: Params) -> Path:
    cfg = params.tokenroute
    out = params.paths.experts_dir
    fresh_output(out)
    manifest: dict = {"base": cfg.base, "experts": {}}
    for expert in [e for e in cfg.experts if e.train is not None]:
        examples = expert_examples(expert)
        train = expert.train.trainer or cfg.expert_train
        with stage_run(params.tracking, f"expert-{expert.name}", {"task": expert.train.task,
                                                                  "source": expert.train.source,
                                                                  "examples": len(examples), "base": cfg.base,
                                                                  **train.model_dump()}) as ml:
            def on_log(step: int, logs: dict, ml=ml) -> None:
                if ml and "loss" in logs:
                    ml.log_metric("loss", logs["loss"], step=step)

            result = train_lora(examples, cfg.base, params.paths.distill_work / "experts" / expert.name, train,
                                model_cache=params.paths.model_cache, on_log=on_log)
            shutil.copytree(result.adapter, out / expert.name / "adapter")
            entry = {"task": expert.train.task, "domain": examples["domain"].iloc[0], "examples": len(examples),
                     "adapter": f"{expert.name}/adapter", **result.metrics(), "version": None,
                     "registered_model": None}
            if ml:
                ml.log_metrics({k: float(v) for k, v in result.metrics().items()})
                name = registered_name(expert)
                entry["version"] = log_lora_model(ml, result.merged, result.adapter, registered_model=name,
                                                 tags={"fusion.base": cfg.base, "fusion.expert.task": expert.train.task,
                                                       "fusion.expert.domain": entry["domain"],
                                                       "fusion.examples": str(len(examples))})
                entry["registered_model"] = name
            manifest["experts"][expert.name] = entry
            logger.info("expert %s (%s): %d examples, %d steps, loss %.3f -> %.3f%s", expert.name, expert.train.task,
                        len(examples), result.steps, result.first_loss or float("nan"),
                        result.last_loss or float("nan"),
                        f", registered {entry['registered_model']} version {entry['version']}" if entry["version"]
                        else "")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out
