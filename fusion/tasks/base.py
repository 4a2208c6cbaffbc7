"""The task type and the task registry.

A :class:`Task` bundles what one benchmark needs: where its data lives (a Hugging Face id, config and split
names), how one record of that data becomes a self-contained ``query`` and a string ``ground_truth``, the
prompt wording for each mode, and the scorer named by ``metric``. Tasks are registered in :data:`TASKS` by
:mod:`fusion.tasks.suite` (which also holds :func:`~fusion.tasks.suite.get_task`); nothing is loaded at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fusion.core.registry import Registry
from fusion.tasks.domains import DOMAINS as DOMAIN_TASKS
from fusion.tasks.domains import domain_of
from fusion.tasks.prompts import PromptStyle

if TYPE_CHECKING:  # pragma: no cover
    pass

DOMAINS = tuple(DOMAIN_TASKS)  # the six domains, in FusionBench's order (the table is fusion.tasks.domains)

# The query table: what every loader returns, all columns strings.
QUERY_COLUMNS = ("query_id", "task", "domain", "split", "query", "ground_truth", "metric")

# record (in the dataset's own field layout) + seed -> (query, ground_truth)
Converter = Callable[[Mapping[str, Any], int], tuple[str, str]]
# (how many, seed, split or None) -> [(query, ground_truth)]
Generator = Callable[[int, int, str | None], list[tuple[str, str]]]


class TaskSourceError(RuntimeError):
    """A task's data cannot be read from the given source; the message says why and what to do instead."""


@dataclass(frozen=True)
class HFSource:
    """Where a task's data lives on the Hugging Face Hub.

    ``configs`` holds one config name (or ``None``), or several whose rows are concatenated (MATH's subjects).
    ``splits`` maps our split names (train/val/test) to the dataset's own split names.
    """

    path: str
    configs: tuple[str | None, ...] = (None,)
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})


@dataclass(frozen=True)
class Task:
    """One benchmark. ``score`` is a pure function of (response, ground_truth) returning a float in [0, 1]; its
    domain comes from the task -> domain table (:mod:`fusion.tasks.domains`)."""

    name: str
    metric: str
    description: str
    prompt_style: PromptStyle
    scorer: Callable[[str, str], float]
    convert: Converter | None = None
    generate: Generator | None = None
    hf: HFSource | None = None
    #: a record's worked reference solution, written as the task's prompt asks for the answer (tasks whose data
    #: has one: GSM8K's reasoning, MBPP's code); what a domain expert is trained on
    solution: Callable[[Mapping[str, Any]], str] | None = None
    #: a synthetic task's generator with worked solutions: ``(n, seed, split) -> [(query, truth, solution)]``
    generate_solved: Callable[[int, int, str | None], list[tuple[str, str, str]]] | None = None

    @property
    def domain(self) -> str:
        return domain_of(self.name)

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"task {self.name!r} is not in the task -> domain table (fusion.tasks.domains)")
        if (self.convert is None) == (self.generate is None):
            raise ValueError(
                f"task {self.name!r} needs exactly one of convert (a dataset) or generate (synthetic)"
            )

    @property
    def synthetic(self) -> bool:
        return self.generate is not None

    def build_prompt(self, query: str, mode: str) -> str:
        """The user message for ``query`` in ``mode`` ("direct" or "think")."""
        return self.prompt_style.build(query, mode)

    def score(self, response: str, ground_truth: str) -> float:
        return float(self.scorer(response, ground_truth))

    def score_many(
        self, responses: Sequence[str], ground_truths: Sequence[str], *, workers: int | None = None
    ) -> list[float]:
        """Score many pairs; code tasks run their programs in parallel sandboxes (``workers`` threads)."""
        if len(responses) != len(ground_truths):
            raise ValueError(f"{len(responses)} responses but {len(ground_truths)} ground truths")
        from fusion.tasks.scoring import score_code_many

        if self.domain == "code":
            return score_code_many(responses, ground_truths, workers=workers)
        return [self.score(r, g) for r, g in zip(responses, ground_truths, strict=True)]


TASKS = Registry[Task]("task")


def register_task(task: Task) -> Task:
    return TASKS.add(task.name, task)
