"""The `openai` backend against real HTTP servers on 127.0.0.1: a fault-injecting one (429 storms, 5xx, malformed
JSON, timeouts, a dead endpoint, a wrong key) and the real local counterpart, `transformers serve`."""

from __future__ import annotations

import pandas as pd
import pytest

from fusion.backends import BackendOptionError, Request, check_pool, make_backend
from fusion.backends.local_server import free_port, local_server
from fusion.config import CollectConfig, LLMSpec, QueriesConfig
from fusion.data.collect import collect
from fusion.data.queries import build_queries
from fusion.log.schema import check_log
from fusion.log.summary import error_summary
from tests.fault_server import FaultServer

FAST = {"max_retries": 2, "retry_initial_s": 0.01, "retry_max_s": 0.05, "timeout_s": 1.0, "max_concurrency": 8}
CFG = CollectConfig(batch_size=4, max_new_tokens={"direct": 8, "think": 8}, sandbox_workers=1)


@pytest.fixture(scope="module")
def queries():
    cfg = QueriesConfig(seed=0, test_fraction=0.3, sources=[
        {"task": "arith_word", "source": "synthetic", "limit": 6},
        {"task": "mc_reasoning", "source": "synthetic", "limit": 6},
    ])
    return build_queries(cfg)


def _spec(url: str, model: str = "m", **options) -> LLMSpec:
    return LLMSpec(name="remote", backend="openai", model=model, input_price=1.0, output_price=2.0,
                   options={"base_url": url, **FAST, **options})


def _collect(queries, spec, tmp_path, **kw):
    return collect(queries, [spec], CFG, tmp_path / "parts", model_cache=tmp_path / "mc", **kw)


def test_answers_keep_their_order_and_usage_tokens(queries, tmp_path):
    with FaultServer("ok", delay_s=0.05) as srv:
        log = _collect(queries, _spec(srv.base_url, part_size=12), tmp_path)
    assert check_log(log) == [] and len(log) == 24 and log["error"].isna().all()
    # each answer is the echo of its own prompt: nothing mixed up between concurrent requests
    assert all(r.response.startswith(f"echo {len(r.prompt)}: ") for r in log.itertuples())
    assert (log["tokens_source"] == "server").all()
    assert (log["input_tokens"] == log["prompt"].str.split().str.len()).all()
    assert 1 < srv.max_in_flight <= 8  # concurrent, and bounded by max_concurrency


@pytest.mark.parametrize(("mode", "kind"), [
    ("429", "http 429"), ("500", "http 500"), ("malformed", "malformed response"),
    ("no_choices", "malformed response"), ("slow", "timeout"),
])
def test_a_failing_server_gives_error_rows_and_keeps_finished_ones(queries, tmp_path, mode, kind):
    # the server answers the first 5 requests, then fails every one: 5 answered rows, the rest are error rows
    with FaultServer(mode, ok_first=5) as srv:
        log = _collect(queries, _spec(srv.base_url, part_size=4, timeout_s=0.3), tmp_path)
    assert len(log) == 24 and check_log(log) == []
    ok = log[log["error"].isna()]
    assert len(ok) == 5 and ok["performance"].notna().all()
    failed = log[log["error"].notna()]
    assert failed["response"].isna().all() and failed["performance"].isna().all()
    summary = error_summary(log)
    assert summary["kind"].unique().tolist() == [kind] and int(summary["rows"].sum()) == 19
    if mode in ("429", "500", "slow"):  # retried: 1 + max_retries attempts each
        assert failed["error"].str.endswith("(after 3 attempts)").all()


def test_a_dead_endpoint_gives_error_rows_then_retry_errors_fills_them(queries, tmp_path):
    port = free_port()  # nothing listens there
    dead = _spec(f"http://127.0.0.1:{port}/v1")
    log = _collect(queries, dead, tmp_path)
    assert len(log) == 24 and log["error"].str.startswith("connection failed").all()
    # the endpoint comes up (same address): --retry-errors re-runs only the error rows
    with FaultServer("ok", port=port) as srv:
        log = _collect(queries, dead, tmp_path, retry_errors=True)
        assert srv.requests == 24
        again = _collect(queries, dead, tmp_path, retry_errors=True)
        assert srv.requests == 24  # nothing left to retry
    pd.testing.assert_frame_equal(again, log)
    assert len(log) == 24 and log["error"].isna().all() and log[["query_id", "candidate"]].value_counts().max() == 1


def test_a_429_storm_that_passes_is_absorbed_by_retries(queries, tmp_path):
    with FaultServer("ok", flaky=2) as srv:  # every prompt gets two 429s (Retry-After: 0), then its answer
        log = _collect(queries, _spec(srv.base_url), tmp_path)
    assert log["error"].isna().all() and srv.requests == 24 * 3


def test_without_usage_the_models_tokenizer_counts(queries, tmp_path, tiny_llama):
    from transformers import AutoTokenizer

    with FaultServer("no_usage") as srv:
        log = _collect(queries, _spec(srv.base_url, model=str(tiny_llama)), tmp_path)
        no_tok = _collect(queries, _spec(srv.base_url, model="unknown-model"), tmp_path / "b")
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    assert (log["tokens_source"] == "tokenizer").all()
    r = log.iloc[0]
    assert r.output_tokens == len(tok(r.response, add_special_tokens=False)["input_ids"])
    assert no_tok["tokens_source"].isna().all() and no_tok["input_tokens"].isna().all()
    assert no_tok["error"].isna().all()  # unknown tokens are not an error: the row says so


def test_api_key_only_from_the_environment_never_stored(queries, tmp_path, monkeypatch, caplog):
    import logging

    from fusion.config import TrackingConfig, parse_params
    from fusion.data.stages import collect as stage

    secret = "sk-test-5f1e2d3c4b5a69788796a5b4c3d2e1f0"
    monkeypatch.setenv("FUSION_TEST_API_KEY", secret)
    qpath = tmp_path / "data" / "queries.parquet"
    qpath.parent.mkdir()
    queries.to_parquet(qpath)
    caplog.set_level(logging.DEBUG)
    with FaultServer("ok", key=secret) as srv:
        params = parse_params({
            "pool": [_spec(srv.base_url, api_key_env="FUSION_TEST_API_KEY").model_dump()],
            "queries": {"sources": [{"task": "arith_word", "source": "synthetic"}]},
            "collect": CFG.model_dump(),
            "tracking": TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db",
                                       artifact_root=str(tmp_path / "mlartifacts")).model_dump(),
        }).resolve(tmp_path)
        stage.run(params)
    assert all(h == f"Bearer {secret}" for h in srv.auth_headers)  # it was sent ...
    log = pd.read_parquet(params.paths.collected)
    assert log["error"].isna().all()
    # ... and is nowhere on disk (parts, log, MLflow store and artifacts) nor in the logs
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    assert secret not in caplog.text

    monkeypatch.delenv("FUSION_TEST_API_KEY")
    with pytest.raises(RuntimeError, match="FUSION_TEST_API_KEY"):
        make_backend(params.pool[0], model_cache=tmp_path / "mc")


def test_options_are_typed_per_backend():
    bad = LLMSpec(name="x", backend="openai", model="m", input_price=0, output_price=0,
                  options={"base_url": "http://h/v1", "max_concurency": 3})
    with pytest.raises(BackendOptionError, match=r"pool\[x\]\.options\.max_concurency: unknown option"):
        check_pool([bad])
    missing = LLMSpec(name="y", backend="openai", model="m", input_price=0, output_price=0)
    with pytest.raises(BackendOptionError, match=r"pool\[y\]\.options\.base_url"):
        check_pool([missing])
    check_pool([LLMSpec(name="z", backend="transformers", model="m", input_price=0, output_price=0)])


@pytest.mark.slow
def test_transformers_serve_sustains_32_concurrent_requests(tiny_llama, tmp_path):
    """The real local counterpart: `transformers serve` on a local folder, offline; 40 requests, 32 in flight."""
    from transformers import AutoTokenizer

    with local_server(str(tiny_llama), model_cache=tmp_path / "mc") as srv:
        spec = LLMSpec(name="local", backend="openai", model=srv.model, input_price=1, output_price=1,
                       options={"base_url": srv.base_url, "max_concurrency": 32, "timeout_s": 120})
        backend = make_backend(spec, model_cache=tmp_path / "mc")
        prompts = [f"What is {i} plus {i}?" for i in range(40)]
        gens = backend.generate([Request(p, f"q{i}") for i, p in enumerate(prompts)], max_new_tokens=6)
    assert [g.error for g in gens] == [None] * 40
    assert all(g.tokens_source == "server" and 0 < g.output_tokens <= 6 for g in gens)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    n_in = len(tok.apply_chat_template([{"role": "user", "content": prompts[0]}], tokenize=True,
                                       add_generation_prompt=True)["input_ids"])
    assert gens[0].input_tokens == n_in  # the server's usage counts the rendered chat prompt


def test_requests_per_second_limits_the_rate_the_server_sees():
    with FaultServer("ok") as srv:
        spec = _spec(srv.base_url, requests_per_second=5, max_concurrency=16)
        gens = make_backend(spec, model_cache=".").generate([Request(f"p{i}") for i in range(12)], max_new_tokens=4)
    assert [g.error for g in gens] == [None] * 12
    # a leaky bucket of 5/s: a burst of 5, then one every 0.2 s -> the 7 others take at least ~1.4 s
    t = sorted(srv.arrivals)
    assert t[-1] - t[0] >= 1.2
    assert sum(u < t[0] + 0.5 for u in t) <= 7  # not all at once


def test_a_pool_may_mix_backends(queries, tmp_path, tiny_llama):
    local = LLMSpec(name="tiny", backend="transformers", model=str(tiny_llama), modes=["direct"], input_price=1,
                    output_price=1)
    with FaultServer("ok") as srv:
        log = collect(queries, [local, _spec(srv.base_url)], CFG, tmp_path / "parts", model_cache=tmp_path / "mc")
    assert log.groupby("backend")["candidate"].unique().map(sorted).to_dict() == {
        "openai": ["remote:direct", "remote:think"], "transformers": ["tiny:direct"]}
    assert len(log) == 12 * 3 and check_log(log) == []
