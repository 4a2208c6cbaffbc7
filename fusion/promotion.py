"""The one comparison policy of every promotion gate (routers, the distilled model): the challenger becomes
``champion`` only when there is none, or when it beats the champion on the same held-out queries by more than the
margin; a tie never moves the champion. The gates themselves (what is scored, how the aliases move) live with
their level: :mod:`fusion.routers.promotion`, :mod:`fusion.distill.registry`."""

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
