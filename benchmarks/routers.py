"""Router benchmark (issue 3): quality on the real routing logs, and routing speed on this machine.

Quality: :func:`fusion.levels.query.benchmark.run_benchmark` (official test split) for knn, mlp, svm, mf and graph plus the
baselines, in the Performance First and Balance scenarios, on the LLMRouter 14-task log (5,608 train / 500 test
queries x 9 LLMs) and the RouterBench 0-shot 3-task log (its own train/test CSV files: 2,225 / 953 prompts x 11
LLMs). Test queries whose text also appears in the training split are counted, and where there are any the
benchmark is run again with them removed from the test split.

Speed, on the LLMRouter log, measured in the same run: p50/p90/p99 latency of routing one query with a
precomputed embedding; time to route a batch of 10,000 queries; end-to-end throughput (MiniLM embedding +
routing) against the encoder alone on the same texts; training time of every router (``encoder`` with a
CPU-sized setting).

    python benchmarks/routers.py [--quick] [--out reports/bench] [--cache .cache/bench]

Missing logs are imported from ``--data-root`` (default ``../shared/data/routing``) and cached under ``--cache``;
embeddings are cached by content in ``<cache>/../embeddings``. Results: ``<out>/routers.json`` (``routers_quick.json`` with ``--quick``) and a rich table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger("benchmarks.routers")

LOGS = {  # name -> (folder under --data-root, importer format)
    "llmrouter": ("llmrouter", "llmrouter"),
    "routerbench": ("routerbench_zs", "routerbench"),
}
LEARNED = ("knn", "mlp", "svm", "mf", "graph")
# the encoder router at a CPU-sized setting: embeddings + the lowest 4 of MiniLM's 6 layers frozen, 2 epochs
ENCODER_ROUTER = {"freeze_layers": 4, "epochs": 2, "progress": False}
TARGETS = {"single_p50_ms": 0.2, "batch_10k_s": 1.0, "e2e_ratio": 0.8, "fit_s": 60.0}


class TextEncoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class BenchSettings:
    logs: tuple[str, ...] = ("llmrouter", "routerbench")
    routers: dict[str, dict] = field(default_factory=lambda: {r: {} for r in LEARNED})
    scenarios: tuple[str, ...] = ("performance_first", "balance")
    speed_log: str = "llmrouter"
    speed_routers: tuple[str, ...] = ("knn", "mlp", "svm", "mf")
    fit_routers: tuple[str, ...] = (*LEARNED, "encoder")
    encoder_router: dict = field(default_factory=lambda: dict(ENCODER_ROUTER))
    single_repeats: int = 3000
    batch_size: int = 10_000
    batch_repeats: int = 7
    e2e_texts: int = 128
    e2e_repeats: int = 3
    seed: int = 0


def quick_settings() -> BenchSettings:
    """Under ~2 minutes: the fast learned routers only, no encoder router, few repeats, 64 texts end to end."""
    return BenchSettings(routers={"knn": {}, "mlp": {}, "mf": {}}, speed_routers=("knn", "mlp", "mf"),
                         fit_routers=("knn", "mlp", "mf"), single_repeats=500, batch_repeats=3, e2e_texts=64,
                         e2e_repeats=2)


# data ---------------------------------------------------------------------------------------------------------
def load_or_build(name: str, cache: Path, data_root: Path, encoder_ref: str | None = None):
    """The routing data (Performance First) of log ``name`` with MiniLM embeddings: the log from ``cache`` or
    imported from ``data_root`` (and cached), the embeddings from the encoder's content cache."""
    from fusion.core.embedding import Encoder
    from fusion.levels.query.data import load_routing_data
    from fusion.log.schema import read_log, write_log
    from fusion.models.refs import MINILM

    log_file = cache / f"{name}.parquet"
    if log_file.is_file():
        log = read_log(log_file)
    else:
        from fusion.importers import import_log

        folder, fmt = LOGS[name]
        src = data_root / folder
        if not src.exists():
            raise FileNotFoundError(f"{name}: no cached log at {log_file} and no source data at {src} "
                                    "(pass --data-root)")
        logger.info("importing %s from %s", name, src)
        log, _ = import_log(src, fmt)
        write_log(log, log_file)
    encoder = Encoder(encoder_ref or MINILM, cache.parent / "embeddings", 64)
    return load_routing_data(log, encoder=encoder)[1]


def repeats_mask(data) -> np.ndarray:
    """True for test queries whose text also appears in the training split (what route_bench counts)."""
    train_texts = set(data.texts[data.splits == "train"])
    return (data.splits == "test") & np.array([t in train_texts for t in data.texts])


# quality ------------------------------------------------------------------------------------------------------
def quality(data, settings: BenchSettings) -> dict:
    """run_benchmark on the official split; again without the train-test repeats when there are any."""
    from fusion.levels.query.benchmark import BenchConfig, run_benchmark

    cfg = BenchConfig(routers=settings.routers, scenarios=settings.scenarios, seed=settings.seed)
    out = {"with_repeats": run_benchmark(data, cfg)}
    rep = repeats_mask(data)
    out["n_test_seen_in_train"] = int(rep.sum())
    if rep.any():
        out["without_repeats"] = run_benchmark(data.subset(~rep), cfg)
    return out


def _records(result: dict, scenario: str) -> dict[str, dict]:
    return {r["router"]: r for r in result["records"] if r["scenario"] == scenario}


def quality_summary(result: dict, learned: Sequence[str]) -> dict:
    """The issue-3 quality targets on one benchmark result (performance = raw mean performance on test)."""
    pf = _records(result, "performance_first")
    bs, tb = pf["best-single"], pf["task-best"]
    learned = [r for r in learned if r in pf]
    if not learned:
        raise ValueError("no learned router in the benchmark result: nothing to compare with the baselines")
    best = max(learned, key=lambda r: pf[r]["performance"])
    out: dict[str, Any] = {
        "pf_best_router": best, "pf_best_performance": pf[best]["performance"],
        "pf_best_single_performance": bs["performance"], "pf_task_best_performance": tb["performance"],
        "pf_oracle_performance": pf["oracle"]["performance"],
        "pf_gain_over_best_single": pf[best]["performance"] - bs["performance"],
        "pf_gain_over_task_best": pf[best]["performance"] - tb["performance"],
        "pf_beats_best_single": pf[best]["performance"] > bs["performance"],
        "pf_beats_task_best": pf[best]["performance"] > tb["performance"],
        # one test mean's standard error, for reading the gaps (a routed mean of 0/1-ish scores)
        "pf_performance_se": float(np.sqrt(pf[best]["performance"] * (1 - pf[best]["performance"])
                                           / max(result.get("n_test", 1), 1))),
    }
    bal = _records(result, "balance")
    if bal:
        ok = [r for r in learned if r in bal and bal[r]["performance"] >= bs["performance"]
              and bal[r]["cost"] < bs["cost"]]
        pick = max(ok, key=lambda r: bal[r]["performance"]) if ok else max(
            (r for r in learned if r in bal), key=lambda r: bal[r]["reward"])
        out.update(balance_router=pick, balance_performance=bal[pick]["performance"],
                   balance_cost=bal[pick]["cost"], balance_reward=bal[pick]["reward"],
                   pf_best_single_cost=bs["cost"], balance_best_single_reward=bal["best-single"]["reward"],
                   balance_cost_saving=1.0 - bal[pick]["cost"] / bs["cost"] if bs["cost"] > 0 else None,
                   balance_matches_best_single_cheaper=bool(ok))
    # context: the cheapest point of a learned router's Performance First cost sweep that still reaches
    # best-single's performance (the cost weight is picked on the test split here, so this is optimistic)
    curves = (result.get("curves") or {}).get("routers", {})
    iso = [(c, p, r) for r in learned if r in curves
           for c, p in zip(curves[r]["cost"], curves[r]["performance"], strict=True) if p >= bs["performance"]]
    if iso:
        c, p, r = min(iso)
        out.update(sweep_iso_router=r, sweep_iso_cost=c, sweep_iso_performance=p,
                   sweep_iso_cost_saving=1.0 - c / bs["cost"] if bs["cost"] > 0 else None)
    return out


# speed --------------------------------------------------------------------------------------------------------
def _quantiles_ms(times: Sequence[float]) -> dict[str, float]:
    a = np.asarray(times) * 1e3
    return {"p50_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def single_latency(router, X: np.ndarray, tasks: np.ndarray, repeats: int, warmup: int = 50) -> dict:
    """Latency of ``router.route(X[i:i+1], tasks[i:i+1])``, cycling over the rows."""
    n = len(X)
    for i in range(min(warmup, repeats)):
        router.route(X[i % n:i % n + 1], tasks[i % n:i % n + 1])
    times = []
    for k in range(repeats):
        i = k % n
        t0 = time.perf_counter()
        router.route(X[i:i + 1], tasks[i:i + 1])
        times.append(time.perf_counter() - t0)
    return {**_quantiles_ms(times), "repeats": repeats}


def batch_latency(router, X: np.ndarray, tasks: np.ndarray, size: int, repeats: int) -> dict:
    """Seconds to route ``size`` queries in one call (the rows tiled up to ``size``)."""
    reps = -(-size // len(X))
    Xb, tb = np.tile(X, (reps, 1))[:size], np.tile(tasks, reps)[:size]
    router.route(Xb[:100], tb[:100])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        router.route(Xb, tb)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "size": size, "repeats": repeats,
            "queries_per_s": size / statistics.median(times)}


def end_to_end(routers: dict[str, Any], encoder: TextEncoder, texts: list[str], tasks: np.ndarray,
               repeats: int) -> dict:
    """Throughput of embed + route against embed alone on the same texts. Each repeat times the encoder alone,
    then embed + route for every router; a router's ratio is the median over repeats of (encoder-alone time /
    its end-to-end time) in that repeat."""
    encoder.encode(texts[:8])  # load the model
    enc_t: list[float] = []
    e2e_t: dict[str, list[float]] = {n: [] for n in routers}
    route_t: dict[str, list[float]] = {n: [] for n in routers}
    for _ in range(repeats):
        t0 = time.perf_counter()
        encoder.encode(texts)
        enc_t.append(time.perf_counter() - t0)
        for name, router in routers.items():
            t0 = time.perf_counter()
            X = encoder.encode(texts)
            t1 = time.perf_counter()
            router.route(X, tasks)
            t2 = time.perf_counter()
            e2e_t[name].append(t2 - t0)
            route_t[name].append(t2 - t1)
    n, enc = len(texts), statistics.median(enc_t)
    out = {"texts": n, "repeats": repeats, "encoder_qps": n / enc, "routers": {}}
    for name in routers:
        route = statistics.median(route_t[name])
        out["routers"][name] = {"e2e_qps": n / statistics.median(e2e_t[name]),
                                "ratio": statistics.median(a / b for a, b in zip(enc_t, e2e_t[name], strict=True)),
                                "route_ms": 1e3 * route, "ratio_from_route_time": enc / (enc + route)}
    return out


def fit_routers(train, names: Sequence[str], params: dict[str, dict], seed: int) -> tuple[dict, dict[str, float]]:
    from fusion.levels.query import make_router

    routers, fit_s = {}, {}
    for name in names:
        logger.info("fitting %s on %d queries", name, len(train))
        t0 = time.perf_counter()
        routers[name] = make_router(name, seed=seed, **params.get(name, {})).fit(train)
        fit_s[name] = time.perf_counter() - t0
        logger.info("%s: %.1f s", name, fit_s[name])
    return routers, fit_s


def speed(data, settings: BenchSettings, encoder: TextEncoder | None) -> dict:
    """Training time, one-query latency, 10k batch and end-to-end throughput on ``data`` (Performance First)."""
    from fusion.levels.query.evaluation import outcome

    train, test = data.split("train"), data.split("test")
    params = {**settings.routers, "encoder": settings.encoder_router}
    names = list(dict.fromkeys([*settings.fit_routers, *settings.speed_routers]))
    routers, fit_s = fit_routers(train, names, params, settings.seed)
    out: dict[str, Any] = {"n_train": len(train), "fit_s": fit_s, "single": {}, "batch": {},
                           "test_performance": {}}
    for name, r in routers.items():
        idx = r.route(test.X, test.tasks, test.texts)
        out["test_performance"][name] = outcome(test, idx)["performance"]
    for name in settings.speed_routers:
        out["single"][name] = single_latency(routers[name], test.X, test.tasks, settings.single_repeats)
        out["batch"][name] = batch_latency(routers[name], data.X, data.tasks, settings.batch_size,
                                           settings.batch_repeats)
        logger.info("%s: one query p50 %.3f ms, %d queries %.3f s", name, out["single"][name]["p50_ms"],
                    settings.batch_size, out["batch"][name]["median_s"])
    if encoder is not None and settings.e2e_texts > 0:
        k = min(settings.e2e_texts, len(test))
        out["end_to_end"] = end_to_end({n: routers[n] for n in settings.speed_routers}, encoder,
                                       [str(t) for t in test.texts[:k]], test.tasks[:k], settings.e2e_repeats)
    return out


def speed_targets(sp: dict, speed_routers: Sequence[str]) -> dict[str, dict[str, bool]]:
    e2e = sp.get("end_to_end", {}).get("routers", {})
    out = {}
    for name in speed_routers:
        out[name] = {"single_p50": sp["single"][name]["p50_ms"] < TARGETS["single_p50_ms"],
                     "batch_10k": sp["batch"][name]["median_s"] < TARGETS["batch_10k_s"]}
        if name in e2e:
            out[name]["e2e"] = e2e[name]["ratio"] >= TARGETS["e2e_ratio"]
    for name, s in sp["fit_s"].items():
        if name != "encoder":
            out.setdefault(name, {})["fit"] = s < TARGETS["fit_s"]
    return out


# the whole run ------------------------------------------------------------------------------------------------
def run(datasets: dict[str, Any], settings: BenchSettings, encoder: TextEncoder | None = None,
        progress: Callable[[str], None] | None = None) -> dict:
    """Every measurement on ``datasets`` (log name -> RoutingData); the core of the script."""
    t0 = time.perf_counter()
    result: dict[str, Any] = {"settings": asdict(settings), "targets": TARGETS, "machine": machine(), "logs": {}}
    from fusion.levels.query.baselines import BASELINES

    learned = [r for r in settings.routers if r not in BASELINES]
    for name, data in datasets.items():
        (progress or logger.info)(f"quality on {name}")
        q = quality(data, settings)
        q["summary"] = {"with_repeats": quality_summary(q["with_repeats"], learned)}
        if "without_repeats" in q:
            q["summary"]["without_repeats"] = quality_summary(q["without_repeats"], learned)
        result["logs"][name] = q
    if settings.speed_log in datasets:
        (progress or logger.info)(f"speed on {settings.speed_log}")
        sp = speed(datasets[settings.speed_log], settings, encoder)
        sp["targets"] = speed_targets(sp, settings.speed_routers)
        result["speed"] = sp
    result["machine"]["loadavg_end"] = _loadavg()
    result["wall_s"] = time.perf_counter() - t0
    return result


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def machine() -> dict:
    import sklearn
    import torch

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "sklearn": sklearn.__version__, "torch": torch.__version__, "loadavg_start": _loadavg()}


# output -------------------------------------------------------------------------------------------------------
def tables(result: dict) -> list:
    from rich.table import Table

    out = []
    for name, q in result["logs"].items():
        variants = [("with_repeats", "")] + ([("without_repeats", " (test repeats removed)")]
                                             if "without_repeats" in q else [])
        for key, label in variants:
            res = q[key]
            t = Table(title=f"{name}{label}: {res.get('n_train')} train / {res.get('n_test')} test × "
                            f"{len(res['candidates'])} LLMs, {res['evaluation']}; test queries seen in train: "
                            f"{res.get('n_test_seen_in_train')}")
            for col in ("router", "PF perf", "PF cost $/q", "PF Δ best-single", "PF Δ task-best", "PF AIQ", "Bal perf",
                        "Bal cost $/q", "Bal reward", "fit s (PF)"):
                t.add_column(col, justify="left" if col == "router" else "right")
            pf, bal = _records(res, "performance_first"), _records(res, "balance")
            curves = (res.get("curves") or {}).get("routers", {})
            for r in pf:
                b = bal.get(r, {})
                aiq = curves.get(r, {}).get("aiq")
                t.add_row(r, f"{pf[r]['performance']:.3f}", f"{pf[r]['cost']:.6f}",
                          f"{pf[r]['performance_gain_over_best_single']:+.3f}",
                          f"{pf[r]['performance'] - pf['task-best']['performance']:+.3f}",
                          "" if aiq is None else f"{aiq:.3f}",
                          f"{b['performance']:.3f}" if b else "", f"{b['cost']:.6f}" if b else "",
                          f"{b['reward']:.3f}" if b else "", f"{pf[r]['fit_s']:.1f}")
            out.append(t)
    sp = result.get("speed")
    if sp:
        t = Table(title=f"Speed on {result['settings']['speed_log']} ({sp['n_train']} training queries; "
                        f"load {result['machine']['loadavg_start']} → {result['machine']['loadavg_end']})")
        for col in ("router", "fit s", "1 query p50 ms", "p99 ms", f"{result['settings']['batch_size']} queries s",
                    "e2e q/s", "e2e / encoder"):
            t.add_column(col, justify="left" if col == "router" else "right")
        e2e = sp.get("end_to_end", {})
        for name, fs in sp["fit_s"].items():
            s, b, e = sp["single"].get(name), sp["batch"].get(name), e2e.get("routers", {}).get(name)
            t.add_row(name, f"{fs:.1f}", f"{s['p50_ms']:.3f}" if s else "", f"{s['p99_ms']:.3f}" if s else "",
                      f"{b['median_s']:.3f}" if b else "", f"{e['e2e_qps']:.1f}" if e else "",
                      f"{e['ratio']:.3f}" if e else "")
        if e2e:
            t.caption = f"encoder alone: {e2e['encoder_qps']:.1f} queries/s on {e2e['texts']} texts"
        out.append(t)
    return out


def verdicts(result: dict) -> list[str]:
    lines = []
    for name, q in result["logs"].items():
        for key, s in q["summary"].items():
            line = (f"{name} ({key.replace('_', ' ')}) PF: {s['pf_best_router']} {s['pf_best_performance']:.3f} vs best-single "
                    f"{s['pf_best_single_performance']:.3f} ({s['pf_gain_over_best_single']:+.3f}), task-best "
                    f"{s['pf_task_best_performance']:.3f} ({s['pf_gain_over_task_best']:+.3f}), s.e. "
                    f"{s['pf_performance_se']:.3f}")
            if "balance_router" in s:
                line += (f"; Balance: {s['balance_router']} perf {s['balance_performance']:.3f} at "
                         f"${s['balance_cost']:.6f}/q vs PF best-single {s['pf_best_single_performance']:.3f} at "
                         f"${s['pf_best_single_cost']:.6f}/q -> "
                         f"{'met' if s['balance_matches_best_single_cheaper'] else 'NOT met'}")
            if "sweep_iso_router" in s:
                line += (f"; PF cost sweep: {s['sweep_iso_router']} reaches {s['sweep_iso_performance']:.3f} at "
                         f"${s['sweep_iso_cost']:.6f}/q ({100 * s['sweep_iso_cost_saving']:.0f}% cheaper)")
            lines.append(line)
    sp = result.get("speed")
    if sp:
        for name, ok in sp["targets"].items():
            lines.append(f"speed {name}: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in ok.items()))
        if "encoder" in sp["fit_s"]:
            lines.append(f"encoder router fit ({result['settings']['encoder_router']}): {sp['fit_s']['encoder']:.0f} s,"
                         f" test performance {sp['test_performance']['encoder']:.3f}")
    return lines


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="subset of routers, few repeats (about 2 minutes)")
    ap.add_argument("--out", type=Path, default=Path("reports/bench"))
    ap.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data/routing"))
    ap.add_argument("--logs", default=None, help="comma-separated subset of: " + ",".join(LOGS))
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False)])
    settings = quick_settings() if args.quick else BenchSettings()
    if args.logs:
        settings.logs = tuple(s.strip() for s in args.logs.split(",") if s.strip())
    from fusion.core.embedding import Encoder
    from fusion.levels.query.base import json_default
    from fusion.models.refs import MINILM

    datasets = {n: load_or_build(n, args.cache, args.data_root) for n in settings.logs}
    encoder = Encoder(MINILM, None, 64)  # no cache: every call really encodes
    result = run(datasets, settings, encoder)
    result["command"] = "python benchmarks/routers.py" + (" --quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("routers_quick.json" if args.quick else "routers.json")
    path.write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    console = Console(width=max(Console().width, 150))
    for t in tables(result):
        console.print(t)
    for line in verdicts(result):
        console.print(line, markup=False)
    console.print(f"results: {path} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
