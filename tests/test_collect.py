"""Collection with the real transformers backend on a tiny random Llama: rows, tokens, cost, errors, resume."""

import pandas as pd
import pytest

from fusion.backends import make_backend
from fusion.config import CollectConfig, LLMSpec, QueriesConfig
from fusion.data.collect import BudgetExceeded, collect, llm_dir, plan, read_parts
from fusion.data.queries import build_queries
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


def test_collect_rows_tokens_cost(queries, spec, tmp_path, capsys):
    log = collect(queries, [spec], CFG, tmp_path / "parts", model_cache=tmp_path / "mc")
    # into a pipe (dvc repro > log) a line per written part, since rich draws no live bar there
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("collect tiny:") and " answers, " in x]
    done = [int(x.split(": ")[1].split("/")[0]) for x in lines]
    assert len(lines) >= 8 and done == sorted(done) and lines[0].startswith("collect tiny:direct: 3/20 answers, 0 errors")
    assert lines[-1].startswith("collect tiny:think: 20/20 answers")
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


def test_generation_failure_becomes_error_rows(queries, spec, tmp_path):
    def broken_factory(*a, **kw):
        backend = make_backend(*a, **kw)

        def generate(requests, **g):
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


def test_retry_errors_reruns_only_the_error_rows(queries, spec, tmp_path):
    reference = collect(queries, [spec], CFG, tmp_path / "ref", model_cache=tmp_path / "mc")
    calls = {"n": 0}

    def flaky_factory(*a, **kw):
        backend = make_backend(*a, **kw)
        real = backend.generate

        def generate(requests, **g):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("device lost")
            return real(requests, **g)

        backend.generate = generate
        return backend

    first = collect(queries, [spec], CFG, tmp_path / "p", model_cache=tmp_path / "mc", backend_factory=flaky_factory)
    assert first["error"].notna().sum() == 3  # one batch of 3 failed, the rest is kept
    planned = plan(queries, [spec], CFG, tmp_path / "p", retry_errors=True)
    assert sum(p.calls for p in planned) == 3 and sum(p.retry for p in planned) == 3
    assert sum(p.calls for p in plan(queries, [spec], CFG, tmp_path / "p")) == 0  # without the flag: done
    retried = collect(queries, [spec], CFG, tmp_path / "p", model_cache=tmp_path / "mc", retry_errors=True)
    pd.testing.assert_frame_equal(_stable(retried), _stable(reference))


def test_dry_run_plan_counts_calls_and_estimates_cost(queries, spec, tmp_path):
    planned = plan(queries, [spec], CFG, tmp_path / "p")
    assert [p.candidate for p in planned] == ["tiny:direct", "tiny:think"]
    assert [p.calls for p in planned] == [10, 10] and not (tmp_path / "p").exists()  # nothing written
    direct = planned[0]
    assert direct.est_output_tokens == 10 * 6  # max_new_tokens until rows exist
    assert direct.est_cost_usd == pytest.approx((direct.est_input_tokens * 1.0 + 60 * 2.0) / 1e6)
    log = collect(queries, [spec], CFG, tmp_path / "p", model_cache=tmp_path / "mc")
    after = plan(queries, [spec], CFG, tmp_path / "p")
    assert [p.calls for p in after] == [0, 0] and [p.done for p in after] == [10, 10]
    assert sum(p.spent_usd for p in after) == pytest.approx(float(log["cost_usd"].sum()))


def test_max_cost_stops_before_or_during_a_run_keeping_finished_parts(queries, spec, tmp_path):
    full = collect(queries, [spec], CFG, tmp_path / "ref", model_cache=tmp_path / "mc")
    actual = float(full["cost_usd"].sum())
    estimate = sum(p.est_cost_usd for p in plan(queries, [spec], CFG, tmp_path / "new"))
    # an estimate above the cap: nothing starts
    with pytest.raises(BudgetExceeded, match="not started"):
        collect(queries, [spec], CFG.model_copy(update={"max_cost_usd": estimate / 2}), tmp_path / "a",
                model_cache=tmp_path / "mc")
    assert not list((tmp_path / "a").rglob("part-*.parquet"))
    # a running total above the cap: stops after the part that passed it, every finished part kept
    prices = spec.model_copy(update={"output_price": 0.0, "input_price": 1000.0})
    est = sum(p.est_cost_usd for p in plan(queries, [prices], CFG, tmp_path / "b"))
    real = collect(queries, [prices], CFG, tmp_path / "realcost", model_cache=tmp_path / "mc")
    real_cost = float(real["cost_usd"].sum())
    assert est < real_cost, "the tiny tokenizer splits finer than chars/4, so the estimate is low here"
    cap = (est + real_cost) / 2
    with pytest.raises(BudgetExceeded, match="running cost"):
        collect(queries, [prices], CFG.model_copy(update={"max_cost_usd": cap}), tmp_path / "b",
                model_cache=tmp_path / "mc")
    kept = read_parts(llm_dir(tmp_path / "b", prices))
    assert 0 < len(kept) < 20 and kept["cost_usd"].sum() > cap
    assert kept["cost_usd"].sum() - kept.groupby("collected_at")["cost_usd"].sum().iloc[-1] <= cap
    assert actual > 0


def test_replay_backend_rescores_an_existing_log(queries, spec, tmp_path):
    from fusion.importers import write_long

    original = collect(queries, [spec], CFG, tmp_path / "ref", model_cache=tmp_path / "mc")
    write_long(original, tmp_path / "old.jsonl")
    replay = LLMSpec(name="tiny", backend="replay", model="tiny", input_price=1.0, output_price=2.0,
                     options={"log": str(tmp_path / "old.jsonl")})
    log = collect(queries, [replay], CFG, tmp_path / "p", model_cache=tmp_path / "mc")
    same = ["query_id", "candidate", "response", "input_tokens", "output_tokens", "cost_usd", "performance"]
    pd.testing.assert_frame_equal(log[same], original[same])
    assert (log["backend"] == "replay").all() and (log["tokens_source"] == "log").all()
    # a query the replayed log does not answer is an error row that says so
    fewer = original[original["query_id"] != original["query_id"].iloc[0]]
    write_long(fewer, tmp_path / "fewer.jsonl")
    part = replay.model_copy(update={"options": {"log": str(tmp_path / "fewer.jsonl")}})
    log = collect(queries, [part], CFG, tmp_path / "q", model_cache=tmp_path / "mc")
    assert log["error"].str.startswith("not in replayed log").sum() == 2 and len(log) == 20


def test_backends_load_safely_from_concurrent_threads(spec, tmp_path):
    """Shards collected by threads of one process load their models at once; transformers' loading races (meta
    tensors, lazy imports) unless serialised."""
    import threading

    errors = []

    def load():
        try:
            make_backend(spec, model_cache=tmp_path)
        except Exception as exc:  # the race shows as NotImplementedError / ImportError
            errors.append(repr(exc))

    for _ in range(3):
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
