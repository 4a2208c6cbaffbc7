"""Scale-out: the collection subflow maps shards to Prefect tasks; on a Dask LocalCluster (prefect-dask) they give
the same log as the sequential run, row for row."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from tests.profiles import write_tiny_profile

pytestmark = pytest.mark.slow


def _stable(log: pd.DataFrame) -> pd.DataFrame:
    return log.drop(columns=["collected_at", "latency_s"]).sort_values(["query_id", "candidate"]).reset_index(drop=True)


def _profile(root, model, **scale_out):
    p = write_tiny_profile(root, model, n_per_task=8)
    cfg = yaml.safe_load(p.read_text())
    cfg["collect"]["batch_size"] = 2
    cfg["collect"]["scale_out"] = scale_out
    cfg["tracking"]["enabled"] = False
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_shards_on_a_dask_local_cluster_equal_the_sequential_log(tmp_path, tiny_llama):
    from prefect.testing.utilities import prefect_test_harness
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import collect_flow, task_runner
    from fusion.data.stages import collect as stage
    from fusion.stages import load_params, run_stage

    seq = _profile(tmp_path / "seq", tiny_llama)
    run_stage("queries", seq)
    run_stage("collect", seq)
    sequential = pd.read_parquet(load_params(seq).paths.collected)

    par = _profile(tmp_path / "par", tiny_llama, shards=3, runner="dask", dask_workers=2)
    run_stage("queries", par)
    params = load_params(par)
    shards = stage.plan_shards(params)
    assert len(shards) == 6  # 2 candidates x 3 shards, each of whole parts (batch 2)
    assert all(len(s["query_ids"]) % 2 == 0 or s["index"] == 2 for s in shards)
    runner = task_runner(params.collect.scale_out)
    assert isinstance(runner, DaskTaskRunner)
    with prefect_test_harness(server_startup_timeout=120):
        result = collect_flow.with_options(task_runner=runner)(str(par))
    assert result["shards"] == 6
    sharded = pd.read_parquet(result["log"])
    pd.testing.assert_frame_equal(_stable(sharded), _stable(sequential))
    # nothing is left to do: a second plan has no shard
    assert stage.plan_shards(params) == []
