"""What the token level learns from and decodes with, as small functions of tensors (no model inside).

Every function here has a test with hand-computed values (``tests/test_tokenroute_losses.py``), in the manner of
TRL's ``dpo_loss`` of four tensors: a loss that runs a model inside cannot be checked by number, these can.

Shapes: ``B`` rows, ``T`` positions (position ``t`` predicts token ``t+1``), ``V`` shared vocabulary, ``E`` experts.

Training (see ``train.py`` for the schedule):

- :func:`completion_ce`: the router LM's next-token cross-entropy on the completion positions only (prompt tokens
  and padding carry no loss).
- :func:`routing_loss`: the routing head's loss on the *informative* positions only (where the experts' greedy
  tokens disagree; elsewhere the choice of expert changes nothing and carries no gradient).
- :func:`sequence_logp`: a row's summed log-prob of its completion tokens.
- :func:`cdpo_margin` / :func:`cdpo_loss`: DPO's margin on the router LM against its reference, plus the selected
  experts' summed log-probs of the chosen and the rejected answer as a constant per pair.

Decoding (``engine.py``):

- :func:`select_experts`: the expert with the highest routing weight, per row.
- :func:`fuse_logprobs`: the complementary-logit sum ``log_softmax(router) + log_softmax(expert)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def completion_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where ``mask`` is true.

    ``logits`` [B, T, V], ``targets`` [B, T] (the token each position predicts), ``mask`` [B, T] bool."""
    if not bool(mask.any()):
        raise ValueError("no completion position to train on")
    return F.cross_entropy(logits[mask].float(), targets[mask])


def routing_loss(route_logits: torch.Tensor, expert_logp: torch.Tensor, informative: torch.Tensor) -> torch.Tensor:
    """The routing head's loss ``−Σ_i w_i · log π_i(y_t)``, ``w = softmax(route_logits)``, averaged over the
    informative positions (FusionRoute's Eq. 2: the log of the aggregated distribution ``Σ_i w_i log π_i``, not the
    mixture likelihood ``log Σ_i w_i π_i``). Its minimum puts all the weight on the expert that gives the gold token
    the highest probability, the one the decoder's argmax should pick.

    ``route_logits`` [B, T, E] the head's scores; ``expert_logp`` [B, T, E] each expert's log-prob of the gold
    token (constants: the experts are frozen); ``informative`` [B, T] bool."""
    if not bool(informative.any()):
        return route_logits.sum() * 0.0
    scores = route_logits[informative].float()
    lp = expert_logp[informative].float()
    return -(torch.softmax(scores, -1) * lp).sum(-1).mean()


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, T]: the log-prob each position gives its target token."""
    return torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def sequence_logp(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B]: the summed log-prob of the target tokens where ``mask`` is true (the completion)."""
    return (token_logps(logits, targets) * mask).sum(-1)


def selected_expert_logp(route_logits: torch.Tensor, expert_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B]: the summed log-prob, over the masked positions, of the expert the head selects at each position (the
    argmax of its scores). A constant: no gradient flows through the choice or the experts."""
    with torch.no_grad():
        choice = select_experts(route_logits)
        return (expert_logp.gather(-1, choice.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)


def cdpo_margin(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                ref_rejected: torch.Tensor, *, beta: float, expert_chosen: torch.Tensor | None = None,
                expert_rejected: torch.Tensor | None = None) -> torch.Tensor:
    """``z = β·[(θ_w − ref_w) − (θ_l − ref_l)] + β·(e_w − e_l)`` per pair.

    The policy is the fused model ``log π_θ + log π_expert`` (unnormalised, as the decoder scores tokens), the
    reference the router LM after SFT alone (no expert term), so the experts' log-probs enter the margin once, as
    a constant: the router learns what the expert it calls gets wrong. Without the expert tensors it is DPO's
    margin (the fine-tuned baseline)."""
    z = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    if (expert_chosen is None) != (expert_rejected is None):
        raise ValueError("the expert term needs both the chosen and the rejected log-probs")
    if expert_chosen is not None:
        z = z + beta * (expert_chosen - expert_rejected).detach()
    return z


def cdpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor, *, beta: float, expert_chosen: torch.Tensor | None = None,
              expert_rejected: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean −log σ(z), z)`` with ``z`` from :func:`cdpo_margin`."""
    z = cdpo_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta,
                    expert_chosen=expert_chosen, expert_rejected=expert_rejected)
    return -F.logsigmoid(z).mean(), z


def select_experts(route_scores: torch.Tensor) -> torch.Tensor:
    """The index of the highest-weight expert per row (ties: the lowest index). ``route_scores`` [..., E]."""
    return route_scores.argmax(-1)


def fuse_logprobs(router_logits: torch.Tensor | None, expert_logits: torch.Tensor) -> torch.Tensor:
    """The decoder's next-token scores: ``log_softmax(expert) + log_softmax(router)`` (the router's complementary
    logits), or the expert's alone when there is no router term. [..., V] each."""
    out = torch.log_softmax(expert_logits.float(), -1)
    if router_logits is not None:
        out = out + torch.log_softmax(router_logits.float(), -1)
    return out
