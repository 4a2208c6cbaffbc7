"""The token level's learning signals as numbers: each loss, mask, margin and choice against hand-computed values,
so that a flipped sign, a wrong mask, a dropped reference term or an argmin in place of an argmax fails here."""

from __future__ import annotations

import math

import pytest
import torch

from fusion.levels.token.losses import (
    cdpo_loss,
    cdpo_margin,
    completion_ce,
    fuse_logprobs,
    routing_loss,
    select_experts,
    selected_expert_logp,
    sequence_logp,
)

LN2 = math.log(2)


def test_completion_ce_counts_the_completion_only():
    # position 0 is the prompt: its logits would cost ~10 nats; positions 1, 2 are flat (ln 2 each)
    logits = torch.tensor([[[10.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    targets = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[False, True, True]])
    ce = completion_ce(logits, targets, mask)
    assert float(ce) == pytest.approx(LN2, abs=1e-6)
    ce.backward()
    assert logits.grad[0, 0].abs().sum() == 0  # the prompt token carries no loss
    # flat logits: d CE / d logit = (softmax − onehot) / n positions
    assert logits.grad[0, 1].tolist() == pytest.approx([-0.25, 0.25])
    assert logits.grad[0, 2].tolist() == pytest.approx([0.25, -0.25])
    # every position counted: the prompt's ~10 nats would enter the mean
    assert float(completion_ce(logits, targets, torch.ones_like(mask))) == pytest.approx(
        (10 + math.log1p(math.exp(-10)) + 2 * LN2) / 3, abs=1e-5)
    with pytest.raises(ValueError, match="no completion"):
        completion_ce(logits, targets, torch.zeros_like(mask))


def test_routing_loss_values_and_mask():
    # two experts; at the informative position the gold token has p = 0.8 under expert 0 and 0.2 under expert 1;
    # at the other position the experts agree on the greedy token but their log-probs differ wildly
    route = torch.zeros((1, 2, 2), requires_grad=True)
    elp = torch.tensor([[[math.log(0.8), math.log(0.2)], [math.log(0.9), math.log(1e-6)]]])
    info = torch.tensor([[True, False]])
    expected = routing_loss(route, elp, info)
    assert float(expected) == pytest.approx(-(0.5 * math.log(0.8) + 0.5 * math.log(0.2)), abs=1e-6)
    # the paper's aggregate of log-probs, not the mixture likelihood −log(½·0.8 + ½·0.2) = ln 2
    assert float(expected) != pytest.approx(LN2, abs=1e-3)
    expected.backward()
    assert route.grad[0, 1].abs().sum() == 0  # an agreeing position carries no routing gradient
    # d/ds_0 of −Σ w_i lp_i at w = (½, ½): −w_0 (lp_0 − Σ w lp) = −½ · ½ (ln .8 − ln .2)
    g0 = -0.25 * (math.log(0.8) - math.log(0.2))
    assert route.grad[0, 0].tolist() == pytest.approx([g0, -g0], abs=1e-6)
    assert g0 < 0  # descending the loss raises expert 0's score: the one that gives the gold token more mass
    nothing = routing_loss(route, elp, torch.zeros_like(info))
    assert float(nothing) == 0.0


def test_head_only_training_moves_weight_to_the_better_expert():
    """A linear head on fixed hidden states, two experts: expert 1 gives the gold token log-prob −0.1 at every
    informative position, expert 0 gives −3. Gradient descent on the routing loss must route to expert 1 there;
    positions where the experts agree carry no signal (expert 0 is better there, and must not pull the head)."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 12, 8, generator=g)
    head = torch.nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        head.weight.zero_()
    info = torch.zeros(2, 12, dtype=torch.bool)
    info[:, ::2] = True
    elp = torch.where(info.unsqueeze(-1), torch.tensor([-3.0, -0.1]), torch.tensor([-0.1, -9.0]))
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    for _ in range(60):
        opt.zero_grad()
        routing_loss(head(h), elp, info).backward()
        opt.step()
    with torch.no_grad():
        w = torch.softmax(head(h), -1)
    assert float(w[info][:, 1].mean()) > 0.9
    assert select_experts(head(h))[info].eq(1).float().mean() > 0.95


def test_sequence_logp_sums_the_completion():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    targets = torch.tensor([[0, 1, 0]])
    mask = torch.tensor([[False, True, True]])
    assert float(sequence_logp(logits, targets, mask)) == pytest.approx(math.log(0.75) + math.log(0.9), abs=1e-6)


def test_selected_expert_logp_follows_the_argmax():
    route = torch.tensor([[[0.0, 2.0], [3.0, 1.0], [0.0, 5.0]]], requires_grad=True)
    elp = torch.tensor([[[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0]]])
    mask = torch.tensor([[True, True, False]])
    got = selected_expert_logp(route, elp, mask)
    assert float(got) == pytest.approx(-2.0 + -3.0)
    assert not got.requires_grad


def test_cdpo_margin_by_hand():
    t = torch.tensor
    z = cdpo_margin(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), beta=0.5, expert_chosen=t([-3.0]),
                    expert_rejected=t([-1.0]))
    # 0.5·[(−1 + 1.5) − (−2 + 1.5)] + 0.5·(−3 + 1) = 0.5 − 1
    assert float(z) == pytest.approx(-0.5)
    loss, _ = cdpo_loss(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), beta=0.5, expert_chosen=t([-3.0]),
                        expert_rejected=t([-1.0]))
    assert float(loss) == pytest.approx(math.log1p(math.exp(0.5)), abs=1e-6)
    # plain DPO (the fine-tuned baseline): no expert term
    assert float(cdpo_margin(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), beta=0.5)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both"):
        cdpo_margin(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), beta=0.5, expert_chosen=t([-3.0]))


def test_cdpo_answer_depends_on_the_reference():
    """The policy alone prefers the rejected answer (−2 < −1); against its reference it has moved toward the chosen
    one (+2 vs 0): CDPO must count the move, not the level."""
    t = torch.tensor
    chosen, rejected = t([-2.0], requires_grad=True), t([-1.0], requires_grad=True)
    ref_c, ref_r = t([-4.0]), t([-1.0])
    loss, z = cdpo_loss(chosen, rejected, ref_c, ref_r, beta=1.0)
    assert float(z) == pytest.approx(2.0)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-2.0)), abs=1e-6)
    _, without = cdpo_loss(chosen, rejected, torch.zeros(1), torch.zeros(1), beta=1.0)
    assert float(without) < 0  # a reference-free margin would have it the other way round
    loss.backward()
    s = 1 / (1 + math.exp(2.0))  # −d/dz log σ(z) = σ(−z)
    assert float(chosen.grad) == pytest.approx(-s, abs=1e-6)  # descending raises the chosen answer's log-prob
    assert float(rejected.grad) == pytest.approx(s, abs=1e-6)


def test_cdpo_expert_term_is_a_constant():
    t = torch.tensor
    e_w, e_l = t([-1.0], requires_grad=True), t([-2.0], requires_grad=True)
    loss, _ = cdpo_loss(t([-1.0], requires_grad=True), t([-1.0]), t([-1.0]), t([-1.0]), beta=1.0,
                        expert_chosen=e_w, expert_rejected=e_l)
    loss.backward()
    assert e_w.grad is None and e_l.grad is None


def test_select_experts_takes_the_highest_weight():
    scores = torch.tensor([[0.1, 2.0, -1.0], [3.0, 2.9, 0.0], [-1.0, -2.0, -0.5]])
    assert select_experts(scores).tolist() == [1, 0, 2]


def test_fused_scores_are_the_sum_of_log_softmaxes_and_can_change_the_argmax():
    expert = torch.tensor([2.0, 1.5, 0.0])
    router = torch.tensor([0.0, 2.0, 0.0])
    fused = fuse_logprobs(router, expert)
    le = [2.0, 1.5, 0.0]
    lse_e = math.log(sum(math.exp(x) for x in le))
    lse_r = math.log(2 + math.exp(2.0))
    want = [le[0] - lse_e - lse_r, le[1] - lse_e + 2.0 - lse_r, le[2] - lse_e - lse_r]
    assert fused.tolist() == pytest.approx(want, abs=1e-6)
    assert int(expert.argmax()) == 0 and int(fused.argmax()) == 1  # the router's term changed the token
    alone = fuse_logprobs(None, expert)
    assert alone.tolist() == pytest.approx([x - lse_e for x in le], abs=1e-6)
