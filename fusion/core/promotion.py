"""The one comparison policy of every promotion gate (routers, the distilled model): the challenger becomes
``champion`` only when there is none, or when the lower bound of the paired-bootstrap 95% interval of its advantage over the
champion on the same held-out queries is above the margin: a raw difference on a few queries moves nothing, a tie
never moves the champion. The gates themselves (what is scored, how the aliases move) live with
their level: :mod:`fusion.levels.query.promotion`, :mod:`fusion.levels.model.registry`."""

from __future__ import annotations

from fusion.core.stats import ArrayLike, as_1d, paired_bootstrap

CHAMPION, CHALLENGER = "champion", "challenger"


def decide(challenger: ArrayLike, champion: ArrayLike | None, margin: float, metric: str,
           against: str = "champion", *, n_boot: int = 1000, seed: int = 0) -> tuple[bool, str, dict | None]:
    """``(promoted, reason, advantage)`` from the per-query scores of the challenger and of the champion (or what
    stands in for it, named by ``against``: the base model of the distilled gate) on the same held-out queries.
    Promote when there is no champion, or when the lower bound of the paired-bootstrap 95% interval of the
    challenger's advantage is above ``margin``; ``advantage``: its mean, ``lo``, ``hi`` and ``n``."""
    chal = as_1d("challenger", challenger)
    if champion is None:
        return True, (f"no champion yet: the challenger ({metric} {chal.mean():.4f} on {chal.size} queries) "
                      "becomes champion"), None
    ref = as_1d(against, champion)
    if ref.shape != chal.shape:
        raise ValueError(f"the challenger and the {against} were scored on different queries "
                         f"({chal.size} != {ref.size})")
    adv = {**paired_bootstrap(chal - ref, n_boot=n_boot, seed=seed), "n": int(chal.size)}
    said = (f"challenger {metric} {chal.mean():.4f} vs {against} {ref.mean():.4f}: advantage {adv['mean']:+.4f} "
            f"[{adv['lo']:+.4f}, {adv['hi']:+.4f}] (95% CI, {chal.size} queries)")
    if adv["lo"] > margin:
        return True, f"{said}; its lower bound is above the margin {margin:g}: promoted", adv
    kept = "champion kept" if against == CHAMPION else "not promoted"
    return False, f"{said}; its lower bound is not above the margin {margin:g}: {kept}", adv


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
