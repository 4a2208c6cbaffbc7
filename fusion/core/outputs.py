"""What a stage does with its output folder before it writes: a fresh, empty folder (a stage's outputs are only what
this run wrote), and for a level that is switched off a report saying so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def fresh_output(out: Path, *, enabled: bool = True, report: str | None = None) -> bool:
    """Empty ``out`` (created if missing); when not ``enabled``, write ``{"enabled": false}`` to ``out/report`` and
    return False: the stage has nothing more to do."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not enabled:
        if report is not None:
            (out / report).write_text(json.dumps({"enabled": False}) + "\n")
        return False
    return True
