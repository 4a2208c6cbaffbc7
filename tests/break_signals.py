"""Break each learning signal on purpose, once, and check that a test fails (a mutation run, not part of pytest).

    python tests/break_signals.py [--only NAME ...] [--list]

For every break the source tree is copied (without the virtualenv and data) into a temporary folder, one line of
code is changed there, and the tests named beside the break are run in that copy; a break that leaves every one
of its tests green is a signal no test guards. Prints one line per break and exits 1 if any break survived.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Break:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


TOKEN = ("tests/test_tokenroute_losses.py", "tests/test_tokenroute_train.py")
BREAKS = [
    Break("routing loss: sign flipped", "fusion/levels/token/losses.py",
          "return -(torch.softmax(scores, -1) * lp).sum(-1).mean()",
          "return (torch.softmax(scores, -1) * lp).sum(-1).mean()", TOKEN),
    Break("routing loss: on every position, not only where the experts disagree", "fusion/levels/token/train.py",
          "routing_loss(out.route_logits[:, :-1], batch.elp, batch.info)",
          "routing_loss(out.route_logits[:, :-1], batch.elp, batch.comp)", TOKEN),
    Break("routing loss: mask ignored inside the loss", "fusion/levels/token/losses.py",
          "scores = route_logits[informative].float()\n    lp = expert_logp[informative].float()",
          "scores = route_logits.flatten(0, -2).float()\n    lp = expert_logp.flatten(0, -2).float()", TOKEN),
    Break("token-level cross-entropy: on prompt tokens too", "fusion/levels/token/train.py",
          "completion_ce(out.logits[:, :-1, :vocab_size], batch.ids[:, 1:], batch.comp)",
          "completion_ce(out.logits[:, :-1, :vocab_size], batch.ids[:, 1:], batch.attn[:, 1:].bool())", TOKEN),
    Break("CDPO: without its reference term", "fusion/levels/token/losses.py",
          "z = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))",
          "z = beta * (policy_chosen - policy_rejected)", TOKEN),
    Break("CDPO: sign of the margin flipped", "fusion/levels/token/losses.py",
          "return -F.logsigmoid(z).mean(), z", "return -F.logsigmoid(-z).mean(), z", TOKEN),
    Break("CDPO: expert term with the wrong sign", "fusion/levels/token/losses.py",
          "z = z + beta * (expert_chosen - expert_rejected).detach()",
          "z = z - beta * (expert_chosen - expert_rejected).detach()", TOKEN),
    Break("decoder: takes the lowest-weight expert", "fusion/levels/token/losses.py",
          "return route_scores.argmax(-1)", "return route_scores.argmin(-1)",
          ("tests/test_tokenroute_losses.py", "tests/test_tokenroute_engine.py")),
    Break("decoder: complementary logits subtracted", "fusion/levels/token/losses.py",
          "out = out + torch.log_softmax(router_logits.float(), -1)",
          "out = out - torch.log_softmax(router_logits.float(), -1)",
          ("tests/test_tokenroute_losses.py", "tests/test_tokenroute_engine.py")),
    Break("decoder: complementary logits dropped", "fusion/levels/token/engine.py",
          "final = fuse_logprobs(router_logits, chosen)", "final = fuse_logprobs(None, chosen)",
          ("tests/test_tokenroute_engine.py",)),
    Break("distillation: completion_only_loss=False", "fusion/core/lora.py",
          "completion_only_loss=True,", "completion_only_loss=False,",
          ("tests/test_distill_train.py::test_the_collator_labels_the_completion_only",)),
    Break("thought retrieval: least similar first", "fusion/levels/thought/bank.py",
          "order = np.argsort(-sims[j][ok], kind=\"stable\")[:k]",
          "order = np.argsort(sims[j][ok], kind=\"stable\")[:k]", ("tests/test_levels.py",)),
    Break("thought retrieval: near-duplicate guard off", "fusion/levels/thought/bank.py",
          "near = (norm_bank[rows] == qn[qi]) | (sims[j] >= threshold)",
          "near = np.zeros(rows.size, dtype=bool)", ("tests/test_levels.py",)),
    Break("reward: cost term added instead of subtracted", "fusion/levels/query/rewards.py",
          "return alpha * perf_n - beta * cost_n", "return alpha * perf_n + beta * cost_n",
          ("tests/test_rewards_routers.py",)),
    Break("router: routes to the lowest utility", "fusion/levels/query/features.py",
          "    return np.argmax(U, axis=1)", "    return np.argmin(U, axis=1)",
          ("tests/test_rewards_routers.py", "tests/test_routers_family.py")),
    Break("promotion gate: promotes the worse model", "fusion/core/promotion.py",
          "paired_bootstrap(chal - ref,", "paired_bootstrap(ref - chal,", ("tests/test_promote.py",)),
    Break("promotion gate: decides on the mean, not on the interval", "fusion/core/promotion.py",
          'if adv["lo"] > margin:', 'if adv["mean"] > margin:', ("tests/test_promote.py",)),
    Break("summary: differences not paired per query", "fusion/core/summary.py",
          "ci = difference(perf, base,", "ci = difference(perf, np.full_like(base, base.mean()),",
          ("tests/test_summary.py",)),
]


def _copy(dst: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "data", "models", "reports", "metrics", "mlflow.db",
                                    "mlartifacts", ".cache", ".prefect", "__pycache__", ".dvc", ".dvc-storage", "mlruns")
    shutil.copytree(ROOT, dst, ignore=ignore, symlinks=True)


def _pytest(tree: Path, tests: tuple[str, ...]) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests],
                          cwd=tree, env=env, capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    failed = [x.split(" ", 1)[1].split(" - ")[0] for x in lines if x.startswith("FAILED ")]
    summary = lines[-1] if lines else proc.stderr[-200:]
    return proc.returncode, time.perf_counter() - t0, (f"{summary}; failed: {', '.join(failed)}" if failed else summary)


def baseline(breaks: list[Break]) -> None:
    """Every test the breaks name passes on the unbroken copy (else a failure would prove nothing)."""
    tests = tuple(dict.fromkeys(t for b in breaks for t in b.tests))
    with tempfile.TemporaryDirectory(prefix="break-") as tmp:
        tree = Path(tmp) / "repo"
        _copy(tree)
        rc, secs, last = _pytest(tree, tests)
    print(f"baseline ({secs:.0f} s): {last}", flush=True)
    if rc != 0:
        raise SystemExit("the tests fail without any break: fix them first")


def run(brk: Break) -> tuple[bool, float, str]:
    """``(caught, seconds, last line of pytest)``: caught when a test *fails* (pytest exit status 1); an error
    while collecting the tests (status 2) means the break did not apply cleanly and counts as not caught."""
    with tempfile.TemporaryDirectory(prefix="break-") as tmp:
        tree = Path(tmp) / "repo"
        _copy(tree)
        f = tree / brk.path
        text = f.read_text()
        if text.count(brk.old) != 1:
            raise SystemExit(f"{brk.name}: the line to break is not in {brk.path} exactly once (the code moved?)")
        f.write_text(text.replace(brk.old, brk.new))
        rc, secs, last = _pytest(tree, brk.tests)
        return rc == 1, secs, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="substrings of the breaks' names to run")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    chosen = [b for b in BREAKS if not args.only or any(s in b.name for s in args.only)]
    if args.list:
        for b in chosen:
            print(f"{b.name}  [{b.path}]  tests: {' '.join(b.tests)}")
        return 0
    baseline(chosen)
    survived = 0
    for b in chosen:
        caught, secs, last = run(b)
        survived += not caught
        print(f"{'CAUGHT  ' if caught else 'SURVIVED'} {b.name} ({secs:.0f} s): {last}", flush=True)
    print(f"{len(chosen) - survived} of {len(chosen)} breaks caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
