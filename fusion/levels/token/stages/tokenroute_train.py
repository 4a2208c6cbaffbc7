"""Stage ``tokenroute_train``: the FusionRoute router (initialised from ``tokenroute.router_init``, else the
experts' base) trained on the stage ``tokenroute_data``'s sequences and statistics (SFT, then mix training with
CDPO), saved under ``paths.tokenroute_dir/router`` (an HF checkpoint plus its head and the experts it was trained
for) and registered in MLflow (``tokenroute.registered_model``, alias ``challenger``); beside it the paper's
"fine-tuned model without routing" baseline (``plain/``). Losses are logged per step."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fusion.core.outputs import fresh_output
from fusion.core.promotion import CHALLENGER
from fusion.levels.token.level import PLAIN_DIR, ROUTER_DIR, SFT_ROUTER_DIR, experts_of, train_variant
from fusion.levels.token.registry import log_tokenroute
from fusion.levels.token.router import META_FILE
from fusion.levels.token.stages.tokenroute_data import REPORT, SEQUENCES, STATS
from fusion.tracking import stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)
TRAIN_REPORT = "train.json"


def run(params: Params) -> Path:
    cfg = params.tokenroute
    data, out = params.paths.tokenroute_data, params.paths.tokenroute_dir
    if not fresh_output(out, enabled=cfg.enabled, report=TRAIN_REPORT):
        return out
    if not (data / SEQUENCES).is_file():
        raise FileNotFoundError(f"no training sequences in {data}: run `fusion tokenroute data` first")
    seqs = pd.read_parquet(data / SEQUENCES)
    experts = experts_of(cfg, params.paths.experts_dir)
    base = cfg.base
    init = cfg.router_init or base
    report: dict = {"enabled": True, "init": init, "experts": [e.name for e in experts],
                    "data": json.loads((data / REPORT).read_text())}
    variants = [(ROUTER_DIR, True)] + ([(PLAIN_DIR, False)] if cfg.train.plain_baseline else [])
    for variant, fused in variants:
        run_params = {**cfg.train.model_dump(), "variant": variant, "init": init,
                      "experts": ",".join(e.name for e in experts)}
        with stage_run(params.tracking, f"tokenroute-{variant}", run_params) as ml:
            def on_step(step: int, entry: dict, ml=ml) -> None:
                if ml:
                    ml.log_metrics({k: float(v) for k, v in entry.items()
                                    if k in ("loss", "ce", "routing", "dpo", "pref_accuracy", "margin")}, step=step)

            router, tok, outcome, fp, after_sft = train_variant(seqs, data / STATS, experts, cfg, init=init,
                                                     work=params.paths.tokenroute_work / variant,
                                                     model_cache=params.paths.model_cache, fused=fused,
                                                     on_step=on_step)
            entry = {**outcome.metrics(), "fingerprint": fp, "version": None}
            if fused:
                router.save(out / ROUTER_DIR, tok, [e.record() for e in experts],
                            extra={"init": init, "train": outcome.metrics(), "fingerprint": fp})
                if after_sft is not None:  # routing only and FusionRoute-after-SFT are evaluated with it
                    after_sft.save(out / SFT_ROUTER_DIR, tok, [e.record() for e in experts],
                                   extra={"init": init, "after_sft_of": fp, "steps": cfg.train.sft_steps})
                if ml:
                    ml.log_metrics({k: float(v) for k, v in outcome.metrics().items()})
                    ml.log_dict({"history": outcome.history}, "history.json")
                    ml.log_artifact(str(out / ROUTER_DIR / META_FILE))
                    version = log_tokenroute(ml, out / ROUTER_DIR, registered_model=cfg.registered_model,
                                             tags={"fusion.init": init, "fusion.sft_examples": str(outcome.sft_examples),
                                                   "fusion.pairs": str(outcome.pairs)})
                    ml.MlflowClient().set_registered_model_alias(cfg.registered_model, CHALLENGER, version)
                    entry["version"] = version
            else:
                router.lm.save_pretrained(out / PLAIN_DIR)
                tok.save_pretrained(out / PLAIN_DIR)
            report[variant] = entry
            logger.info("tokenroute %s: %d steps on %d SFT examples and %d pairs; ce %.3f -> %.3f%s", variant,
                        outcome.steps, outcome.sft_examples, outcome.pairs, outcome.first("ce") or float("nan"),
                        outcome.last("ce") or float("nan"),
                        f"; registered {cfg.registered_model} version {entry['version']}" if entry["version"] else "")
    (out / TRAIN_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return out
