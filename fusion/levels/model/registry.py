"""The distilled model in the MLflow registry, and its promotion gate.

:func:`fusion.core.lora.log_lora_model` logs the merged model with MLflow's transformers flavour (a plain model folder that the
``transformers`` backend loads as ``models:/fusion-distilled@champion``, and vLLM as a folder) and the LoRA adapter
beside it (artifact ``adapter/``), registering a version. :func:`promote_distilled` is the gate: the version
becomes ``champion`` only when it beats the current champion, or the base model when there is none, on the same
held-out queries by more than the margin (:func:`fusion.promotion.decide`); a tie keeps the champion, and a
champion that cannot be loaded or scored any more is compared as absent (against the base), the reason saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fusion.core.promotion import CHALLENGER, CHAMPION, decide
from fusion.tracking import alias_version

logger = logging.getLogger(__name__)




def promote_distilled(client, model: str, challenger: str, *, challenger_score: float, base_score: float,
                      score_version: Callable[[str], float], margin: float = 0.0) -> dict:
    """The gate (see the module's docstring). ``score_version(uri)`` scores a registered version on the same
    held-out queries the challenger and base scores come from."""
    champion = alias_version(client, model, CHAMPION)
    prefix, reference, against = "", None, "champion"
    if champion == challenger:
        promoted, reason = False, f"version {challenger} is already the champion"
        reference = challenger_score
    else:
        if champion is not None:
            try:
                reference = float(score_version(f"models:/{model}/{champion}"))
            except Exception as exc:  # noqa: BLE001 - a champion that cannot be scored is replaced by the comparison with the base
                logger.warning("cannot score the distilled champion (version %s): %s", champion, exc)
                prefix = f"the champion (version {champion}) cannot be scored ({type(exc).__name__}: {exc}); "
        if reference is None:
            reference, against = base_score, "base"
        promoted, reason = decide(challenger_score, reference, margin, "performance", against)
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
            "compared_with": against, "challenger_score": challenger_score, "reference_score": reference,
            "base_score": base_score, "margin": margin}
