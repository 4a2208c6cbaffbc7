"""The distilled model in the MLflow registry, and its promotion gate.

:func:`fusion.core.lora.log_lora_model` logs the merged model with MLflow's transformers flavour (a plain model folder that the
``transformers`` backend loads as ``models:/fusion-distilled@champion``, and vLLM as a folder) and the LoRA adapter
beside it (artifact ``adapter/``), registering a version. :func:`promote_distilled` is the gate: the version
becomes ``champion`` only when the lower bound of the 95% interval of its per-query advantage over the current
champion, or the base model when there is none, on the same held-out queries is above the margin
(:func:`fusion.core.promotion.decide`); a tie keeps the champion, and a
champion that cannot be loaded or scored any more is compared as absent (against the base), the reason saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from fusion.core.promotion import CHALLENGER, CHAMPION, decide
from fusion.core.stats import ArrayLike
from fusion.tracking import alias_version

logger = logging.getLogger(__name__)




def promote_distilled(client, model: str, challenger: str, *, challenger_scores: ArrayLike, base_scores: ArrayLike,
                      score_version: Callable[[str], ArrayLike], margin: float = 0.0, n_boot: int = 1000) -> dict:
    """The gate (see the module's docstring). ``challenger_scores`` and ``base_scores``: per-query performance on the
    held-out queries; ``score_version(uri)`` scores a registered version on the same queries, in the same order."""
    challenger_scores = np.asarray(challenger_scores, float)
    base_scores = np.asarray(base_scores, float)
    champion = alias_version(client, model, CHAMPION)
    prefix, reference, against, advantage = "", None, "champion", None
    if champion == challenger:
        promoted, reason = False, f"version {challenger} is already the champion"
        reference = challenger_scores
    else:
        if champion is not None:
            try:
                reference = np.asarray(score_version(f"models:/{model}/{champion}"), float)
            except Exception as exc:  # noqa: BLE001 - a champion that cannot be scored is replaced by the comparison with the base
                logger.warning("cannot score the distilled champion (version %s): %s", champion, exc)
                prefix = f"the champion (version {champion}) cannot be scored ({type(exc).__name__}: {exc}); "
        if reference is None:
            reference, against = base_scores, "base"
        promoted, reason, advantage = decide(challenger_scores, reference, margin, "performance", against,
                                             n_boot=n_boot)
        if against == "base":
            prefix += "no champion to compare with: compared with the base model; "
        reason = prefix + reason
    client.set_registered_model_alias(model, CHALLENGER, challenger)
    if promoted:
        client.set_registered_model_alias(model, CHAMPION, challenger)
    client.set_model_version_tag(model, challenger, "promotion", reason[:5000])
    logger.info("distilled promotion: %s", reason)
    return {"promoted": promoted, "reason": reason, "model": model, "challenger": challenger,
            "champion_before": champion, "champion_after": challenger if promoted else champion,
            "compared_with": against, "challenger_score": float(challenger_scores.mean()),
            "reference_score": float(np.mean(reference)), "base_score": float(base_scores.mean()),
            "advantage": advantage, "margin": margin}
