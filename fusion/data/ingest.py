"""Stage ``ingest``: the pipeline's routing log is the union of the collected (and judged) rows and every imported
log that ``params.sources`` names: a path or a glob of daily drops (``incoming/*.jsonl``), in any importer format.

The union is kept *as read* (every value as text, plus ``_source``, the file a row came from) so that validation
can judge each row: a value that is not a number, a duplicate, a key that arrives twice with different content
are quarantined there, row by row, never silently fixed or overwritten here. ``long`` files are read leniently
(numbers unparsed); the other formats go through their importers (whole-file errors name the file).
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fusion.data.config import SourceConfig
from fusion.importers import import_log
from fusion.importers.long import read_long_raw
from fusion.importers.registry import ROW
from fusion.log.schema import COLUMNS

logger = logging.getLogger(__name__)

SOURCE = "_source"  # provenance of a row in the ingested union (not a routing-log column)
COLLECTED = "collected"


class SourceError(ValueError):
    """A source in params.sources cannot be read (the message names it)."""


@dataclass
class SourceRead:
    path: str
    format: str
    rows: int
    notes: list[str]


def source_files(src: SourceConfig, base: Path) -> list[Path]:
    """The files (or folders) a source names, sorted; a glob may match none (an empty drop folder)."""
    pattern = src.path if Path(src.path).is_absolute() else str(base / src.path)
    if glob.has_magic(pattern):
        return [Path(p) for p in sorted(glob.glob(pattern)) if not Path(p).name.startswith(".")]
    path = Path(pattern)
    if not path.exists():
        raise SourceError(f"source {src.path!r} ({src.format}): {path} does not exist")
    return [path]


def as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Every contract column as nullable text (absent ones null): the union's one representation."""
    out = pd.DataFrame(index=df.index)
    for col in COLUMNS:
        if col not in df.columns:
            out[col] = pd.Series(pd.NA, index=df.index, dtype="string")
            continue
        s = df[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.map(lambda v: None if pd.isna(v) else v.isoformat()).astype("string")
        else:
            out[col] = s.map(lambda v: None if _isna(v) else str(v)).astype("string")
    return out


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # lists, dicts: a value, not a null
        return False


def read_source_file(path: Path, fmt: str, options: dict) -> tuple[pd.DataFrame, list[str]]:
    if fmt == "long" and path.is_file() and not options:
        df, notes = read_long_raw(path)
        return df.drop(columns=[ROW]), notes
    log, summary = import_log(path, fmt, **options)
    return log, list(summary.notes)


def ingest(collected: pd.DataFrame | None, sources: list[SourceConfig], base: Path
           ) -> tuple[pd.DataFrame, list[SourceRead]]:
    """The union (as text, with ``_source``) and what was read from each file."""
    frames, reads = [], []
    if collected is not None:
        frames.append(as_text(collected).assign(**{SOURCE: COLLECTED}))
        reads.append(SourceRead(COLLECTED, "collected", len(collected), []))
    for src in sources:
        for path in source_files(src, Path(base)):
            try:
                df, notes = read_source_file(path, src.format, dict(src.options))
            except (ValueError, FileNotFoundError) as exc:
                raise SourceError(f"source {path} ({src.format}): {exc}") from None
            frames.append(as_text(df).assign(**{SOURCE: str(path)}))
            reads.append(SourceRead(str(path), src.format, len(df), notes))
            logger.info("ingest: %d rows from %s (%s)", len(df), path, src.format)
    if not frames:
        raise SourceError("nothing to ingest: no collected rows and no source file")
    union = pd.concat(frames, ignore_index=True)
    union[SOURCE] = union[SOURCE].astype("string")
    return union, reads
