"""The MLflow pyfunc model of a trained token-level router, logged "from code" (nothing pickled): prompts in,
FusionRoute answers out, with each answer's expert shares and the rate at which the router's logits changed the
expert's argmax token. The experts are loaded from the references recorded in the router (and checked)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class TokenRouteModel(PythonModel):
    def load_context(self, context) -> None:
        from fusion.levels.token.engine import TokenRouteDecoder
        from fusion.levels.token.level import open_router

        cache = Path(os.environ.get("FUSION_MODEL_CACHE", ".cache/models"))
        router, experts, tok = open_router(Path(context.artifacts["router"]), model_cache=cache)
        self.decoder = TokenRouteDecoder(experts, tok, router, policy="lazy")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        params = params or {}
        gens = self.decoder.generate(model_input["prompt"].astype(str).tolist(),
                                     max_new_tokens=int(params.get("max_new_tokens", 128)),
                                     temperature=float(params.get("temperature", 0.0)),
                                     seed=int(params.get("seed", 0)))
        n = len(self.decoder.names)
        return pd.DataFrame({"text": [g.text for g in gens],
                             "expert_shares": [json.dumps(dict(zip(self.decoder.names, g.expert_shares(n),
                                                                   strict=True))) for g in gens],
                             "change_rate": [g.change_rate for g in gens]})


mlflow.models.set_model(TokenRouteModel())
