"""Stage ``embed``: one embedding per query of the routing log (cached by content), written as the embeddings
file of the data contract."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.core.embedding import Encoder, embed_queries
from fusion.log.embeddings import write_embeddings
from fusion.log.schema import read_log
from fusion.models.refs import resolve_ref
from fusion.tracking import stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    log = read_log(params.paths.routing_log)
    with stage_run(params.tracking, "embed", params.embed.model_dump()) as ml:
        enc = Encoder(params.embed.encoder, params.paths.embedding_cache, params.embed.batch_size)
        emb = embed_queries(log, enc)
        out = write_embeddings(emb, params.paths.embeddings)
        if ml:
            dim = len(emb["embedding"].iloc[0]) if len(emb) else 0
            ml.log_metrics({"n_queries": len(emb), "dim": dim})
            ml.log_dict({"encoder": params.embed.encoder, "resolved": resolve_ref(params.embed.encoder),
                         "n_queries": len(emb), "dim": dim, "output": str(out)}, "embeddings.json")
    logger.info("embed: %d queries with %s (cache: %s)", len(emb), params.embed.encoder, params.paths.embedding_cache)
    return out
