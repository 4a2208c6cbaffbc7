"""The task suite: FusionBench's 14 benchmarks plus two synthetic ones, each with loader, prompts and scorer.

Importing this package registers the tasks in :data:`TASKS`; it loads no data and touches no network (the
``datasets`` library is imported only when a task is loaded from the Hub).

>>> task = get_task("gsm8k")
>>> task.domain, task.metric
('math', 'gsm8k_number')
"""

from fusion.tasks.base import DOMAINS, QUERY_COLUMNS, TASKS, HFSource, Task, TaskSourceError
from fusion.tasks.loaders import load_queries
from fusion.tasks.scoring import SCORERS, exact_match, get_scorer, normalize_answer, token_f1
from fusion.tasks.suite import FUSIONBENCH_TASKS, SYNTHETIC_TASKS, get_task

__all__ = [
    "DOMAINS",
    "FUSIONBENCH_TASKS",
    "QUERY_COLUMNS",
    "SCORERS",
    "SYNTHETIC_TASKS",
    "TASKS",
    "HFSource",
    "Task",
    "TaskSourceError",
    "exact_match",
    "get_scorer",
    "get_task",
    "load_queries",
    "normalize_answer",
    "token_f1",
]
