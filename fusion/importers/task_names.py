"""Task names and domains of imported rows, vectorised over distinct values (the table itself is
:mod:`fusion.tasks.domains`)."""

from __future__ import annotations

import pandas as pd

from fusion.importers.values import map_distinct
from fusion.tasks.domains import OTHER_DOMAIN, domain_of, normalise_task_name


def normalise_tasks(names: pd.Series) -> pd.Series:
    return map_distinct(names, normalise_task_name).astype("string")


def domains_for(tasks: pd.Series) -> pd.Series:
    return map_distinct(tasks, domain_of).astype("string")


def unknown_task_note(tasks: pd.Series) -> list[str]:
    unknown = sorted(t for t in pd.unique(tasks.dropna()) if domain_of(t) == OTHER_DOMAIN)
    if not unknown:
        return []
    return [f"{len(unknown)} task(s) not in the FusionBench domain table, domain set to 'other': {unknown}"]
