"""The data stages' parameters (``queries``, ``collect``, ``sources``, ``judge``, ``validate``, ``embed``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fusion.core.config import Strict
from fusion.models.refs import MINILM


class QuerySource(Strict):
    task: str
    source: str = Field(description='"hf", "synthetic", "package" or a local file path')
    split: str = "test"
    limit: int | None = Field(default=None, gt=0)


class QueriesConfig(Strict):
    seed: int = 0
    test_fraction: float = Field(default=0.3, gt=0, lt=1)
    sources: list[QuerySource] = Field(min_length=1)


class ScaleOutConfig(Strict):
    """How the Prefect flow fans collection out: each candidate's remaining calls in ``shards`` runs of whole
    parts, mapped to Prefect tasks on a thread pool or, with ``runner: dask``, on a Dask cluster (``dask_address``
    of a running scheduler, else a LocalCluster of ``dask_workers``). Shards of ``vllm`` pool entries go to the
    deployment ``gpu_deployment`` (a work pool of GPU workers, prefect.yaml) when it is set."""

    shards: int = Field(default=1, gt=0)
    runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    dask_workers: int = Field(default=2, gt=0)
    dask_processes: bool = False
    gpu_deployment: str | None = None


class CollectConfig(Strict):
    batch_size: int = Field(default=8, gt=0)
    max_new_tokens: dict[Literal["direct", "think"], int] = {"direct": 128, "think": 256}
    temperature: float = Field(default=0.0, ge=0)
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    sandbox_timeout_s: float = Field(default=10.0, gt=0)
    sandbox_workers: int = Field(default=2, gt=0)
    #: stop cleanly (finished parts are kept) when the estimated cost of a run, or its running total, passes this
    max_cost_usd: float | None = Field(default=None, ge=0)
    scale_out: ScaleOutConfig = ScaleOutConfig()


class SourceConfig(Strict):
    """An imported routing log the pipeline ingests: a path or a glob (relative to params.yaml) in an importer
    format (`fusion data formats`), with the importer's options. Put daily drops under the drop folder
    (``paths.incoming``): DVC watches that folder, so a new file re-runs the pipeline from ``ingest``."""

    path: str
    format: str = "long"
    options: dict[str, Any] = {}


class ValidateConfig(Strict):
    #: blocking: a candidate with more error rows than this stops the pipeline
    max_error_rate: float = Field(default=0.2, ge=0, le=1)
    #: blocking: more quarantined rows than this share of the log stops the pipeline
    max_quarantine_fraction: float = Field(default=0.5, ge=0, le=1)
    #: build great-expectations Data Docs (HTML) under paths.data_docs
    data_docs: bool = True


class EmbedConfig(Strict):
    encoder: str = MINILM
    batch_size: int = Field(default=32, gt=0)
