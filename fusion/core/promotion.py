"""The one comparison policy of every promotion gate (routers, the distilled model): the challenger becomes
``champion`` only when there is none, or when it beats the champion on the same held-out queries by more than the
margin; a tie never moves the champion. The gates themselves (what is scored, how the aliases move) live with
their level: :mod:`fusion.levels.query.promotion`, :mod:`fusion.levels.model.registry`."""

from __future__ import annotations

CHAMPION, CHALLENGER = "champion", "challenger"


def decide(challenger: float, champion: float | None, margin: float, metric: str,
           against: str = "champion") -> tuple[bool, str]:
    """Promote when there is no champion, or when the challenger beats it (or what stands in for it, named by
    ``against``: the base model of the distilled gate) by more than ``margin``."""
    if champion is None:
        return True, f"no champion yet: the challenger ({metric} {challenger:.4f}) becomes champion"
    delta = challenger - champion
    if delta > margin:
        return True, (f"challenger {metric} {challenger:.4f} beats {against} {champion:.4f} by {delta:+.4f}, "
                      f"more than the margin {margin:g}")
    return False, (f"challenger {metric} {challenger:.4f} vs {against} {champion:.4f} ({delta:+.4f}) does not "
                   f"beat it by more than the margin {margin:g}: " + ("champion kept" if against == CHAMPION else
                                                                       "not promoted"))


def record_decision(ml, decision: dict, path, artifact: str) -> dict:
    """A gate's decision on its MLflow run (``ml``: the mlflow module, or None without tracking: the ``promoted``
    metric, the decision and its reason as tags, the whole decision as an artifact) and as JSON at ``path``."""
    import json
    from pathlib import Path

    if ml:
        ml.log_metric("promoted", float(decision["promoted"]))
        ml.set_tags({"fusion.promotion.decision": "promoted" if decision["promoted"] else "kept",
                     "fusion.promotion.reason": decision["reason"][:5000]})
        ml.log_dict(decision, artifact)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(decision, indent=2) + "\n")
    return decision
