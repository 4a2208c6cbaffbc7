"""The template bank and retrieval with a leakage guard.

The bank (Parquet; a DVC output and an MLflow artifact) holds one row per training query: its question (without a
task's shared few-shot block), the template summarised from its best responses (null with ``error`` when the
summary failed), the best response itself (for the few-shot baseline), the LLMs the template came from, and the
question's embedding.

Retrieval, for a query: the ``k`` most similar bank rows of the same task (cosine of the question embeddings;
rows without a template are skipped for templates, kept for few-shot), never the query's own row (same query id),
never a row whose question is a near-duplicate of the query (same normalised text, or cosine above the threshold).
A task with no usable row gives no context: the query falls back to zero-shot, and the count says so.

Search is one matrix product per task over L2-normalised embeddings (exact; a bank of 10^5 templates of 384
floats is 150 MB and one product per batch of queries), the same way the kNN router searches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fusion.core.selection import normalise_text

BANK_COLUMNS = ["query_id", "task", "domain", "question", "template", "best_answer", "sources", "error"]
TEMPLATE, FEW_SHOT = "template", "few-shot"


def build_bank(summarised: pd.DataFrame, embeddings: np.ndarray) -> pd.DataFrame:
    bank = summarised[BANK_COLUMNS].copy().reset_index(drop=True)
    bank["sources"] = bank["sources"].map(lambda s: ",".join(s) if isinstance(s, list | tuple | np.ndarray) else s)
    bank["embedding"] = [np.asarray(v, dtype=np.float32).tolist() for v in embeddings]
    return bank


def bank_counts(bank: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per task: rows, usable templates, failed summaries."""
    out = {}
    for task, g in bank.groupby("task", sort=True):
        out[str(task)] = {"questions": len(g), "templates": int(g["template"].notna().sum()),
                          "failed": int(g["template"].isna().sum())}
    return out


@dataclass
class Retrieved:
    contexts: list[list[int]]  # per query: bank row positions, best first
    fallbacks: int  # queries that got no context (zero-shot)
    excluded_self: int  # own rows skipped
    excluded_near_duplicates: int  # near-duplicate rows skipped
    per_task_fallbacks: dict[str, int] = field(default_factory=dict)


def retrieve(bank: pd.DataFrame, queries: pd.DataFrame, query_embeddings: np.ndarray, *, k: int,
             threshold: float, kind: str = TEMPLATE) -> Retrieved:
    """For each row of ``queries`` (``query_id, task, question``) the ``k`` best bank rows of its task."""
    if kind not in (TEMPLATE, FEW_SHOT):
        raise ValueError(f"unknown retrieval kind {kind!r}")
    usable = bank["template"].notna() if kind == TEMPLATE else bank["best_answer"].notna()
    emb = np.asarray(bank["embedding"].tolist(), dtype=np.float32) if len(bank) else np.zeros((0, 1), np.float32)
    norm_bank = bank["question"].map(normalise_text).to_numpy()
    qn = queries["question"].map(normalise_text).to_numpy()
    contexts: list[list[int]] = [[] for _ in range(len(queries))]
    self_n = dup_n = 0
    per_task: dict[str, int] = {}
    for task, qidx in queries.groupby("task", sort=False).indices.items():
        rows = np.flatnonzero((bank["task"] == task).to_numpy() & usable.to_numpy())
        if rows.size:
            sims = query_embeddings[qidx] @ emb[rows].T
            for j, qi in enumerate(qidx):
                own = bank["query_id"].to_numpy()[rows] == queries["query_id"].iloc[qi]
                near = (norm_bank[rows] == qn[qi]) | (sims[j] >= threshold)
                self_n += int(own.sum())
                dup_n += int((near & ~own).sum())
                ok = ~(own | near)
                order = np.argsort(-sims[j][ok], kind="stable")[:k]
                contexts[qi] = rows[ok][order].tolist()
        for qi in qidx:
            if not contexts[qi]:
                per_task[str(task)] = per_task.get(str(task), 0) + 1
    return Retrieved(contexts, sum(per_task.values()), self_n, dup_n, per_task)


TEMPLATE_PROMPT = """Guides from similar solved problems (follow the one that fits):
{guides}
Now the problem to solve:

{prompt}"""
FEW_SHOT_PROMPT = """Examples of similar solved problems:
{examples}
Now the problem to solve:

{prompt}"""


#: FusionFactory's thought prompt (thought_level/get_thought_prompt.py), each similar question beside its template.
#: Its last sentence asked for the answer in <answer> tags, which its own evaluation ignored (it scores the whole
#: output); here the task's prompt says how to write the answer, so the instruction stops before that sentence.
FUSIONFACTORY_HEAD = "Here are some similar questions and guidelines in how to solve them:\n\n"
FUSIONFACTORY_PAIR = "Question{i}: {question}\n\nThought Template {i}: {template}\n\n"
FUSIONFACTORY_TAIL = ("Now, please solve the following question:\n\n{prompt}\n\n Use the thought templates above as "
                      "guidance. Reason step by step. And provide the final answer!")


def with_templates(prompt: str, templates: list[str], questions: list[str] | None = None, *,
                   style: str = "compact") -> str:
    """``prompt`` with the retrieved ``templates``: as numbered guides (``compact``), or FusionFactory's layout with
    each template's source question beside it (``fusionfactory``)."""
    if not templates:
        return prompt
    if style == "fusionfactory":
        if questions is None or len(questions) != len(templates):
            raise ValueError("the fusionfactory thought prompt shows each template beside its question")
        pairs = "".join(FUSIONFACTORY_PAIR.format(i=i, question=q.strip(), template=t.strip())
                        for i, (q, t) in enumerate(zip(questions, templates, strict=True), 1))
        return FUSIONFACTORY_HEAD + pairs + FUSIONFACTORY_TAIL.format(prompt=prompt)
    if style != "compact":
        raise ValueError(f"unknown thought prompt style {style!r}; expected 'compact' or 'fusionfactory'")
    guides = "".join(f"\nGuide {i}:\n{t.strip()}\n" for i, t in enumerate(templates, 1))
    return TEMPLATE_PROMPT.format(guides=guides, prompt=prompt)


def with_examples(prompt: str, examples: list[tuple[str, str]]) -> str:
    if not examples:
        return prompt
    shots = "".join(f"\nExample {i}:\nProblem: {q.strip()}\nSolution: {a.strip()}\n"
                    for i, (q, a) in enumerate(examples, 1))
    return FEW_SHOT_PROMPT.format(examples=shots, prompt=prompt)


def augmented_prompts(bank: pd.DataFrame, queries: pd.DataFrame, retrieved: Retrieved, kind: str, *,
                      style: str = "compact") -> list[str]:
    out = []
    for prompt, ctx in zip(queries["prompt"], retrieved.contexts, strict=True):
        if kind == TEMPLATE:
            out.append(with_templates(prompt, [bank["template"].iloc[i] for i in ctx],
                                      [bank["question"].iloc[i] for i in ctx], style=style))
        else:
            out.append(with_examples(prompt, [(bank["question"].iloc[i], bank["best_answer"].iloc[i]) for i in ctx]))
    return out
