"""Task -> domain: the one table (FusionBench's six domains), with the names other sources use for our tasks.

The task suite (:mod:`fusion.tasks.suite`) takes each task's domain from here, and so do the log importers; tasks
that only appear in imported logs (``winogrande``, ``agentverse-mgsm``) are listed too. A task not in the table is
in the ``other`` domain."""

from __future__ import annotations

DOMAINS: dict[str, tuple[str, ...]] = {
    "math": ("gsm8k", "math", "arith_word", "mental_math", "agentverse-mgsm"),
    "code": ("mbpp", "human_eval"),
    "commonsense": ("commonsense_qa", "openbook_qa", "arc_challenge", "hellaswag", "mc_reasoning", "winogrande"),
    "world_knowledge": ("natural_qa", "trivia_qa", "world_capitals"),
    "reading": ("squad", "boolq"),
    "popular": ("mmlu", "gpqa"),
}


TASK_DOMAIN: dict[str, str] = {task: dom for dom, tasks in DOMAINS.items() for task in tasks}


OTHER_DOMAIN = "other"


TASK_ALIASES: dict[str, str] = {
    "arc-challenge": "arc_challenge",
    "arc_c": "arc_challenge",
    "winograde": "winogrande",
    "grade-school-math": "gsm8k",
    "humaneval": "human_eval",
    "human-eval": "human_eval",
    "openai_humaneval": "human_eval",
    "commonsense-qa": "commonsense_qa",
    "commonsenseqa": "commonsense_qa",
    "openbookqa": "openbook_qa",
    "openbook-qa": "openbook_qa",
    "natural_questions": "natural_qa",
    "natural-questions": "natural_qa",
    "nq": "natural_qa",
    "triviaqa": "trivia_qa",
    "trivia-qa": "trivia_qa",
    "mgsm": "agentverse-mgsm",
}


def normalise_task_name(name: str) -> str:
    """Map a source's task name to ours: aliases first, then ``-`` → ``_`` when that names a known task.

    Names we do not know are kept (lower-cased, stripped): e.g. ``agentverse-logicgrid`` stays as it is.
    """
    key = str(name).strip().lower()
    if key in TASK_ALIASES:
        return TASK_ALIASES[key]
    if key in TASK_DOMAIN:
        return key
    underscored = key.replace("-", "_")
    if underscored in TASK_DOMAIN:
        return underscored
    return key


def domain_of(task: str) -> str:
    if task in TASK_DOMAIN:
        return TASK_DOMAIN[task]
    if task.startswith("mmlu"):  # RouterBench splits MMLU by subject: mmlu-abstract-algebra, ...
        return "popular"
    return OTHER_DOMAIN
