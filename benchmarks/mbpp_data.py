"""RouterBench's MBPP teachers joined with MBPP's references, and MBPP held-out problems: the data of the model- and
thought-level benchmarks on MBPP (``distill_mbpp.py``, ``templates_mbpp.py``).

RouterBench's prompts are MBPP task texts without the example test, so its teachers named their functions freely;
its pass/fail is the correctness the benchmarks use (our sandbox cannot re-check them: the MBPP tests call the
reference's function name). A prompt's gold solution is MBPP's reference code where its text equals an MBPP record's
(normalised: case, punctuation, links), carried in the log's ``solution`` column. Held out: MBPP's own test problems
(task ids 11-510) whose text is not close to any teacher prompt, in the suite's MBPP prompt (task text and first
test, direct mode).
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ROUTERBENCH = SHARED / "routing" / "routerbench_zs"
MBPP = SHARED / "queries" / "mbpp.jsonl"
MBPP_TEST_IDS = range(11, 511)  # MBPP's official test split


def norm(text: str) -> str:
    """A task text for matching: no links, lower case, words only."""
    return re.sub(r"\W+", " ", re.sub(r"https?://\S+", "", str(text).lower())).strip()


def load_teachers(records: list[dict]):
    """RouterBench's MBPP log (both files as training data) with the suite's prompt, the metric, and MBPP's
    reference solution and tests where the prompt's text equals an MBPP record's."""
    import pandas as pd

    from fusion.importers import import_log
    from fusion.tasks import layouts
    from fusion.tasks.suite import TASKS

    log = pd.concat([import_log(ROUTERBENCH / f"mbpp_{s}.csv", "routerbench")[0] for s in ("train", "test")],
                    ignore_index=True)
    by_text: dict[str, list[dict]] = {}
    for rec in records:
        by_text.setdefault(norm(rec["text"]), []).append(rec)
    match = log["query"].map(lambda t: by_text.get(norm(t), []))
    one = match.map(len) == 1
    task = TASKS.get("mbpp")
    log["split"] = "train"
    log["prompt"] = [task.build_prompt(str(q), "direct") for q in log["query"]]
    log["metric"] = "pass@1"
    log["ground_truth"] = [layouts.mbpp(m[0])[1] if ok else None for m, ok in zip(match, one, strict=True)]
    log["solution"] = [layouts.mbpp_solution(m[0]) if ok else None for m, ok in zip(match, one, strict=True)]
    log["mbpp_task_id"] = [m[0]["task_id"] if ok else None for m, ok in zip(match, one, strict=True)]
    return log


def held_out(records: list[dict], teacher_texts: list[str], overlap: float, limit: int | None):
    """MBPP test problems not close to any teacher prompt, as ``held_out_queries`` rows (first ``limit`` by id)."""
    import pandas as pd

    from fusion.tasks import layouts
    from fusion.tasks.suite import TASKS

    task = TASKS.get("mbpp")
    seen = [norm(t) for t in teacher_texts]
    rows, dropped = [], 0
    for rec in sorted((r for r in records if r["task_id"] in MBPP_TEST_IDS), key=lambda r: r["task_id"]):
        text = norm(rec["text"])
        matchers = (difflib.SequenceMatcher(None, text, s) for s in seen)
        close = any(m.quick_ratio() >= overlap and m.ratio() >= overlap for m in matchers)
        if close:
            dropped += 1
            continue
        query, truth = layouts.mbpp(rec)
        rows.append({"query_id": f"mbpp-{rec['task_id']:03d}", "task": "mbpp", "domain": "code",
                     "question": query, "prompt": task.build_prompt(query, "direct"), "ground_truth": truth,
                     "metric": "pass@1"})
        if limit is not None and len(rows) >= limit:
            break
    return pd.DataFrame(rows), dropped


def load_records() -> list[dict]:
    return [json.loads(line) for line in MBPP.read_text().splitlines() if line.strip()]


def available() -> bool:
    return ROUTERBENCH.is_dir() and MBPP.is_file()


def as_log_rows(queries):
    """Held-out query rows (from :func:`held_out`) as log rows of split ``test`` (no candidate's answer): what the
    levels' evaluations read their held-out queries from."""
    return queries.rename(columns={"question": "query"}).assign(split="test", mode="direct", llm=None,
                                                                  response=None, performance=None)


def prepare(work: str) -> tuple[Path, Path]:
    """A benchmark's start: the data must be there, telemetry and hub off, log lines timed; ``(work folder, model
    cache)``."""
    import logging
    import os
    import sys

    if not available():
        sys.exit(f"RouterBench MBPP log or MBPP not found under {SHARED} (../shared/data): nothing to benchmark")
    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(work)
    out.mkdir(parents=True, exist_ok=True)
    return out, ROOT / ".cache" / "models"
