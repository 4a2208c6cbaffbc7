"""Collection with the real transformers backend on a tiny random Llama: rows, tokens, cost, errors, resume."""

import pandas as pd
import pytest

from fusion.backends import make_backend
from fusion.collection.collect import collect
from fusion.collection.queries import build_queries
from fusion.config import CollectConfig, LLMSpec, QueriesConfig
from fusion.log.schema import check_log


@pytest.fixture(scope="module")
def queries():
    cfg = QueriesConfig(seed=0, test_fraction=0.3, sources=[
        {"task": "arith_word", "source": "synthetic", "limit": 5},
        {"task": "mc_reasoning", "source": "synthetic", "limit": 5},
    ])
    return build_queries(cfg)


@pytest.fixture(scope="module")
def spec(tiny_llama):
    return LLMSpec(name="tiny", backend="transformers", model=str(tiny_llama), input_price=1.0, output_price=2.0)


CFG = CollectConfig(batch_size=3, max_new_tokens={"direct": 6, "think": 9}, sandbox_workers=1)


def _stable(log: pd.DataFrame) -> pd.DataFrame:
    return log.drop(columns=["collected_at", "latency_s"]).sort_values(["query_id", "candidate"]).reset_index(drop=True)


def test_queries_have_splits_per_task(queries):
    assert len(queries) == 10
    per_task = queries.groupby("task")["split"].apply(set)
    assert all(s == {"train", "test"} for s in per_task)
    assert queries["query_id"].is_unique


def test_collect_rows_tokens_cost(queries, spec, tmp_path):
    log = collect(queries, [spec], CFG, tmp_path / "parts", model_cache=tmp_path / "mc")
    assert check_log(log) == []
    assert len(log) == 20 and set(log["candidate"]) == {"tiny:direct", "tiny:think"}
    assert (log["input_tokens"] > 0).all() and (log["output_tokens"] > 0).all()
    assert (log.loc[log["mode"] == "direct", "output_tokens"] <= 6).all()
    expected = (log["input_tokens"] * 1.0 + log["output_tokens"] * 2.0) / 1e6
    pd.testing.assert_series_equal(log["cost_usd"], expected.astype("Float64"), check_names=False)
    assert log["performance"].between(0, 1).all() and log["error"].isna().all()
    think = log[log["mode"] == "think"]["prompt"].iloc[0]
    direct = log[log["mode"] == "direct"]["prompt"].iloc[0]
    assert think != direct


def test_killed_collection_resumes_to_the_same_rows(queries, spec, tmp_path):
    reference = collect(queries, [spec], CFG, tmp_path / "ref", model_cache=tmp_path / "mc")

    calls = {"n": 0}

    def crashing_factory(*a, **kw):
        backend = make_backend(*a, **kw)
        real = backend.generate

        def generate(prompts, **g):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed")  # not an Exception: the run dies, like a kill
            return real(prompts, **g)

        backend.generate = generate
        return backend

    with pytest.raises(KeyboardInterrupt):
        collect(queries, [spec], CFG, tmp_path / "run", model_cache=tmp_path / "mc", backend_factory=crashing_factory)
    parts = list((tmp_path / "run").rglob("part-*.parquet"))
    assert len(parts) == 2  # two batches were durable before the kill
    resumed = collect(queries, [spec], CFG, tmp_path / "run", model_cache=tmp_path / "mc")
    pd.testing.assert_frame_equal(_stable(resumed), _stable(reference))


def test_generation_failure_becomes_error_rows(queries, spec, tmp_path):
    def broken_factory(*a, **kw):
        backend = make_backend(*a, **kw)

        def generate(prompts, **g):
            raise RuntimeError("CUDA out of memory")

        backend.generate = generate
        return backend

    log = collect(queries, [spec], CFG, tmp_path / "p", model_cache=tmp_path / "mc", backend_factory=broken_factory)
    assert len(log) == 20
    assert log["performance"].isna().all()
    assert log["error"].str.contains("CUDA out of memory").all()


def test_changed_settings_restart_that_llm(queries, spec, tmp_path):
    collect(queries, [spec], CFG, tmp_path / "p", model_cache=tmp_path / "mc")
    longer = CFG.model_copy(update={"max_new_tokens": {"direct": 3, "think": 3}})
    log = collect(queries, [spec], longer, tmp_path / "p", model_cache=tmp_path / "mc")
    assert (log["output_tokens"] <= 3).all()
