"""The experts' statistics, computed once so that training never needs the experts resident: for every sequence,
every completion position and every expert, the log-probability the expert gives the gold token (teacher forcing)
and the expert's greedy token. One Parquet file per expert (``<name>.parquet``: ``seq_id, logp, greedy``) beside
a manifest that names the sequences and the expert's weights they were computed from: a rerun computes only what is
missing or out of date (an expert killed mid-way is recomputed; the others are kept)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

logger = logging.getLogger(__name__)
MANIFEST = "stats.json"


def informative_mask(greedy: np.ndarray) -> np.ndarray:
    """Positions where the experts' greedy tokens disagree: ``greedy`` is ``[n_experts, T]``."""
    greedy = np.asarray(greedy)
    return ~(greedy == greedy[:1]).all(axis=0)


@torch.inference_mode()
def expert_stats(model, sequences: pd.DataFrame, *, vocab_size: int, batch_size: int = 8,
                 progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """``seq_id, logp, greedy`` for one expert: per completion token (from ``prompt_len`` on), the expert's
    log-probability of that token given everything before it, and its own greedy choice there."""
    model.eval()
    device = model.device
    order = np.argsort([len(x) for x in sequences["input_ids"]])  # similar lengths in a batch
    out: dict[str, tuple[list[float], list[int]]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        rows = sequences.iloc[idx]
        L = max(len(x) for x in rows["input_ids"])
        ids = torch.zeros((len(rows), L), dtype=torch.long)
        mask = torch.zeros((len(rows), L), dtype=torch.long)
        for b, x in enumerate(rows["input_ids"]):
            ids[b, :len(x)] = torch.tensor(np.asarray(x, dtype=np.int64))
            mask[b, :len(x)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[..., :vocab_size].float()
        logp = torch.log_softmax(logits, -1)
        for b, (sid, x, p) in enumerate(zip(rows["seq_id"], rows["input_ids"], rows["prompt_len"], strict=True)):
            n = len(x)
            gold = torch.tensor(np.asarray(x[p:n], dtype=np.int64), device=device)
            pos = torch.arange(p - 1, n - 1, device=device)
            out[sid] = (logp[b, pos, gold].cpu().tolist(), logp[b, pos].argmax(-1).cpu().tolist())
        if progress is not None:
            progress(len(idx))
    sids = list(sequences["seq_id"])
    return pd.DataFrame({"seq_id": sids, "logp": [np.asarray(out[s][0], np.float32) for s in sids],
                         "greedy": [np.asarray(out[s][1], np.int32) for s in sids]})


def compute_all(sequences: pd.DataFrame, experts: Sequence[tuple[str, str, Callable[[], object]]], out: Path, *,
                digest: str, vocab_size: int, batch_size: int = 8, progress_factory=None) -> dict:
    """Statistics of every expert in ``out``. ``experts``: ``(name, fingerprint, load)`` with ``load()`` giving
    the model (loaded one at a time, released after)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mf = out / MANIFEST
    manifest = json.loads(mf.read_text()) if mf.is_file() else {}
    if manifest.get("sequences") != digest:
        manifest = {"sequences": digest, "experts": {}}
    names = [n for n, _, _ in experts]
    for f in out.glob("*.parquet"):  # experts no longer listed
        if f.stem not in names:
            f.unlink()
    for name, fp, load in experts:
        f = out / f"{name}.parquet"
        if manifest["experts"].get(name) == fp and f.is_file():
            logger.info("expert statistics of %s are up to date", name)
            continue
        manifest["experts"].pop(name, None)
        mf.write_text(json.dumps(manifest, indent=2) + "\n")
        model = load()
        bar = progress_factory(name, len(sequences)) if progress_factory else None
        frame = expert_stats(model, sequences, vocab_size=vocab_size, batch_size=batch_size, progress=bar)
        del model
        tmp = f.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(f)
        manifest["experts"][name] = fp
        mf.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["order"] = names
    mf.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_all(out: Path, names: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The statistics of ``names`` (the head's order), each indexed by ``seq_id``."""
    out = Path(out)
    missing = [n for n in names if not (out / f"{n}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"no expert statistics for {missing} in {out}: run `fusion tokenroute stats`")
    return {n: pd.read_parquet(out / f"{n}.parquet").set_index("seq_id") for n in names}
