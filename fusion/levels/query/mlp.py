"""MLP router: a multi-output scikit-learn MLP from [embedding, task] to every candidate's reward."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from fusion.levels.query.base import ROUTERS
from fusion.levels.query.tabular import RegressorRouter, TabularParams


class MLPParams(TabularParams):
    alpha: float | None = Field(None, ge=0, description="L2 penalty; None: chosen on validation from (0.01, 1.0)")
    hidden: int = Field(128, ge=1, description="units of the hidden layer")
    max_iter: int = Field(200, ge=1, description="training epochs at most (early stopping on 10% of the rows)")
    learning_rate_init: float = Field(1e-3, gt=0, description="Adam learning rate")


@ROUTERS.register("mlp")
class MLPRouter(RegressorRouter):
    name = "mlp"
    Params = MLPParams
    grid = {"alpha": (1e-2, 1.0)}

    def make_model(self, config: dict[str, Any], n_rows: int):
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(
            hidden_layer_sizes=(self.hp.hidden,),
            alpha=float(config["alpha"]),
            learning_rate_init=self.hp.learning_rate_init,
            max_iter=self.hp.max_iter,
            # early stopping holds out 10% of the rows; scikit-learn needs at least 2 there
            early_stopping=n_rows * 0.1 >= 2, validation_fraction=0.1, n_iter_no_change=10,
            random_state=self.seed,
        )
