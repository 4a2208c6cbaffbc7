"""One cached, batched, resumable generation loop: what the held-out answers of a target model, the judge's
verdicts, the thought level's summaries and the token level's decodes all run.

Each item has a key (:mod:`fusion.core.identity`: what decides its output) and a payload (a prompt, a request).
Items whose key is already in ``cache_dir``'s Parquet parts are not generated again; the rest go through ``run`` in
batches of similar size, each batch written as one part as soon as it is done (a killed run loses at most the batch
in flight and resumes from the parts). A batch whose call raises becomes rows with the reason in the error column
(``call failed: ...``), never lost and never a silent zero, and a rerun tries those items again; what a call
returned (an unreadable verdict, an empty answer) is a result and stays cached. Progress: a rich bar, and
a plain line per part when stdout is not a terminal (a DVC stage's log), so a long stage is never silent.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pandas as pd
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fusion.core import parts

logger = logging.getLogger(__name__)

KEY = "key"
#: the columns a :func:`backend_session` run yields
BACKEND_COLUMNS = {"text": "string", "input_tokens": "Int64", "output_tokens": "Int64", "error": "string"}
CALL_FAILED = "call failed: "
#: ``run(payloads) -> rows`` (one dict per payload, in order) and the batch size to call it with
Runner = tuple[Callable[[list[Any]], list[dict]], int]


def empty_frame(columns: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in {KEY: "string", **columns}.items()})


def read_cache(cache_dir, columns: Mapping[str, str]) -> pd.DataFrame:
    """Every cached row (the last one per key)."""
    return parts.read_parts(cache_dir, [KEY], empty_frame(columns))


@contextmanager
def fixed(run: Callable[[list[Any]], list[dict]], batch_size: int) -> Iterator[Runner]:
    """A runner that needs nothing opened or closed (an engine already in memory)."""
    yield run, batch_size


def generate_cached(keys: Sequence[str], payloads: Sequence[Any], session: Callable[[], AbstractContextManager[Runner]],
                    *, cache_dir, columns: Mapping[str, str], label: str, size: Callable[[Any], int] = len,
                    error_column: str = "error", extra: Mapping[str, dict] | None = None,
                    after_batch: Callable[[list[dict]], None] | None = None) -> pd.DataFrame:
    """The rows of ``keys`` (in order, one per key; ``columns`` with their dtypes beside ``key``).

    ``session()`` is entered only when something is missing (a backend is loaded only then) and yields
    ``(run, batch_size)``. ``size(payload)`` orders the work so a batch holds similar lengths. ``after_batch``
    sees each written batch's rows (a running cost budget may raise there: what was written is kept). ``extra[key]``:
    columns written with that item's row, failed or not (what the item is, for readers of the parts)."""
    from pathlib import Path

    if len(keys) != len(payloads):
        raise ValueError(f"{len(keys)} keys for {len(payloads)} payloads")
    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    done = read_cache(d, columns)
    failed_call = done[error_column].astype("string").str.startswith(CALL_FAILED).fillna(False).astype(bool)
    have = set(done.loc[~failed_call, KEY])
    todo = sorted({k: p for k, p in zip(keys, payloads, strict=True) if k not in have}.items(),
                  key=lambda kp: (size(kp[1]), kp[0]))
    if todo:
        with session() as (run, batch_size):
            _run_all(todo, run, max(1, int(batch_size)), d, columns, label, error_column, extra or {}, after_batch)
        done = read_cache(d, columns)
    table = done.set_index(KEY)
    missing = [k for k in dict.fromkeys(keys) if k not in table.index]
    if missing:
        raise RuntimeError(f"{label}: {len(missing)} item(s) missing from {d} after generation")
    return table.loc[list(keys)].reset_index()


def _run_all(todo, run, batch_size, d, columns, label, error_column, extra, after_batch) -> None:
    plain = not sys.stdout.isatty()
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task(label, total=len(todo), failed=0)
        n_done = n_failed = 0
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            try:
                rows = run([p for _, p in batch])
                if len(rows) != len(batch):
                    raise RuntimeError(f"{len(rows)} outputs for {len(batch)} inputs")
            except Exception as exc:  # noqa: BLE001 - the batch is recorded as failed rows, not lost
                logger.exception("%s failed on %d items", label, len(batch))
                rows = [{error_column: f"{CALL_FAILED}{type(exc).__name__}: {exc}"} for _ in batch]
            rows = [{**r, **extra.get(k, {}), KEY: k} for (k, _), r in zip(batch, rows, strict=True)]
            parts.write_part(d, parts.typed(pd.DataFrame(rows), {KEY: "string", **columns}))
            n_done += len(batch)
            n_failed += sum(r.get(error_column) is not None for r in rows)
            bar.update(task, advance=len(batch), failed=n_failed)
            if plain:
                print(f"{label}: {n_done}/{len(todo)} done, {n_failed} failed", flush=True)
            if after_batch is not None:
                after_batch(rows)


def backend_session(spec, *, model_cache, device: str, dtype: str, batch_size: int,
                    max_new_tokens: int, prefill: str | None = None, backend_factory: Callable | None = None):
    """A :func:`generate_cached` session over a pool entry's backend: built only when something is to be generated,
    closed after; payloads are prompts (or whole :class:`~fusion.backends.Request`\ s), rows ``text,
    input_tokens, output_tokens, error`` (greedy)."""

    from fusion.backends import Request, make_backend

    factory = backend_factory or make_backend

    @contextmanager
    def session():
        backend = factory(spec, model_cache=model_cache, device=device, dtype=dtype, batch_size=batch_size)
        try:
            def run(prompts: list) -> list[dict]:
                requests = [p if isinstance(p, Request) else Request(p, prefill=prefill or "") for p in prompts]
                gens = backend.generate(requests, max_new_tokens=max_new_tokens, temperature=0.0, seed=0)
                return [{"text": g.text, "input_tokens": g.input_tokens, "output_tokens": g.output_tokens,
                         "error": g.error} for g in gens]
            yield run, backend.part_size()
        finally:
            backend.close()
    return session
