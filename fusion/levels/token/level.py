"""The token level as plain functions over files and frames, which the stages, the CLI and the benchmark call:
the experts (what they are, a fingerprint of their weights, loading them), the training sequences and the
experts' statistics, training the router (and the no-routing baseline), decoding, and the evaluation against
the paper's baselines."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fusion.core.config import JudgeConfig
from fusion.core.evaluation import compare, held_out_queries, score_arm
from fusion.core.generate import BACKEND_COLUMNS, backend_session, fixed, generate_cached
from fusion.core.identity import local_spec, model_key, output_key
from fusion.levels.token.config import TokenRouteConfig
from fusion.levels.token.engine import Generated, TokenRouteDecoder
from fusion.levels.token.router import ExpertRecord, RouterLM, expert_records, load_router
from fusion.levels.token.vocab import VocabularyMismatchError, shared_vocab_size
from fusion.models.load import load_causal_lm

logger = logging.getLogger(__name__)

FUSED, ROUTING_ONLY, SELECTION, PLAIN = "fusionroute", "routing-only", "sequence-selection", "fine-tuned"
FUSED_SFT = "fusionroute-sft"  # FusionRoute with the router as the SFT phase left it (the paper's CDPO ablation)


def models_per_token(n_experts: int, policy: str) -> dict[str, int]:
    """How many models an arm runs per generated token (what its answers are priced at, times one model's price):
    the router and, under ``lazy``, the one expert it selects (``all``: every expert); sequence selection runs every
    expert over the whole answer; an expert alone or the fine-tuned model, one (a lazy expert's catch-up on the
    tokens it skipped is not counted)."""
    routed = 1 + (1 if policy == "lazy" else n_experts)
    return {FUSED: routed, FUSED_SFT: routed, ROUTING_ONLY: routed, SELECTION: n_experts}
ROUTER_DIR, PLAIN_DIR, SFT_ROUTER_DIR = "router", "plain", "router_sft"


class ExpertMismatchError(ValueError):
    """The experts given are not the ones the router was trained for."""


# ---- experts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expert:
    name: str
    model: str
    adapter: Path | None = None

    def fingerprint(self) -> str:
        """The weights' identity (:func:`fusion.core.identity.model_key`): the model reference (a folder by its
        files, a registered model by version) and the adapter's files by content."""
        if self.adapter is not None and not Path(self.adapter).is_dir():
            raise FileNotFoundError(f"expert {self.name!r}: adapter folder {self.adapter} does not exist "
                                    "(the experts stage writes models/experts/<name>/adapter)")
        return model_key(local_spec(self.name, self.model), adapter=self.adapter)

    def load(self, *, model_cache: Path, device: str = "cpu", dtype: str = "float32"):
        """``(model, tokenizer)``: the adapter merged in, so each expert is a plain model with its own cache."""
        model, tok, _ = load_causal_lm(self.model, model_cache=model_cache, adapter=self.adapter, merge=True,
                                       device=device, dtype=dtype)
        return model.eval(), tok

    def record(self) -> ExpertRecord:
        return ExpertRecord(self.name, self.model, str(self.adapter) if self.adapter else None, self.fingerprint())


def experts_of(cfg: TokenRouteConfig, experts_dir: Path) -> list[Expert]:
    """The router's experts in head order: each on its model (default: ``cfg.base``) with its adapter (a domain
    expert's is where the experts stage writes it: ``experts_dir/<name>/adapter``)."""
    return [Expert(e.name, e.model or cfg.base, (Path(experts_dir) / e.name / "adapter") if e.train else e.adapter)
            for e in cfg.experts]


def check_recorded(recorded: Sequence[ExpertRecord], experts: Sequence[Expert]) -> None:
    """Refuse experts that differ from those the router was trained for (names, order, weights)."""
    want = [(r.name, r.fingerprint) for r in recorded]
    got = [(e.name, e.fingerprint()) for e in experts]
    if [n for n, _ in want] != [n for n, _ in got]:
        raise ExpertMismatchError(f"the router was trained for experts {[n for n, _ in want]} (in this order), "
                                  f"not {[n for n, _ in got]}")
    changed = [n for (n, a), (_, b) in zip(want, got, strict=True) if a != b]
    if changed:
        detail = {r.name: {"model": r.model, "adapter": r.adapter} for r in recorded if r.name in changed}
        raise ExpertMismatchError(f"experts {changed} are not the weights the router was trained with (recorded: "
                                  f"{detail}); retrain the router or load the recorded experts")


def load_experts(experts: Sequence[Expert], *, model_cache: Path, device: str = "cpu", dtype: str = "float32"):
    """``([(name, model)], tokenizer)``, after the shared-vocabulary check."""
    loaded, toks = [], {}
    for e in experts:
        model, tok = e.load(model_cache=model_cache, device=device, dtype=dtype)
        loaded.append((e.name, model))
        toks[e.name] = tok
    shared_vocab_size(toks, dict(loaded))
    return loaded, toks[experts[0].name]


# ---- the router ------------------------------------------------------------------------------------------------


def init_router(ref: str, n_experts: int, *, model_cache: Path, device: str, dtype: str, seed: int = 0):
    lm, tok, _ = load_causal_lm(ref, model_cache=model_cache, merge=True, device=device, dtype=dtype)
    return RouterLM(lm, n_experts, head_seed=seed), tok


def with_lora(router: RouterLM, spec) -> RouterLM:
    """LoRA on the router LM (the head stays fully trainable); :func:`merged` folds it back before saving."""
    from peft import LoraConfig, get_peft_model

    router.lm = get_peft_model(router.lm, LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                                                     target_modules=list(spec.target_modules),
                                                     task_type="CAUSAL_LM"))
    return router


def merged(router: RouterLM) -> RouterLM:
    if hasattr(router.lm, "merge_and_unload"):
        router.lm = router.lm.merge_and_unload()
    return router


def open_router(router_dir: Path, experts: Sequence[Expert] | None = None, *, model_cache: Path,
                device: str = "cpu", dtype: str = "float32", check: bool = True):
    """``(router, [(name, model)], tokenizer)`` of a saved router and its experts (the recorded ones unless
    ``experts`` is given), refusing experts other than those recorded and a vocabulary they do not share."""
    recorded = expert_records(router_dir)
    if experts is None:
        experts = [Expert(r.name, r.model, Path(r.adapter) if r.adapter else None) for r in recorded]
    if check:
        check_recorded(recorded, experts)
    router, rtok, _ = load_router(router_dir, device=device, dtype=dtype)
    loaded, tok = load_experts(experts, model_cache=model_cache, device=device, dtype=dtype)
    shared_vocab_size({"router": rtok, "experts": tok}, {"router": router.lm})
    return router, loaded, tok


# ---- training data, statistics, training ------------------------------------------------------------------------


def training_data(tokenizer, sft_frames: Sequence[pd.DataFrame], log: pd.DataFrame | None, cfg) -> tuple[pd.DataFrame, dict]:
    """The tokenized SFT examples (mixed across domains) and preference pairs, and a report of their counts."""
    from fusion.levels.token.data import PAIR_COLUMNS, build_sequences, mix_sft, preference_pairs

    sft = mix_sft(list(sft_frames), per_domain=cfg.per_domain, seed=cfg.seed)
    pairs, pair_skips = pd.DataFrame(columns=PAIR_COLUMNS), {}
    if log is not None and cfg.max_pairs != 0:
        pairs, pair_skips = preference_pairs(log, min_performance=cfg.min_performance, max_pairs=cfg.max_pairs,
                                             seed=cfg.seed)
    seqs, seq_skips = build_sequences(tokenizer, sft, pairs, max_length=cfg.max_length)
    report = {"sft_examples": int((seqs["kind"] == "sft").sum()),
              "sft_per_domain": seqs.loc[seqs["kind"] == "sft", "domain"].value_counts().to_dict(),
              "sft_per_task": seqs.loc[seqs["kind"] == "sft", "task"].value_counts().to_dict(),
              "pairs": int((seqs["kind"] == "chosen").sum()),
              "pairs_per_task": seqs.loc[seqs["kind"] == "chosen", "task"].value_counts().to_dict(),
              "pairs_skipped": pair_skips, "sequences_skipped": seq_skips,
              "completion_tokens": int(sum(len(x) - p for x, p in zip(seqs["input_ids"], seqs["prompt_len"],
                                                                       strict=True)))}
    return seqs, report


def compute_stats(seqs: pd.DataFrame, experts: Sequence[Expert], tokenizer, out: Path, *, model_cache: Path,
                  device: str = "cpu", dtype: str = "float32", batch_size: int = 8) -> dict:
    """Every expert's statistics of ``seqs`` in ``out`` (one expert resident at a time; up-to-date ones kept)."""
    from fusion.levels.token.data import sequences_digest
    from fusion.levels.token.stats import compute_all

    vocab = shared_vocab_size({"base": tokenizer})

    def loader(e: Expert):
        def load():
            model, tok = e.load(model_cache=model_cache, device=device, dtype=dtype)
            shared_vocab_size({"base": tokenizer, e.name: tok}, {e.name: model})
            return model
        return load

    def bar(name: str, total: int):
        progress = Progress(TextColumn(f"[bold]statistics {name}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn())
        progress.start()
        task = progress.add_task(name, total=total)

        def advance(n: int) -> None:
            progress.update(task, advance=n)
            if progress.tasks[0].completed >= total:
                progress.stop()
        return advance

    return compute_all(seqs, [(e.name, e.fingerprint(), loader(e)) for e in experts], out,
                       digest=sequences_digest(seqs), vocab_size=vocab, batch_size=batch_size, progress_factory=bar)


def train_variant(seqs: pd.DataFrame, stats_dir: Path, experts: Sequence[Expert], cfg: TokenRouteConfig, *,
                  init: str, work: Path, model_cache: Path, fused: bool = True, on_step=None):
    """``(router, tokenizer, outcome, fingerprint, after_sft)``: the router trained from ``init`` (``fused=False``:
    the no-routing baseline), resuming from ``work``, and the router as the SFT phase left it (None when there was
    no preference phase after it)."""
    from fusion.levels.token.data import sequences_digest
    from fusion.levels.token.stats import MANIFEST, read_all
    from fusion.levels.token.train import AFTER_SFT, fingerprint, train_router

    manifest = json.loads((Path(stats_dir) / MANIFEST).read_text())
    digest = sequences_digest(seqs)
    if manifest.get("sequences") != digest:
        raise ValueError(f"the expert statistics in {stats_dir} are of other sequences: run `fusion tokenroute data`")
    stale = [e.name for e in experts if manifest.get("experts", {}).get(e.name) != e.fingerprint()]
    if stale:
        raise ValueError(f"the expert statistics of {stale} are missing or out of date (their weights changed): "
                         "run `fusion tokenroute data`")
    names = [e.name for e in experts]
    stats = read_all(stats_dir, names)
    t = cfg.train
    router, tok = init_router(init, len(experts), model_cache=model_cache, device=t.device, dtype=t.dtype, seed=t.seed)
    if t.lora is not None:
        with_lora(router, t.lora)
    vocab = shared_vocab_size({"router": tok}, {"router": router.lm})
    fp = fingerprint(digest, manifest, t, fused=fused, init=init)
    outcome = train_router(router, seqs, stats, names, t, vocab_size=vocab, work=work, fp=fp, fused=fused,
                           on_step=on_step)
    after_sft = None
    snap = Path(work) / AFTER_SFT
    if snap.is_file():
        state = torch.load(snap, map_location=router.lm.device, weights_only=False)
        if state.get("fingerprint") == fp:
            after_sft = copy.deepcopy(router)
            after_sft.lm.load_state_dict(state["lm"])
            after_sft.head.load_state_dict(state["head"])
            after_sft = merged(after_sft)
    return merged(router), tok, outcome, fp, after_sft


# ---- evaluation ------------------------------------------------------------------------------------------------

GEN_COLUMNS = {"text": "string", "prompt_tokens": "Int64", "output_tokens": "Int64", "experts": "string",
               "changed": "string", "finish_reason": "string", "error": "string"}


def decode_cached(decoder: TokenRouteDecoder, arm_key: str, prompts: Sequence[str], *, max_new_tokens: int,
                  cache_dir: Path, label: str) -> pd.DataFrame:
    """Greedy answers of ``decoder`` to ``prompts``, cached by (arm, prompt) through the shared generation loop
    (:func:`fusion.core.generate.generate_cached`): a killed evaluation resumes where it stopped."""

    def run(batch: list[str]) -> list[dict]:
        return [{"text": g.text, "prompt_tokens": g.prompt_tokens, "output_tokens": len(g.tokens),
                 "experts": json.dumps(g.experts), "changed": json.dumps([int(c) for c in g.changed]),
                 "finish_reason": g.finish_reason}
                for g in decoder.generate(batch, max_new_tokens=max_new_tokens)]

    keys = [output_key(arm_key, p, max_new_tokens=max_new_tokens) for p in prompts]
    got = generate_cached(keys, list(prompts), lambda: fixed(run, decoder.batch_size), cache_dir=cache_dir,
                          columns=GEN_COLUMNS, label=label)
    failed = got["error"].dropna()
    if len(failed):  # the engine runs in this process: a failure is a bug to see, not an answer to score
        raise RuntimeError(f"{label}: decoding failed for {len(failed)} prompt(s): {failed.iloc[0]}")
    return got.drop(columns=["key", "error"])


def routing_summary(gens: pd.DataFrame, queries: pd.DataFrame, names: Sequence[str]) -> dict:
    """Per task and overall: the share of tokens each expert produced and how often the complementary logits
    changed the argmax token."""
    experts = [json.loads(x) for x in gens["experts"]]
    changed = [json.loads(x) for x in gens["changed"]]
    out = {}
    for task in ["all", *sorted(queries["task"].unique())]:
        rows = range(len(gens)) if task == "all" else np.flatnonzero((queries["task"] == task).to_numpy())
        toks = [e for r in rows for e in experts[r]]
        ch = [c for r in rows for c in changed[r]]
        out[task] = {"tokens": len(toks), "shares": {n: (toks.count(i) / len(toks) if toks else 0.0)
                                                     for i, n in enumerate(names)},
                     "change_rate": (sum(ch) / len(ch)) if ch else 0.0}
    return out


@torch.inference_mode()
def mean_logprob(router: RouterLM, tokenizer, prompt: str, answer: str) -> float:
    """The router LM's mean log-prob per token of ``answer`` after the chat-rendered ``prompt``: the
    sequence-selection baseline's scorer."""
    from fusion.levels.token.data import tokenize

    t = tokenize(tokenizer, prompt, answer, 4096)
    if t is None:
        return float("-inf")
    ids, p = t
    x = torch.tensor([ids], device=router.lm.device)
    lp = torch.log_softmax(router.lm(input_ids=x).logits[0, :-1].float(), -1)
    tok = lp.gather(-1, x[0, 1:].unsqueeze(-1)).squeeze(-1)[p - 1:]
    return float(tok.mean()) if len(tok) else float("-inf")


def judge_answers(questions: Sequence[str], answers: Sequence[Sequence], judge: JudgeConfig, *, model_cache: Path,
                  cache_dir: Path) -> np.ndarray:
    """``[n_queries, n_experts]`` grades of each expert's answer by the judge, shown no reference (a reward
    model's view); NaN where the verdict is unreadable or the call failed. Cached like every generation."""
    from fusion.core.verdicts import PREFILL, judge_prompt, parse_verdict

    flat = [(q, str(a[i] or "")) for a in answers for i, q in enumerate(questions)]
    prompts = [judge_prompt(q, a, None, judge.rubric_version) for q, a in flat]
    mkey = model_key(judge.llm)
    keys = [output_key(mkey, p, max_new_tokens=judge.max_new_tokens, prefill=PREFILL) for p in prompts]
    session = backend_session(judge.llm, model_cache=model_cache, device=judge.device, dtype=judge.dtype,
                              batch_size=judge.batch_size, max_new_tokens=judge.max_new_tokens, prefill=PREFILL)
    got = generate_cached(keys, prompts, session, cache_dir=cache_dir, columns=BACKEND_COLUMNS, label="selection judge")
    grades = [parse_verdict(t)[0] if e is None or pd.isna(e) else None for t, e in zip(got["text"], got["error"],
                                                                                         strict=True)]
    return np.array([np.nan if g is None else g for g in grades], dtype=float).reshape(len(answers),
                                                                                          len(questions)).T


def select_answers(grades: np.ndarray | None, likelihood: np.ndarray) -> np.ndarray:
    """Per query the expert whose answer has the highest grade; among equal grades (or with no grade at all) the
    one the router LM finds most likely. ``[n_queries, n_experts]`` each; the index per query."""
    if grades is None:
        return likelihood.argmax(1)
    g = np.where(np.isnan(grades), -np.inf, grades)
    best = g.max(1, keepdims=True)
    tie_break = np.where(g == best, likelihood, -np.inf)
    return tie_break.argmax(1)


def evaluate(log: pd.DataFrame, router_dir: Path, plain_dir: Path | None, cfg: TokenRouteConfig, experts:
             Sequence[Expert], *, model_cache: Path, cache_dir: Path, workers: int = 2,
             sft_router_dir: Path | None = None, judge: JudgeConfig | None = None) -> tuple[dict, dict]:
    """FusionRoute against each expert alone, routing only, sequence selection (each expert answers; ``judge``
    grades each answer and the best is kept, as the paper's external reward model does, or the router LM's
    likelihood picks: ``eval.selection_scorer``) and the fine-tuned model without routing, on the held-out
    queries; ``(report, {arm: answers})``. With ``sft_router_dir`` (the router after its SFT phase) routing only
    routes with it, as the paper's ablation does, and FusionRoute after SFT is one more arm (what CDPO adds)."""
    ev = cfg.eval
    queries, skipped = held_out_queries(log, ev)
    if queries.empty:
        raise ValueError(f"no scoreable {ev.split!r} queries to evaluate the token level on")
    prompts = queries["prompt"].tolist()
    router, loaded, tok = open_router(router_dir, experts, model_cache=model_cache, device=ev.device, dtype=ev.dtype)
    router_key = model_key(local_spec("router", str(router_dir)))
    fps = {e.name: e.fingerprint() for e in experts}
    gens: dict[str, pd.DataFrame] = {}
    names = [n for n, _ in loaded]
    for name, model in loaded:
        dec = TokenRouteDecoder([(name, model)], tok, batch_size=ev.batch_size)
        gens[f"expert-{name}"] = decode_cached(dec, f"single:{fps[name]}", prompts, max_new_tokens=ev.max_new_tokens,
                                               cache_dir=cache_dir, label=f"expert {name}")
    routed = [(FUSED, "fused", router, router_key)]
    if sft_router_dir is not None and Path(sft_router_dir).is_dir():
        sft_router, sft_tok, _ = load_router(sft_router_dir, device=ev.device, dtype=ev.dtype)
        shared_vocab_size({"router": sft_tok, "experts": tok}, {"router": sft_router.lm})
        sft_key = model_key(local_spec("router", str(sft_router_dir)))
        routed += [(FUSED_SFT, "fused", sft_router, sft_key), (ROUTING_ONLY, "routing", sft_router, sft_key)]
    else:
        routed.append((ROUTING_ONLY, "routing", router, router_key))
    for arm, combine, r, rkey in routed:
        dec = TokenRouteDecoder(loaded, tok, r, combine=combine, policy=ev.policy, batch_size=ev.batch_size)
        key = f"{combine}:{rkey}:{','.join(fps[n] for n in names)}"
        gens[arm] = decode_cached(dec, key, prompts, max_new_tokens=ev.max_new_tokens, cache_dir=cache_dir, label=arm)
    # sequence selection: each expert answers, a scorer picks one answer per query
    likelihood = np.array([[mean_logprob(router, tok, p, str(gens[f"expert-{n}"].at[i, "text"] or ""))
                            for n in names] for i, p in enumerate(prompts)])
    graded = None
    if ev.selection_scorer == "judge" and judge is not None and judge.llm is not None:
        graded = judge_answers(queries["question"].tolist(), [gens[f"expert-{n}"]["text"].tolist() for n in names],
                               judge, model_cache=model_cache, cache_dir=Path(cache_dir) / "selection-judge")
    pick = select_answers(graded, likelihood)
    sel = pd.concat([gens[f"expert-{names[k]}"].iloc[[i]] for i, k in enumerate(pick)], ignore_index=True)
    sel["experts"] = [json.dumps([int(k)] * int(n)) for k, n in zip(pick, sel["output_tokens"], strict=True)]
    gens[SELECTION] = sel
    if plain_dir is not None and Path(plain_dir).is_dir():
        plain, _, _ = load_causal_lm(str(plain_dir), model_cache=model_cache, device=ev.device, dtype=ev.dtype)
        dec = TokenRouteDecoder([(PLAIN, plain)], tok, batch_size=ev.batch_size)
        key = "plain:" + model_key(local_spec(PLAIN, str(plain_dir)))
        gens[PLAIN] = decode_cached(dec, key, prompts, max_new_tokens=ev.max_new_tokens, cache_dir=cache_dir,
                                    label=PLAIN)
    arms = {arm: score_arm(queries, g["text"].tolist(), g["prompt_tokens"].tolist(), g["output_tokens"].tolist(),
                           [None] * len(g), workers) for arm, g in gens.items()}
    pairs = [(FUSED, b) for b in arms if b != FUSED]
    report = compare(arms, pairs, n_boot=ev.n_boot)
    report["skipped"] = skipped
    report["experts"] = names
    report["routing"] = {arm: routing_summary(gens[arm], queries, names)
                         for arm in (FUSED, FUSED_SFT, ROUTING_ONLY, SELECTION) if arm in gens}
    report["routing_only_router"] = "after SFT" if FUSED_SFT in gens else "final"
    report["selection_picks"] = {n: int((pick == i).sum()) for i, n in enumerate(names)}
    report["selection_scorer"] = "judge" if graded is not None else "router"
    examples = [{"query_id": q, "task": t, "experts": json.loads(e), "changed": json.loads(c)}
                for q, t, e, c in zip(queries["query_id"], queries["task"], gens[FUSED]["experts"],
                                      gens[FUSED]["changed"], strict=True)]
    by_task: dict[str, list] = {}
    for ex in examples:
        by_task.setdefault(ex["task"], []).append(ex)
    order: list[dict] = []  # one request per task first
    for i in range(max(len(g) for g in by_task.values())):
        order += [g[i] for g in by_task.values() if i < len(g)]
    report["examples"] = order[: ev.plot_examples]
    for arm, g in gens.items():
        arms[arm]["routing"] = g["experts"].to_numpy()
    return report, arms


def routing_plot(report: dict, path: Path) -> Path:
    """For a few requests: the expert chosen at each position, and the positions where the router's logits changed
    the expert's argmax token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = report["examples"] or [{"query_id": "(none)", "task": "", "experts": [], "changed": []}]
    names = report["experts"]
    fig, axes = plt.subplots(len(examples), 1, figsize=(8, 1.5 + 1.3 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples, strict=True):
        x = np.arange(len(ex["experts"]))
        ax.step(x, ex["experts"], where="post", lw=1.2, label="expert chosen")
        ch = np.flatnonzero(np.asarray(ex["changed"], dtype=bool))
        ax.scatter(ch, np.asarray(ex["experts"])[ch] if len(ch) else [], marker="x", color="red", zorder=3,
                   label="router changed the argmax")
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(-0.5, len(names) - 0.5)
        rate = float(np.mean(ex["changed"])) if ex["changed"] else 0.0
        ax.set_title(f"{ex['task']} (query {ex['query_id'][-8:]}): {len(x)} tokens, the router changed the "
                     f"argmax at {rate:.0%}", fontsize=9)
    axes[-1, 0].set_xlabel("generated position")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def generate(router_dir: Path, prompts: Sequence[str], *, model_cache: Path, policy: str = "lazy",
             max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0, stop: Sequence[str] = (),
             batch_size: int = 8, device: str = "cpu", dtype: str = "float32",
             experts: Sequence[Expert] | None = None) -> tuple[list[Generated], list[str]]:
    router, loaded, tok = open_router(router_dir, experts, model_cache=model_cache, device=device, dtype=dtype)
    dec = TokenRouteDecoder(loaded, tok, router, policy=policy, batch_size=batch_size)
    return dec.generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, stop=stop), \
        [n for n, _ in loaded]


__all__ = ["Expert", "ExpertMismatchError", "VocabularyMismatchError", "check_recorded", "evaluate", "experts_of",
           "generate", "init_router", "load_experts", "open_router", "routing_plot"]
