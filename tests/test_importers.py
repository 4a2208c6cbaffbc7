"""Log importers on the real routing data in ../shared/data/routing, plus hand-made bad files."""

from __future__ import annotations

import ast
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from rich.table import Table

from fusion.importers import (
    IMPORTERS,
    MISSING_SCORE,
    ImportSummary,
    LogImportError,
    SourceNotFoundError,
    UnknownFormatError,
    describe_formats,
    formats,
    import_log,
    summarize,
    write_long,
)
from fusion.importers.splits import hash_splits
from fusion.importers.values import parse_literal_text, parse_score_value
from fusion.log.schema import COLUMNS, LogSchemaError, check_log, make_query_id
from fusion.tasks.domains import domain_of, normalise_task_name

# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def llmrouter_dir(shared_data: Path) -> Path:
    return shared_data / "routing" / "llmrouter"


@pytest.fixture(scope="module")
def routerbench_dir(shared_data: Path) -> Path:
    return shared_data / "routing" / "routerbench_zs"


@pytest.fixture(scope="module")
def llmrouter(llmrouter_dir: Path) -> tuple[pd.DataFrame, ImportSummary]:
    return import_log(llmrouter_dir, "llmrouter")


@pytest.fixture(scope="module")
def routerbench(routerbench_dir: Path) -> tuple[pd.DataFrame, ImportSummary]:
    return import_log(routerbench_dir, "routerbench")


def read_jsonl(path: Path) -> list[dict]:
    # split on "\n" only: query texts contain U+2028, which str.splitlines() would split on
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x.strip()]


def _turns(text: str) -> str:
    return "\n".join(ast.literal_eval(text))


DIRECT = ["gpt-4-1106-preview", "claude-v2", "mistralai/mistral-7b-chat"]
THINK_FROM = {"claude-v2_think": "claude-v1"}  # real claude-v1 rows relabelled as claude-v2's think mode
PRICES = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "claude-v2": (8.0, 24.0),
    "mistralai/mistral-7b-chat": (0.2, 0.2),
}


def fusionbench_frame(routerbench_dir: Path) -> pd.DataFrame:
    """Real RouterBench rows (mbpp and winogrande test files) converted to FusionBench's CSV schema."""
    parts = []
    for name in ("mbpp_test.csv", "winograde_test.csv"):
        wide = pd.read_csv(routerbench_dir / name)
        query = wide["prompt"].map(_turns)
        for llm in [*DIRECT, *THINK_FROM]:
            src = THINK_FROM.get(llm, llm)
            base = llm.removesuffix("_think")
            in_price, out_price = PRICES[base]
            response = wide[f"{src}|model_response"].map(_turns)
            in_tok = query.str.len().floordiv(4) + 1
            out_tok = response.str.len().floordiv(4) + 1
            score = wide[src]
            is_code = wide["eval_name"] == "mbpp"
            perf = score.map(lambda s: f"{{'pass@1': {s}}}").where(is_code, score.astype(str))
            parts.append(
                pd.DataFrame(
                    {
                        "task_name": wide["eval_name"],
                        "task_id": wide["sample_id"],
                        "task_description": "Answer the question.",
                        "query": query,
                        "ground_truth": "see tests",
                        "metric": is_code.map({True: "code_eval", False: "em_mc"}),
                        "llm": llm,
                        "input_price": in_price,
                        "output_price": out_price,
                        "input_tokens_num": in_tok,
                        "output_tokens_num": out_tok,
                        "performance": perf,
                        "cost": (in_tok * in_price + out_tok * out_price) / 1e6,
                        "response": response,
                        "llm_judge": score * 0.8,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fusionbench_csv(routerbench_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fb") / "fusionbench.csv"
    fusionbench_frame(routerbench_dir).to_csv(path, index=False)
    return path


def tiny_fusionbench(**overrides: object) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "task_name": ["gsm8k", "gsm8k", "mbpp", "mbpp"],
            "task_id": ["1", "1", "2", "2"],
            "task_description": "d",
            "query": ["What is 2+2?", "What is 2+2?", "Write f.", "Write f."],
            "ground_truth": ["4", "4", "assert f()", "assert f()"],
            "metric": ["GSM8K", "GSM8K", "code_eval", "code_eval"],
            "llm": ["a", "b", "a", "b_think"],
            "input_price": 1.0,
            "output_price": 2.0,
            "input_tokens_num": [10, 10, 20, 20],
            "output_tokens_num": [5, 5, 50, 500],
            "performance": ["1.0", "0", "{'pass@1': 0.5}", "{'pass@1': 1.0}"],
            "cost": [2e-5, 2e-5, 1.2e-4, 1.02e-3],
            "response": ["4", "5", "def f(): ...", "def f(): return 1"],
        }
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def tiny_long() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q2"],
            "task": ["gsm8k", "gsm8k", "mbpp"],
            "split": ["train", "train", "test"],
            "query": ["2+2?", "2+2?", "Write f."],
            "llm": ["a", "b", "a"],
            "performance": [1.0, 0.0, 0.5],
        }
    )


# ------------------------------------------------------------------------------------------- registry / api


def test_all_four_formats_are_registered_with_descriptions() -> None:
    assert formats() == ["fusionbench", "llmrouter", "long", "routerbench"]
    assert all(name in IMPORTERS for name in formats())
    descriptions = describe_formats()
    assert set(descriptions) == set(formats()) and all(descriptions.values())


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormatError) as exc:
        import_log(tmp_path, "openrouterbench")
    assert isinstance(exc.value, LogSchemaError)
    assert "openrouterbench" in str(exc.value)
    assert "fusionbench, llmrouter, long, routerbench" in str(exc.value)


def test_missing_source_is_a_schema_error_and_a_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "train.csv"
    with pytest.raises(SourceNotFoundError) as exc:
        import_log(missing, "routerbench")
    assert isinstance(exc.value, FileNotFoundError) and isinstance(exc.value, LogSchemaError)
    assert str(missing) in str(exc.value)


def test_unknown_option_names_the_option_and_the_accepted_ones(routerbench_dir: Path) -> None:
    with pytest.raises(LogImportError, match=r"'test_fraction'.*split=None"):
        import_log(routerbench_dir / "mbpp_test.csv", "routerbench", test_fraction=0.3)


# --------------------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("raw", "task", "domain"),
    [
        ("arc-challenge", "arc_challenge", "commonsense"),
        ("winogrande", "winogrande", "commonsense"),
        ("agentverse-mgsm", "agentverse-mgsm", "math"),
        ("agentverse-logicgrid", "agentverse-logicgrid", "other"),
        ("commongen", "commongen", "other"),
        ("human_eval", "human_eval", "code"),
        ("natural_qa", "natural_qa", "world_knowledge"),
        ("boolq", "boolq", "reading"),
        ("GPQA", "gpqa", "popular"),
        ("mmlu-abstract-algebra", "mmlu-abstract-algebra", "popular"),
        ("grade-school-math", "gsm8k", "math"),
    ],
)
def test_task_names_and_domains(raw: str, task: str, domain: str) -> None:
    assert normalise_task_name(raw) == task
    assert domain_of(task) == domain


def test_score_values_parse_numbers_and_score_dicts() -> None:
    assert parse_score_value("{'pass@1': 1.0}") == 1.0
    assert parse_score_value("{'pass@1': 0.25, 'pass@5': 1.0}") == 0.25
    assert parse_score_value("{'acc': 0.5}") == 0.5
    assert parse_score_value(" 0.75 ") == 0.75
    with pytest.raises(ValueError, match="pass@1"):
        parse_score_value("{'acc': 0.5, 'f1': 0.1}")
    with pytest.raises(ValueError, match="abc"):
        parse_score_value("abc")


def test_literal_lists_are_joined_and_other_text_kept() -> None:
    values = pd.Series(["['turn 1', 'turn 2']", "['it\\'s']", "plain [text", None, "['x']"], dtype=object)
    text, raw = parse_literal_text(values)
    assert text.tolist()[:3] == ["turn 1\nturn 2", "it's", "plain [text"]
    assert text.isna().tolist() == [False, False, False, True, False]
    assert raw == 1
    as_lists, _ = parse_literal_text(pd.Series([["a", "b"], ["a", "b"], "['c']"], dtype=object))
    assert as_lists.tolist() == ["a\nb", "a\nb", "c"]


def test_hash_splits_are_deterministic_and_seeded() -> None:
    ids = pd.Series([f"q{i}" for i in range(4000)])
    a = hash_splits(ids, test_fraction=0.2, seed=0)
    assert a.equals(hash_splits(ids, test_fraction=0.2, seed=0))
    assert abs((a == "test").mean() - 0.2) < 0.03 and set(a) == {"train", "test"}
    assert not a.equals(hash_splits(ids, test_fraction=0.2, seed=1))
    three = hash_splits(ids, test_fraction=0.2, val_fraction=0.1, seed=0)
    assert abs((three == "val").mean() - 0.1) < 0.03
    assert ((a == "test") == (three == "test")).all()  # adding a val split keeps the test queries
    with pytest.raises(LogImportError, match="test_fraction"):
        hash_splits(ids, test_fraction=1.2)


# ------------------------------------------------------------------------------------------- llmrouter


def test_llmrouter_real_counts(llmrouter: tuple[pd.DataFrame, ImportSummary]) -> None:
    df, summary = llmrouter
    assert not check_log(df) and list(df.columns) == list(COLUMNS)
    assert summary.queries_per_split == {"test": 500, "train": 5608}
    assert summary.n_queries == 6108 and summary.n_rows == 6108 * 9 == len(df)
    assert summary.n_candidates == 9 and all(c.endswith(":direct") for c in summary.candidates)
    assert df.loc[df["split"] == "train", "task"].nunique() == 14
    assert df.loc[df["split"] == "test", "task"].nunique() == 10
    assert summary.missing_cells == 0 and df["performance"].notna().all()
    assert set(df["backend"]) == {"import:llmrouter"}
    assert summary.seconds is not None and summary.seconds < 5.0
    notes = " | ".join(summary.notes)
    assert "6 query text(s) appear under more than one task" in notes
    assert "119 query text(s) appear word for word in more than one split" in notes
    assert "50 of them with different scores" in notes
    assert "input-only estimate" in notes and "ceil(query chars / 4)" in notes


def test_llmrouter_values_match_the_source(
    llmrouter: tuple[pd.DataFrame, ImportSummary], llmrouter_dir: Path
) -> None:
    df, _ = llmrouter
    items = json.loads((llmrouter_dir / "train.json").read_text())
    lines = read_jsonl(llmrouter_dir / "default_query_train.jsonl")
    prices = json.loads((llmrouter_dir / "default_llm.json").read_text())
    item = items[1234]
    first = next(x for x in lines if x["query"] == item["question"])
    rows = df[(df["split"] == "train") & (df["query"] == item["question"])].set_index("llm")
    assert rows["performance"].astype(float).to_dict() == pytest.approx(item["scores"])
    assert set(rows["task"]) == {normalise_task_name(first["task_name"])}
    assert set(rows["ground_truth"]) == {first["ground_truth"]}
    tokens = math.ceil(len(item["question"]) / 4)
    assert set(rows["input_tokens"]) == {tokens}
    assert len(rows) == 9
    for llm in rows.index:
        assert rows.loc[llm, "cost_usd"] == pytest.approx(tokens * prices[llm]["input_price"] / 1e6)
    assert rows["output_tokens"].isna().all()


def test_llmrouter_ambiguous_tasks_take_the_first_line(
    llmrouter: tuple[pd.DataFrame, ImportSummary], llmrouter_dir: Path
) -> None:
    df, _ = llmrouter
    lines = read_jsonl(llmrouter_dir / "default_query_train.jsonl")
    tasks: dict[str, list[str]] = {}
    for x in lines:
        tasks.setdefault(x["query"], []).append(x["task_name"])
    ambiguous = {q: t for q, t in tasks.items() if len(set(t)) > 1}
    assert len(ambiguous) == 6
    train = df[df["split"] == "train"].drop_duplicates("query_id").set_index("query")
    for query, names in ambiguous.items():
        assert train.loc[query, "task"] == normalise_task_name(names[0])


def test_llmrouter_train_test_repeats_stay_distinct_queries(
    llmrouter: tuple[pd.DataFrame, ImportSummary],
) -> None:
    df, _ = llmrouter
    per_text = df.drop_duplicates("query_id").groupby("query")["split"].nunique()
    repeated = per_text[per_text > 1].index
    assert len(repeated) == 119
    sub = df[df["query"].isin(repeated)]
    assert sub.groupby("query")["query_id"].nunique().eq(2).all()


# ----------------------------------------------------------------------------------------- routerbench


def test_routerbench_real_directory(routerbench: tuple[pd.DataFrame, ImportSummary]) -> None:
    df, summary = routerbench
    assert not check_log(df)
    assert summary.n_queries == 3178 and summary.n_candidates == 11 and len(df) == 3178 * 11
    assert summary.queries_per_split == {"test": 445 + 128 + 380, "train": 1039 + 299 + 887}
    assert summary.queries_per_task == {"arc_challenge": 1484, "mbpp": 427, "winogrande": 1267}
    assert summary.missing_cells == 154
    missing = df[df["performance"].isna()]
    assert len(missing) == 154 and set(missing["error"]) == {MISSING_SCORE}
    assert missing["query_id"].nunique() == 28 and set(missing["task"]) == {"arc_challenge"}
    assert df.loc[df["performance"].notna(), "error"].isna().all()
    assert set(df["mode"]) == {"direct"} and df["input_tokens"].isna().all()
    assert not df["query"].str.startswith("['").any() and not df["response"].str.startswith("['").any()
    assert "oracle_model_to_route_to" not in df["llm"].tolist()
    notes = " | ".join(summary.notes)
    assert "oracle_model_to_route_to" in notes and "not a model" in notes
    assert "62 in 8 rows" in notes and "92 in 20 rows" in notes
    assert "arc_challenge prompts start with the same" in notes


def test_routerbench_values_match_the_csv(
    routerbench: tuple[pd.DataFrame, ImportSummary], routerbench_dir: Path
) -> None:
    df, _ = routerbench
    path = routerbench_dir / "winograde_train.csv"
    wide = pd.read_csv(path)
    row = wide.iloc[10]
    qid = make_query_id("winogrande", _turns(row["prompt"]), namespace="train")
    got = df[df["query_id"] == qid].set_index("llm")
    assert len(got) == 11
    for model in ("claude-v2", "mistralai/mixtral-8x7b-chat"):
        assert got.loc[model, "performance"] == row[model]
        assert got.loc[model, "cost_usd"] == row[f"{model}|total_cost"]
        assert got.loc[model, "response"] == _turns(row[f"{model}|model_response"])
    assert set(got["collected_at"]) == {pd.Timestamp(os.stat(path).st_mtime_ns, unit="ns", tz="UTC")}


def test_routerbench_single_file_and_split_override(routerbench_dir: Path) -> None:
    df, summary = import_log(routerbench_dir / "mbpp_test.csv", "routerbench")
    assert summary.queries_per_split == {"test": 128} and summary.missing_cells == 0
    val, _ = import_log(routerbench_dir / "mbpp_test.csv", "routerbench", split="val")
    assert set(val["split"]) == {"val"}
    assert set(val["query_id"]).isdisjoint(df["query_id"])  # ids are namespaced by split
    with pytest.raises(LogImportError, match="split"):
        import_log(routerbench_dir, "routerbench", split="test")


def test_routerbench_pickle_equals_csv(routerbench_dir: Path, tmp_path: Path) -> None:
    csv_path = routerbench_dir / "arc_challenge_test.csv"
    pkl = tmp_path / "arc_challenge_test.pkl"
    pd.read_csv(csv_path).to_pickle(pkl)
    from_pkl, summary = import_log(pkl, "routerbench")
    from_csv, _ = import_log(csv_path, "routerbench")
    assert summary.missing_cells == 62 and summary.n_queries == 445
    pd.testing.assert_frame_equal(
        from_pkl.drop(columns="collected_at"), from_csv.drop(columns="collected_at")
    )


def test_routerbench_file_without_split_in_name_needs_the_option(
    routerbench_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "mbpp.csv"
    path.write_bytes((routerbench_dir / "mbpp_test.csv").read_bytes())
    with pytest.raises(LogImportError, match="split"):
        import_log(path, "routerbench")
    df, _ = import_log(path, "routerbench", split="train")
    assert set(df["split"]) == {"train"}


def test_routerbench_bad_score_names_file_column_and_row(routerbench_dir: Path, tmp_path: Path) -> None:
    wide = pd.read_csv(routerbench_dir / "mbpp_test.csv")
    wide["claude-v2"] = wide["claude-v2"].astype(object)
    wide.loc[3, "claude-v2"] = "abc"
    path = tmp_path / "mbpp_test.csv"
    wide.to_csv(path, index=False)
    with pytest.raises(LogImportError) as exc:
        import_log(path, "routerbench")
    msg = str(exc.value)
    assert "mbpp_test.csv" in msg and "'claude-v2'" in msg and "row 4" in msg and "'abc'" in msg


# ----------------------------------------------------------------------------------------- fusionbench


def test_fusionbench_from_real_rows(fusionbench_csv: Path, routerbench_dir: Path) -> None:
    df, summary = import_log(fusionbench_csv, "fusionbench")
    assert not check_log(df)
    assert summary.n_queries == 128 + 380
    assert summary.candidates == sorted(
        [
            "claude-v2:direct",
            "claude-v2:think",
            "gpt-4-1106-preview:direct",
            "mistralai/mistral-7b-chat:direct",
        ]
    )
    think = df[df["mode"] == "think"]
    assert set(think["llm"]) == {"claude-v2"} and len(think) == 508
    # dict-string performances of mbpp are parsed, never NaN, and equal the real 0/1 scores
    assert df["performance"].notna().all() and summary.missing_cells == 0
    wide = pd.read_csv(routerbench_dir / "mbpp_test.csv")
    row = wide.iloc[7]
    qid = make_query_id("mbpp", _turns(row["prompt"]))
    got = df[df["query_id"] == qid].set_index("candidate")
    assert got.loc["claude-v2:direct", "performance"] == row["claude-v2"]
    assert got.loc["claude-v2:think", "performance"] == row["claude-v1"]
    assert got.loc["claude-v2:think", "judge_score"] == pytest.approx(0.8 * row["claude-v1"])
    assert got["input_tokens"].notna().all() and got["cost_usd"].gt(0).all()
    assert set(df["backend"]) == {"import:fusionbench"}
    notes = " | ".join(summary.notes)
    assert "pass@1" in notes and "mode 'think'" in notes and "differs" not in notes
    # hashed split: deterministic, one split per query, about 20 % test
    per_query = df.groupby("query_id")["split"].nunique()
    assert per_query.eq(1).all()
    assert 0.12 < summary.queries_per_split.get("test", 0) / summary.n_queries < 0.28
    again, _ = import_log(fusionbench_csv, "fusionbench")
    pd.testing.assert_series_equal(df["split"], again["split"])
    fixed, s = import_log(fusionbench_csv, "fusionbench", split="test")
    assert set(fixed["split"]) == {"test"} and s.queries_per_split == {"test": 508}


def test_fusionbench_cost_disagreement_is_noted_and_file_value_kept(
    routerbench_dir: Path, tmp_path: Path
) -> None:
    frame = fusionbench_frame(routerbench_dir)
    frame.loc[:9, "cost"] = frame.loc[:9, "cost"] * 1.5
    frame.loc[10:14, "cost"] = None
    path = tmp_path / "fb.csv"
    frame.to_csv(path, index=False)
    df, summary = import_log(path, "fusionbench")
    notes = " | ".join(summary.notes)
    assert "10 of" in notes and "differs by more than 1%" in notes
    assert "5 rows had no cost: estimated" in notes
    by_query = frame.assign(
        query_id=[make_query_id(t, q) for t, q in zip(frame.task_name, frame["query"], strict=True)]
    )
    first = by_query.iloc[0]
    got = df[(df["query_id"] == first["query_id"]) & (df["candidate"] == first["llm"] + ":direct")]
    assert got["cost_usd"].iloc[0] == pytest.approx(first["cost"])  # the file's (disagreeing) value


def test_fusionbench_judge_on_a_ten_point_scale_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fb.csv"
    tiny_fusionbench(llm_judge=[7.0, 9.0, 2.0, 10.0]).to_csv(path, index=False)
    with pytest.raises(LogImportError, match=r"llm_judge.*0\.\.10 scale"):
        import_log(path, "fusionbench")


def test_fusionbench_tiny_values(tmp_path: Path) -> None:
    path = tmp_path / "fb.csv"
    tiny_fusionbench().to_csv(path, index=False)
    df, summary = import_log(path, "fusionbench", split="train")
    assert df["performance"].tolist() == [1.0, 0.0, 0.5, 1.0]
    assert df["candidate"].tolist() == ["a:direct", "b:direct", "a:direct", "b:think"]
    assert df["domain"].tolist() == ["math", "math", "code", "code"]
    assert summary.n_queries == 2 and df["judge_score"].isna().all()


# ------------------------------------------------------------------------------------------------ long


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_long_round_trip_of_real_logs(
    suffix: str,
    routerbench: tuple[pd.DataFrame, ImportSummary],
    fusionbench_csv: Path,
    tmp_path: Path,
) -> None:
    fb, _ = import_log(fusionbench_csv, "fusionbench")
    rb, _ = routerbench
    original = pd.concat([rb, fb], ignore_index=True)
    original.loc[0, "response"] = ""  # an empty string must stay distinct from a null
    original.loc[1, "latency_s"] = 0.1 + 0.2  # and floats keep every digit
    path = write_long(original, tmp_path / f"log{suffix}")
    back, summary = import_log(path, "long")
    pd.testing.assert_frame_equal(back, original)
    assert summary.missing_cells == 154 and summary.n_candidates == 12


def test_long_fills_mode_candidate_domain_backend(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    tiny_long().to_csv(path, index=False)
    df, summary = import_log(path, "long")
    assert df["mode"].tolist() == ["direct"] * 3
    assert df["candidate"].tolist() == ["a:direct", "b:direct", "a:direct"]
    assert df["domain"].tolist() == ["math", "math", "code"]
    assert set(df["backend"]) == {"import:long"} and df["collected_at"].notna().all()
    assert df["response"].isna().all()
    assert any("'mode'" in n for n in summary.notes)


def test_long_mode_column_with_a_null_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    tiny_long().assign(mode=["direct", None, "think"]).to_json(path, orient="records", lines=True)
    with pytest.raises(LogImportError, match=r"no 'mode'.*row 2"):
        import_log(path, "long")


def test_long_candidate_must_match_llm_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    tiny_long().assign(mode="direct", candidate=["a:direct", "a:direct", "a:direct"]).to_parquet(path)
    with pytest.raises(LogImportError, match=r"'candidate'.*row 2"):
        import_log(path, "long")


# -------------------------------------------------------------------------------------------- bad files


def test_bad_duplicate_query_candidate(tmp_path: Path) -> None:
    path = tmp_path / "fb.csv"
    df = tiny_fusionbench()
    pd.concat([df, df.iloc[[1]]], ignore_index=True).to_csv(path, index=False)
    with pytest.raises(LogImportError) as exc:
        import_log(path, "fusionbench")
    msg = str(exc.value)
    assert "fb.csv" in msg and "repeat a (query, candidate)" in msg and "row 2" in msg and "row 5" in msg

    long_path = tmp_path / "log.csv"
    pd.concat([tiny_long(), tiny_long().iloc[[0]]]).to_csv(long_path, index=False)
    with pytest.raises(LogImportError, match=r"repeat a \(query, candidate\).*row 1.*row 4"):
        import_log(long_path, "long")


def test_bad_performance_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "fb.csv"
    tiny_fusionbench(performance=["1.0", "1.5", "0", "0"]).to_csv(path, index=False)
    with pytest.raises(LogImportError, match=r"fb\.csv.*'performance'.*outside \[0, 1\].*row 2: 1\.5"):
        import_log(path, "fusionbench")
    long_path = tmp_path / "log.parquet"
    tiny_long().assign(performance=[1.0, 1.5, 0.0]).to_parquet(long_path)
    with pytest.raises(LogImportError, match=r"outside \[0, 1\].*row 2"):
        import_log(long_path, "long")


def test_bad_performance_string(tmp_path: Path) -> None:
    path = tmp_path / "fb.csv"
    tiny_fusionbench(performance=["1.0", "abc", "0", "{'pass@1': 1}"]).to_csv(path, index=False)
    with pytest.raises(LogImportError) as exc:
        import_log(path, "fusionbench")
    msg = str(exc.value)
    assert "fb.csv" in msg and "'performance'" in msg and "row 2: 'abc'" in msg


def test_bad_unknown_column_in_strict_formats(tmp_path: Path) -> None:
    fb = tmp_path / "fb.csv"
    tiny_fusionbench(temperature=0.7).to_csv(fb, index=False)
    with pytest.raises(LogImportError, match=r"unknown column\(s\) \['temperature'\]"):
        import_log(fb, "fusionbench")
    indexed = tmp_path / "fb_index.csv"
    tiny_fusionbench().to_csv(indexed)  # a saved pandas index
    with pytest.raises(LogImportError, match="index=False"):
        import_log(indexed, "fusionbench")
    for suffix in (".csv", ".jsonl", ".parquet"):
        path = tmp_path / f"log{suffix}"
        frame = tiny_long().assign(seed=1)
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_parquet(path)
        with pytest.raises(LogImportError, match=r"unknown column\(s\) \['seed'\]"):
            import_log(path, "long")


def test_bad_missing_required_column(tmp_path: Path) -> None:
    fb = tmp_path / "fb.csv"
    tiny_fusionbench().drop(columns="llm").to_csv(fb, index=False)
    with pytest.raises(LogImportError, match=r"missing required column\(s\) \['llm'\]"):
        import_log(fb, "fusionbench")
    path = tmp_path / "log.csv"
    tiny_long().drop(columns="query_id").to_csv(path, index=False)
    with pytest.raises(LogImportError, match=r"missing required column\(s\) \['query_id'\]"):
        import_log(path, "long")


def test_bad_llmrouter_question_without_task(llmrouter_dir: Path, tmp_path: Path) -> None:
    for name in ("test.json", "default_query_test.jsonl", "default_llm.json"):
        (tmp_path / name).write_bytes((llmrouter_dir / name).read_bytes())
    items = json.loads((tmp_path / "test.json").read_text())
    items[3]["question"] = "a question no jsonl line has"
    (tmp_path / "test.json").write_text(json.dumps(items))
    with pytest.raises(LogImportError, match=r"test\.json.*1 question\(s\) have no line.*item 3"):
        import_log(tmp_path, "llmrouter")


def test_llmrouter_missing_score_becomes_an_error_row(llmrouter_dir: Path, tmp_path: Path) -> None:
    for name in ("test.json", "default_query_test.jsonl"):
        (tmp_path / name).write_bytes((llmrouter_dir / name).read_bytes())
    items = json.loads((tmp_path / "test.json").read_text())
    del items[0]["scores"]["codegemma-7b"]
    items[1]["scores"]["gemma-2-9b-it"] = None
    (tmp_path / "test.json").write_text(json.dumps(items))
    df, summary = import_log(tmp_path, "llmrouter")
    assert len(df) == 500 * 9 and summary.missing_cells == 2
    assert set(df.loc[df["performance"].isna(), "error"]) == {MISSING_SCORE}
    assert df["cost_usd"].isna().all() and any("default_llm.json" in n for n in summary.notes)


# --------------------------------------------------------------------------------------------- summary


def test_summary_table_dict_and_render(routerbench: tuple[pd.DataFrame, ImportSummary]) -> None:
    _, summary = routerbench
    d = summary.to_dict()
    assert d["format"] == "routerbench" and d["n_queries"] == 3178 and d["n_tasks"] == 3
    assert d["missing_cells"] == 154 and d["queries_per_task"]["mbpp"] == 427
    json.dumps(d)  # plain data
    table = summary.to_table()
    assert isinstance(table, Table) and table.row_count >= 9 + len(summary.notes) - 1
    text = summary.render()
    assert "missing scores" in text and "154" in text and "3,178" in text


def test_summarize_any_log() -> None:
    log = pd.concat(
        [
            tiny_long().assign(split=["train", "train", "test"]),
            tiny_long().iloc[[0]].assign(query_id="q3", split="test", performance=None, error=MISSING_SCORE),
        ],
        ignore_index=True,
    ).assign(mode="direct", backend="x")
    log["candidate"] = log["llm"] + ":direct"
    from fusion.log.schema import coerce_log

    s = summarize(coerce_log(log))
    assert s.n_queries == 3 and s.n_candidates == 2 and s.missing_cells == 1
    assert s.queries_per_split == {"test": 2, "train": 1}
    notes = " | ".join(s.notes)
    assert "1 query text(s) appear word for word in more than one split" in notes
    assert "not rectangular" in notes
