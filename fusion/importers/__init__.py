"""Import routing logs from other formats into the canonical log (see ``fusion.log.schema``).

>>> df, summary = import_log("../shared/data/routing/routerbench_zs", "routerbench")  # doctest: +SKIP
>>> print(summary.render())  # doctest: +SKIP

Formats (each in its own module, registered by name in ``IMPORTERS``):

- ``fusionbench``: FusionBench's CSV (``<llm>_think`` rows are the thinking mode);
- ``routerbench``: RouterBench's wide CSV / pickle, or a directory of ``*_train.csv`` / ``*_test.csv``
  (pickles run code when loaded: only import pickles you trust);
- ``llmrouter``: LLMRouter's directory of ``train.json``, ``test.json``, ``default_query_*.jsonl``,
  ``default_llm.json``;
- ``long``: the canonical log itself from CSV, JSONL or Parquet (``write_long`` writes those).

Every import returns a coerced and validated log plus an :class:`~fusion.log.summary.ImportSummary`. Nothing
is silently dropped: a source cell without a score becomes a row with a null performance and
``error="missing score in source"``; anything inconsistent raises :class:`LogImportError` (a
``LogSchemaError``) naming the file, the column and example rows.
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path

import pandas as pd

from fusion.core.registry import UnknownNameError
from fusion.importers import fusionbench, llmrouter, long, routerbench  # noqa: F401  (registration)
from fusion.importers.errors import LogImportError, SourceNotFoundError, UnknownFormatError
from fusion.importers.long import write_long
from fusion.importers.registry import IMPORTERS, Imported, finalize
from fusion.log.summary import MISSING_SCORE, ImportSummary, summarize
from fusion.tasks.domains import DOMAINS, domain_of, normalise_task_name

logger = logging.getLogger(__name__)

__all__ = [
    "DOMAINS",
    "IMPORTERS",
    "MISSING_SCORE",
    "ImportSummary",
    "Imported",
    "LogImportError",
    "SourceNotFoundError",
    "UnknownFormatError",
    "describe_formats",
    "domain_of",
    "formats",
    "import_log",
    "normalise_task_name",
    "summarize",
    "write_long",
]


def formats() -> list[str]:
    """The registered format names, sorted."""
    return IMPORTERS.names()


def describe_formats() -> dict[str, str]:
    """Format name -> the first line of its module's docstring (for ``--help`` texts)."""
    out = {}
    for name, fn in IMPORTERS.items():
        module = inspect.getmodule(fn)
        doc = inspect.getdoc(module) if module is not None else None
        out[name] = (doc or inspect.getdoc(fn) or name).splitlines()[0]
    return out


def import_log(src: str | Path, fmt: str, **options: object) -> tuple[pd.DataFrame, ImportSummary]:
    """Import ``src`` written in format ``fmt``; returns the coerced, validated log and its summary.

    ``options`` go to the format's importer (e.g. ``split=``, ``test_fraction=``, ``seed=`` for
    ``fusionbench``; ``split=`` for one ``routerbench`` file). Raises :class:`UnknownFormatError`,
    :class:`SourceNotFoundError` or :class:`LogImportError` (all ``LogSchemaError``).
    """
    name = str(fmt).strip().lower()
    try:
        importer = IMPORTERS.get(name)
    except UnknownNameError:
        raise UnknownFormatError(
            f"unknown log format {fmt!r}; known formats: {', '.join(formats())}"
        ) from None
    path = Path(src).expanduser()
    if not path.exists():
        raise SourceNotFoundError(f"{name} source not found: {path} (no such file or directory)")
    params = [p for p in inspect.signature(importer).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - {p.name for p in params})
    if unknown:
        accepted = ", ".join(f"{p.name}={p.default!r}" for p in params) or "none"
        raise LogImportError(f"format {name!r} does not take option(s) {unknown}; its options: {accepted}")
    start = time.perf_counter()
    imported = importer(path, **options)
    log = finalize(imported.frame, source=str(path))
    summary = summarize(
        log, format=name, source=str(path), notes=imported.notes, seconds=time.perf_counter() - start
    )
    logger.info(
        "imported %s log %s: %d rows, %d queries, %d candidates, %d missing scores (%.2f s)",
        name,
        path,
        summary.n_rows,
        summary.n_queries,
        summary.n_candidates,
        summary.missing_cells,
        summary.seconds or 0.0,
    )
    return log, summary
