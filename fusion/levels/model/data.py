"""SFT data for model-level fusion: prompt–completion examples from a routing log.

The distilled set takes, per training query, up to ``k`` correct responses (:func:`fusion.core.selection.select_responses`:
ranked by performance, judge or hybrid; one per LLM or not; ties to the shorter or the longer, then the cheaper),
after the gold answer with ``gold`` (FusionFactory's recipe). The ``label-only`` baseline takes the gold answer
instead, written in the form the task's prompt asks for. Guards, each tested:

- only training queries, and never one whose normalised text is also a held-out query (logs repeat questions
  across splits: LLMRouter's test has 119 train questions);
- only correct responses (the selection's ``min_performance``);
- a code target is code: the response's code block, without any line of the task's tests; a label-only code
  example needs a canonical solution, and the ground truth of code tasks holds tests, so without one those are
  counted as ``no canonical solution`` and left out — never the tests as a target. A log may carry a ``solution``
  column (a query's reference solution, e.g. MBPP's code joined to RouterBench's prompts): where it is set, it is
  the gold target (a code solution fenced as the code prompt asks).

The examples are TRL's conversational prompt–completion form (``prompt`` = [user message], ``completion`` =
[assistant message]), which trains with ``completion_only_loss`` on any chat template (SmolLM2's has no
``{% generation %}`` markers, so TRL's assistant-only loss fails on it). Shared few-shot prefixes of a task's prompts
(RouterBench's) are stripped, so the student learns and is evaluated zero-shot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from fusion.core.embedding import shared_prefixes, strip_prefixes
from fusion.core.examples import EXAMPLE_COLUMNS, held_out_texts
from fusion.core.selection import normalise_text, select_responses
from fusion.tasks.extract import extract_code
from fusion.tasks.formatting import decode_golds

DISTILLED, LABEL_ONLY = "distilled", "label-only"
NO_CANONICAL = "no canonical solution (a code task's ground truth holds its tests)"
NO_GOLD = "no gold answer"
TEST_DUPLICATE = "also a held-out query (same normalised text)"

#: how the label-only target states the gold answer, by the task's prompt style (what its scorer reads)
_ANSWER_FORMS = {"math": "\\boxed{{{gold}}}"}
_DEFAULT_FORM = "Answer: {gold}"


@dataclass
class SFTData:
    examples: pd.DataFrame  # EXAMPLE_COLUMNS
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> training queries left out

    def report(self) -> dict:
        ex = self.examples
        lengths = {col: ex[col].str.len().describe(percentiles=[0.5, 0.9]).round(1).to_dict()
                   for col in ("prompt", "completion")} if len(ex) else {}
        return {"examples": len(ex), "queries": int(ex["query_id"].nunique()) if len(ex) else 0,
                "per_source": ex["source"].value_counts().to_dict() if len(ex) else {},
                "per_task": ex["task"].value_counts().to_dict() if len(ex) else {},
                "chars": lengths, "skipped": self.skipped}




def _prompts(rows: pd.DataFrame, prefixes: list[str]) -> list[str]:
    texts = rows["prompt"].where(rows["prompt"].notna(), rows["query"]).astype(str).tolist()
    return [t.strip() for t in strip_prefixes(texts, prefixes)]


def test_lines(ground_truth: str | None) -> set[str]:
    """The stripped non-empty lines of a code task's tests (MBPP ``tests``/``setup``, HumanEval ``test``)."""
    if ground_truth is None or pd.isna(ground_truth):
        return set()
    try:
        spec = json.loads(ground_truth)
    except (json.JSONDecodeError, TypeError):
        return set()
    if not isinstance(spec, dict):
        return set()
    text = "\n".join([*(spec.get("tests") or []), spec.get("test") or ""])
    return {ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")}


def code_target(response: str, ground_truth: str | None) -> str | None:
    """The response's code as a fenced block, with every line of the task's tests removed (None if no code)."""
    tests = test_lines(ground_truth)
    code = extract_code(response)
    kept = [ln for ln in code.splitlines() if ln.strip() not in tests]
    code = "\n".join(kept).strip("\n")
    return f"```python\n{code}\n```" if code.strip() else None


def gold_target(task: str, ground_truth: str | None, domain: str | None,
                solution: str | None = None) -> tuple[str | None, str | None]:
    """(the label-only completion, None) or (None, why there is none). ``solution``: the query's reference
    solution when the log has one (it wins over the ground truth)."""
    if solution is not None and not pd.isna(solution) and str(solution).strip():
        text = str(solution).strip()
        if domain == "code" and not text.startswith("```"):
            text = f"```python\n{text}\n```"
        return text, None
    if domain == "code":
        return None, NO_CANONICAL
    if ground_truth is None or pd.isna(ground_truth) or not str(ground_truth).strip():
        return None, NO_GOLD
    from fusion.tasks.suite import TASKS

    style = TASKS.get(task).prompt_style.name if task in TASKS else ""
    gold = decode_golds(str(ground_truth))[0]
    return _ANSWER_FORMS.get(style, _DEFAULT_FORM).format(gold=gold), None


def _gold_rows(train: pd.DataFrame) -> pd.DataFrame:
    """One row per training query (its direct-mode row when there is one: the prompt without "think step by step"),
    in query-id order."""
    direct_first = train.assign(_d=(train["mode"] != "direct").astype(int)).sort_values(["query_id", "_d"],
                                                                                         kind="stable")
    return direct_first.drop_duplicates("query_id").drop(columns="_d")


def _frame(rows: pd.DataFrame, source: list[str], ranks: list[int], completions: list[str | None],
           prefixes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"query_id": rows["query_id"].astype(str).tolist(), "task": rows["task"].astype(str).tolist(),
                         "domain": rows["domain"].astype(str).tolist(), "source": source, "rank": ranks,
                         "prompt": _prompts(rows, prefixes), "completion": completions})


def build_sft_data(log: pd.DataFrame, *, kind: str = DISTILLED, strategy: str = "hybrid", k: int = 1,
                   min_performance: float = 1.0, max_queries: int | None = None, gold: bool = False,
                   tie_break: str = "shorter", one_per_llm: bool = True, train_split: str = "train") -> SFTData:
    """The SFT examples of ``kind`` (``distilled`` or ``label-only``) from ``log``'s training queries. With ``gold``
    the distilled set holds each query's gold answer first (rank 0), then its selected responses (FusionFactory)."""
    if kind not in (DISTILLED, LABEL_ONLY):
        raise ValueError(f"unknown SFT data kind {kind!r}; expected {DISTILLED!r} or {LABEL_ONLY!r}")
    prefixes = shared_prefixes(log)
    held_out = held_out_texts(log, train_split)
    train = log[log["split"] == train_split]
    leaking = train["query"].map(normalise_text).isin(held_out)
    skipped: dict[str, int] = {}
    if leaking.any():
        skipped[TEST_DUPLICATE] = int(train.loc[leaking, "query_id"].nunique())
    train = train[~leaking]
    ids = sorted(train["query_id"].unique())
    if max_queries is not None:
        train = train[train["query_id"].isin(set(ids[:max_queries]))]
    frames = []
    if kind == LABEL_ONLY or gold:
        rows = _gold_rows(train)
        completions = []
        solutions = rows["solution"] if "solution" in rows.columns else [None] * len(rows)
        for task, gt, dom, sol in zip(rows["task"], rows["ground_truth"], rows["domain"], solutions, strict=True):
            target, why = gold_target(str(task), gt, dom, sol)
            completions.append(target)
            if why:
                skipped[why] = skipped.get(why, 0) + 1
        frames.append(_frame(rows, ["gold"] * len(rows), [1 if kind == LABEL_ONLY else 0] * len(rows), completions,
                             prefixes))
    if kind == DISTILLED:
        sel = select_responses(train, strategy=strategy, n=k, min_performance=min_performance, split=None,
                               tie_break=tie_break, one_per_llm=one_per_llm)
        for reason, n in sel.reason_counts().items():
            skipped[reason] = skipped.get(reason, 0) + n
        rows = sel.picks
        completions = [code_target(str(resp), gt) if dom == "code" else str(resp).strip()
                       for resp, gt, dom in zip(rows["response"], rows["ground_truth"], rows["domain"], strict=True)]
        ex = _frame(rows, rows["llm"].astype(str).tolist(), rows["rank"].tolist(), completions, prefixes)
        no_code = ex["completion"].isna()
        if no_code.any():
            skipped["no code in the response"] = int(no_code.sum())
        frames.append(ex[~no_code])
    ex = pd.concat(frames, ignore_index=True)
    ex = ex[ex["completion"].notna()].sort_values(["query_id", "rank"], kind="stable").reset_index(drop=True)
    return SFTData(ex[EXAMPLE_COLUMNS], skipped)
