"""Answers from an existing routing log instead of a model: re-scoring old answers with today's scorers,
back-filling a judge, and tests.

The pool entry's ``model`` is the LLM's name in the replayed log (or ``options.llm``). A request is answered by
the row of the same ``query_id`` and mode, else of the same query text and mode; a request the log does not
answer, or whose row has no response, is an error row that says so. Token counts, latency and the original
error come from the log (``tokens_source = "log"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from fusion.backends.base import BACKENDS, TOKENS_FROM_LOG, Backend, Generation, Request

NOT_IN_LOG = "not in replayed log"


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    log: str = Field(description="the routing log to replay (a file or folder an importer reads)")
    format: str = Field(default="long", description="its importer format (fusion data formats)")
    llm: str | None = Field(default=None, description="the LLM's name in that log (default: the pool entry's model)")


@BACKENDS.register("replay")
class ReplayBackend(Backend):
    name = "replay"
    Options = ReplayOptions
    identity_options = ("log", "format", "llm")

    def __init__(self, spec, *, model_cache: str | Path, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8) -> None:
        from fusion.importers import import_log

        super().__init__(spec, model_cache=model_cache, device=device, dtype=dtype, batch_size=batch_size)
        o: ReplayOptions = self.options
        llm = o.llm or spec.model
        log, _ = import_log(o.log, o.format)
        rows = log[log["llm"] == llm]
        if rows.empty:
            known = ", ".join(sorted(log["llm"].dropna().unique())[:20])
            raise ValueError(f"pool[{spec.name}]: LLM {llm!r} is not in the replayed log {o.log} (it has: {known})")
        self._by_id = {(r.query_id, r.mode): r for r in rows.itertuples(index=False)}
        self._by_text = {(r.query, r.mode): r for r in rows.itertuples(index=False)}

    def generate(
        self, requests: Sequence[Request], *, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[Generation]:
        out = []
        for req in requests:
            row = self._by_id.get((req.query_id, req.mode)) or self._by_text.get((req.query, req.mode))
            if row is None:
                out.append(Generation.failed(f"{NOT_IN_LOG}: no answer of {req.mode} mode for {req.query_id}"))
                continue
            text = None if pd.isna(row.response) else str(row.response)
            error = None if pd.isna(row.error) else str(row.error)
            if text is None and error is None:
                error = f"{NOT_IN_LOG}: the replayed row of {req.query_id} has no response"
            out.append(Generation(text, _int(row.input_tokens), _int(row.output_tokens),
                                  None if pd.isna(row.latency_s) else float(row.latency_s), error=error,
                                  tokens_source=TOKENS_FROM_LOG))
        return out

    @classmethod
    def part_size_for(cls, options: ReplayOptions, batch_size: int) -> int:
        return max(batch_size, 256)


def _int(v) -> int | None:
    return None if pd.isna(v) else int(v)
