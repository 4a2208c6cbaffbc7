"""The MLflow pyfunc model of a trained router, logged "from code" (MLflow runs this file to build the model, so
nothing is pickled): text in, candidate out, through :func:`fusion.levels.query.serving.predict_frame`. The router's
folder is the model's ``router`` artifact; the ``fusion`` package travels with the model as its code path."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from fusion.levels.query.serving import ROUTER_ARTIFACT, predict_frame


class RouterModel(PythonModel):
    """Embeds ``query`` with the router's encoder, then routes (an optional ``task`` column is passed on)."""

    def load_context(self, context) -> None:
        from fusion.core.embedding import Encoder
        from fusion.levels.query import load_router

        self.router = load_router(context.artifacts[ROUTER_ARTIFACT])
        self.encoder = Encoder(self.router.meta["encoder"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predict_frame(self.router, self.encoder, model_input)


mlflow.models.set_model(RouterModel())
