"""The promotion gate: ``champion`` / ``challenger`` aliases on the registered router in MLflow.

Each pipeline run registers a new version per trained router; the best of them on the evaluation split is the
*challenger*. :func:`promote` gives it the ``challenger`` alias, then scores the challenger and the current
``champion`` the same way (each loaded from the registry as its pyfunc model, text in, candidate out) on the same
evaluation split, and moves ``champion`` only when the lower bound of the 95% interval of the challenger's
per-query advantage is above the margin. The
decision and its reason are returned (and logged by the pipeline's promote stage); the challenger's version is
tagged with them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fusion.core.promotion import CHALLENGER, CHAMPION, decide
from fusion.levels.query.data import RoutingData
from fusion.levels.query.evaluation import outcome, per_query, split_fingerprint
from fusion.levels.query.serving import predict_registered
from fusion.tracking import alias_version

logger = logging.getLogger(__name__)

class CandidateMismatch(ValueError):
    """A registered router routes to candidates the evaluation log does not have."""


@dataclass
class Decision:
    promoted: bool
    reason: str
    model: str
    challenger: str
    champion_before: str | None
    champion_after: str | None
    metric: str
    margin: float
    challenger_score: float
    champion_score: float | None
    split_fingerprint: str
    n_queries: int
    advantage: dict | None = None  # the challenger's advantage over the champion: mean, lo, hi (95% CI), n

    def to_dict(self) -> dict:
        return asdict(self)


def reads_task(model_uri: str) -> bool:
    """True when the registered model's signature has the (optional) ``task`` input; MLflow drops undeclared
    columns, so a model without it routes as if no task were known."""
    from mlflow.models import get_model_info

    sig = get_model_info(model_uri).signature
    return sig is None or "task" in sig.inputs.input_names()


def score_model(model_uri: str, test: RoutingData) -> tuple[dict, dict[str, np.ndarray]]:
    """Route ``test``'s query texts (and tasks) through the registered model and score its choices: the means
    (:func:`outcome`) and the per-query values (:func:`per_query`)."""
    frame = pd.DataFrame({"query": [str(t) for t in test.texts], "task": [str(t) for t in test.tasks]})
    chosen = predict_registered(model_uri, frame)["candidate"].astype(str).tolist()
    index = {c: i for i, c in enumerate(test.candidates)}
    unknown = sorted(set(chosen) - set(index))
    if unknown:
        raise CandidateMismatch(f"{model_uri} routes to {unknown}, which the evaluation log does not have "
                                f"(its candidates: {test.candidates})")
    idx = np.array([index[c] for c in chosen])
    return outcome(test, idx), per_query(test, idx)


def promote(client, model: str, challenger: str, test: RoutingData, metric: str = "reward",
            margin: float = 0.0, *, n_boot: int = 1000, seed: int = 0) -> Decision:
    """Score ``challenger`` (a version of ``model``) and the champion on ``test``, then alias the challenger and
    move the ``champion`` alias when the gate passes (:func:`fusion.core.promotion.decide`: the lower bound of the
    challenger's paired-bootstrap advantage above ``margin``). A champion that cannot be loaded or scored any more (its
    artifacts gone, its candidates not in this log, its code not loadable) is replaced, and the reason says why."""
    champion = alias_version(client, model, CHAMPION)
    chal_values = score_model(f"models:/{model}/{challenger}", test)[1][metric]  # a broken challenger fails the stage
    chal_score = float(chal_values.mean())
    champ_score: float | None = None
    champ_values, advantage = None, None
    if champion == challenger:
        promoted, reason = False, f"version {challenger} is already the champion"
        champ_score = chal_score
    else:
        reason_prefix = ""
        if champion is not None:
            uri = f"models:/{model}/{champion}"
            try:
                champ_values = score_model(uri, test)[1][metric]
                champ_score = float(champ_values.mean())
                if not reads_task(uri):
                    reason_prefix = f"(the champion, version {champion}, has no task input: scored without tasks) "
            except Exception as exc:  # noqa: BLE001 - any failure to score the champion is a reason to replace it
                logger.warning("cannot score the champion %s: %s", uri, exc)
                reason_prefix = (f"the champion (version {champion}) cannot be scored on this log "
                                 f"({type(exc).__name__}: {exc}); ")
        promoted, reason, advantage = decide(chal_values, champ_values, margin, metric, n_boot=n_boot, seed=seed)
        reason = reason_prefix + reason
    client.set_registered_model_alias(model, CHALLENGER, challenger)
    if promoted:
        client.set_registered_model_alias(model, CHAMPION, challenger)
    client.set_model_version_tag(model, challenger, "promotion", reason[:5000])
    decision = Decision(promoted=promoted, reason=reason, model=model, challenger=challenger,
                        champion_before=champion, champion_after=challenger if promoted else champion, metric=metric,
                        margin=float(margin), challenger_score=float(chal_score),
                        champion_score=None if champ_score is None else float(champ_score),
                        split_fingerprint=split_fingerprint(test), n_queries=len(test), advantage=advantage)
    logger.info("promotion: %s", reason)
    return decision
