"""A tiny profile of the pipeline for integration tests: a tiny random Llama, a few synthetic queries."""

from __future__ import annotations

from pathlib import Path

import yaml

from fusion.models.refs import MINILM
from fusion.models.tiny_llama import build_tiny_llama

REPO_ROOT = Path(__file__).resolve().parents[1]


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def tiny_params(root: Path, model_dir: Path, *, n_per_task: int = 6) -> dict:
    repo = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())  # every key DVC names (thought, distill)
    return {
        "recipe": "cpu",  # a parameter of the thought and model stages in dvc.yaml
        "pool": [
            {"name": "tiny-a", "backend": "transformers", "model": str(model_dir), "modes": ["direct", "think"],
             "input_price": 0.1, "output_price": 0.2, "description": "tiny random llama"},
        ],
        "queries": {"seed": 0, "test_fraction": 0.34, "sources": [
            {"task": "arith_word", "source": "synthetic", "limit": n_per_task},
            {"task": "mc_reasoning", "source": "synthetic", "limit": n_per_task},
        ]},
        "collect": {"batch_size": 4, "max_new_tokens": {"direct": 8, "think": 12}, "sandbox_workers": 1},
        "judge": {"enabled": True, "max_new_tokens": 6, "batch_size": 8,
                  "llm": {"name": "tiny-judge", "backend": "transformers", "model": str(model_dir),
                          "input_price": 0.1, "output_price": 0.2}},
        "sources": [{"path": "incoming/*.jsonl", "format": "long"}],
        "validate": {"max_error_rate": 0.2},
        "embed": {"encoder": MINILM, "batch_size": 16},
        "scenario": {"name": "balance"},
        "routers": [{"name": "knn", "seed": 0, "params": {"k": 3}}, {"name": "best-single"}],
        "evaluate": {"split": "test"},
        "promote": {"metric": "reward", "margin": 0.0},
        # the tiny model's answers are noise (blank lines): the levels learn from an imported log with correct
        # answers (write_oracle_log)
        "thought": _merged(repo["thought"], {"top_n": 2, "summary_max_new_tokens": 24, "batch_size": 8, "k": 2,
                    "summariser": {"name": "tiny-summariser", "backend": "transformers", "model": str(model_dir),
                                   "input_price": 0.1, "output_price": 0.2},
                    "target": {"name": "tiny-target", "backend": "transformers", "model": str(model_dir),
                               "input_price": 0.1, "output_price": 0.2},
                    "eval": {"max_new_tokens": 8, "batch_size": 8, "n_boot": 200}}),
        "distill": _merged(repo["distill"], {"base": str(model_dir), "data": {"k": 1},
                    "train": {"max_steps": 4, "batch_size": 4, "save_steps": 2, "max_length": 256,
                              "learning_rate": 1e-3, "lora": {"r": 4, "alpha": 8}},
                    "eval": {"max_new_tokens": 8, "batch_size": 8, "n_boot": 200},
                    "registered_model": "tiny-distilled"}),
        "tokenroute": _merged(repo["tokenroute"], {
                    "base": str(model_dir),
                    "expert_train": {"max_steps": 4, "batch_size": 4, "save_steps": 2, "max_length": 256,
                                     "learning_rate": 1e-3, "lora": {"r": 4, "alpha": 8}},
                    "data": {"per_domain": 8, "max_pairs": 8, "max_length": 768},
                    "train": {"sft_steps": 3, "mix_steps": 2, "batch_size": 4, "save_steps": 2,
                              "learning_rate": 1e-3},
                    "eval": {"limit": 8, "max_new_tokens": 8, "batch_size": 8, "n_boot": 200},
                    "registered_model": "tiny-tokenroute"}),
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "artifact_root": str(root / "mlartifacts"),
                     "experiment": "tiny", "registered_router": "tiny-router"},
        # dvc.yaml reads its paths from params.yaml
        "paths": yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["paths"],
    }


def write_tiny_profile(root: Path, model_dir: Path, **kw) -> Path:
    if not (model_dir / "config.json").exists():
        build_tiny_llama(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "incoming").mkdir(exist_ok=True)  # the drop folder (a DVC dependency)
    (root / "incoming" / "README.md").write_text("drop routing logs here\n")
    p = root / "params.yaml"
    p.write_text(yaml.safe_dump(tiny_params(root, model_dir, **kw), sort_keys=False))
    return p


def write_oracle_log(root: Path, params_path: Path, *, name: str = "oracle.jsonl") -> Path:
    """An imported log in the drop folder with a correct answer to every query of the profile (as a production
    log with response texts would bring): what the thought and model levels learn from in the tiny profile."""
    import pandas as pd

    from fusion.config import load_params
    from fusion.data.queries import build_queries
    from fusion.importers import write_long

    q = build_queries(load_params(params_path).queries)
    log = q.assign(llm="oracle", mode="direct", candidate="oracle:direct", backend="import:long", response="Answer: " + q["ground_truth"], performance=1.0,
                   input_tokens=40, output_tokens=4, cost_usd=1e-5, prompt=q["query"])
    # and a wrong answer to every query (the rejected side of the token level's preference pairs)
    wrong = log.assign(llm="guesser", candidate="guesser:direct", response="Answer: none", performance=0.0,
                       cost_usd=1e-6)
    log = pd.concat([log, wrong], ignore_index=True)
    out = root / "incoming" / name
    write_long(pd.DataFrame(log), out)
    return out
