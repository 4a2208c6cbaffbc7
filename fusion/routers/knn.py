"""kNN router: a candidate's utility is the mean reward of the k nearest training queries (cosine)."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np

from fusion.routers.base import ROUTERS, Router
from fusion.routers.data import RoutingData


@ROUTERS.register("knn")
class KNNRouter(Router):
    name = "knn"

    def _fit(self, data: RoutingData) -> None:
        from sklearn.neighbors import KNeighborsRegressor

        k = int(self.params.get("k", 5))
        if k < 1:
            raise ValueError(f"knn: k must be >= 1, got {k}")
        y = np.nan_to_num(data.reward, nan=float(np.nanmin(data.reward)) if np.isfinite(data.reward).any() else 0.0)
        self.model = KNeighborsRegressor(
            n_neighbors=min(k, len(data)), metric="cosine", weights=self.params.get("weights", "uniform"),
            algorithm="brute",
        ).fit(data.X, y)

    def predict_utility(self, X: np.ndarray, tasks: np.ndarray | None = None) -> np.ndarray:
        pred = self.model.predict(np.asarray(X, dtype=np.float32))
        return pred.reshape(len(X), len(self.candidates))

    def _save_state(self, path: Path) -> None:
        joblib.dump(self.model, path / "knn.joblib")

    def _load_state(self, path: Path) -> None:
        self.model = joblib.load(path / "knn.joblib")
