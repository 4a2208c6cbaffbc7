"""SVM router: one linear support-vector regressor per candidate over [embedding, task]."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from fusion.levels.query.base import ROUTERS
from fusion.levels.query.tabular import RegressorRouter, TabularParams


class SVMParams(TabularParams):
    C: float | None = Field(None, gt=0, description="inverse regularisation; None: chosen on validation from "
                                                    "(0.01, 0.1, 1.0)")
    epsilon: float = Field(0.0, ge=0, description="width of the insensitive zone")
    max_iter: int = Field(5000, ge=1, description="solver iterations at most")


@ROUTERS.register("svm")
class SVMRouter(RegressorRouter):
    name = "svm"
    Params = SVMParams
    grid = {"C": (0.01, 0.1, 1.0)}

    def make_model(self, config: dict[str, Any], n_rows: int):
        from sklearn.multioutput import MultiOutputRegressor
        from sklearn.svm import LinearSVR

        return MultiOutputRegressor(LinearSVR(
            C=float(config["C"]), epsilon=self.hp.epsilon, loss="squared_epsilon_insensitive", dual="auto",
            max_iter=self.hp.max_iter, random_state=self.seed,
        ))
