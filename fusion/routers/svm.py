"""SVM router: one linear support-vector regressor per candidate over [embedding, task]."""

from __future__ import annotations

from typing import Any

from fusion.routers.base import ROUTERS
from fusion.routers.tabular import RegressorRouter


@ROUTERS.register("svm")
class SVMRouter(RegressorRouter):
    name = "svm"
    grid = {"C": (0.01, 0.1, 1.0)}
    defaults = {"epsilon": 0.0, "max_iter": 5000}

    def make_model(self, config: dict[str, Any], n_rows: int):
        from sklearn.multioutput import MultiOutputRegressor
        from sklearn.svm import LinearSVR

        return MultiOutputRegressor(LinearSVR(
            C=float(config["C"]), epsilon=float(self.params.get("epsilon", config["epsilon"])),
            loss="squared_epsilon_insensitive", dual="auto",
            max_iter=int(self.params.get("max_iter", config["max_iter"])), random_state=self.seed,
        ))
