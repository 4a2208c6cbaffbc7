"""A tiny profile of the pipeline for integration tests: a tiny random Llama, a few synthetic queries."""

from __future__ import annotations

from pathlib import Path

import yaml

from fusion.models.refs import MINILM
from fusion.models.tiny_llama import build_tiny_llama

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_params(root: Path, model_dir: Path, *, n_per_task: int = 6) -> dict:
    return {
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
