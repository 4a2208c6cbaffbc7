"""MLP router: a multi-output scikit-learn MLP from [embedding, task] to every candidate's reward."""

from __future__ import annotations

from typing import Any

from fusion.routers.base import ROUTERS
from fusion.routers.tabular import RegressorRouter


@ROUTERS.register("mlp")
class MLPRouter(RegressorRouter):
    name = "mlp"
    grid = {"alpha": (1e-2, 1.0)}
    defaults = {"hidden": 128, "max_iter": 200, "learning_rate_init": 1e-3}

    def make_model(self, config: dict[str, Any], n_rows: int):
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(
            hidden_layer_sizes=(int(self.params.get("hidden", config["hidden"])),),
            alpha=float(config["alpha"]),
            learning_rate_init=float(self.params.get("learning_rate_init", config["learning_rate_init"])),
            max_iter=int(self.params.get("max_iter", config["max_iter"])),
            # early stopping holds out 10% of the rows; scikit-learn needs at least 2 there
            early_stopping=n_rows * 0.1 >= 2, validation_fraction=0.1, n_iter_no_change=10,
            random_state=self.seed,
        )
