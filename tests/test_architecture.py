"""The layout: a shared core below the data stages and four levels, each level one folder that imports no other
level; dependencies point one way; dvc.yaml lists exactly the code each stage runs (derived from the imports),
so an edit to one level reruns only that level's stages."""

from __future__ import annotations

import pytest
import yaml
from architecture import (
    REPO_ROOT,
    all_modules,
    closure,
    code_deps,
    cycles,
    extra_code_deps,
    imports_of,
    missing_code_deps,
    module_file,
    runner_closure,
)

from fusion.stages import HOMES, STAGES

LEVELS = ("query", "thought", "model", "token")
DRIVERS = ("fusion.cli", "fusion.cli_base", "fusion.stages", "fusion.config", "flows")


def _code_deps(stage: str) -> list[str]:
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    return [d for d in dvc["stages"][stage]["deps"] if d.startswith("fusion")]


def _is_driver(m: str) -> bool:
    return m.startswith(DRIVERS) or (m.startswith("fusion.levels.") and m.endswith(".cli"))


def test_each_level_config_is_a_leaf_over_the_core():
    """A level's parameters know no stage, model code or driver: loading params.yaml loads no router."""
    assert closure("fusion.core.config") <= {"fusion.core.config", "fusion.models.refs"}
    for level in LEVELS:
        reach = closure(f"fusion.levels.{level}.config")
        allowed = {f"fusion.levels.{level}.config", "fusion.core.config", "fusion.models.refs",
                   *(["fusion.levels.query.rewards"] if level == "query" else [])}
        assert reach <= allowed, (level, reach - allowed)


def test_no_import_cycle_inside_the_package():
    assert cycles() == []


def test_the_package_never_imports_its_drivers():
    offenders = {m: sorted(i for i in imports_of(m) if i == "flows" or i.startswith("flows."))
                 for m in all_modules()}
    assert {m: v for m, v in offenders.items() if v} == {}


def test_levels_never_import_each_other_and_the_core_imports_no_level():
    """A level reads another level's outputs (files a stage wrote), never its modules; the core and the data stages
    sit below every level."""
    for m in all_modules():
        if _is_driver(m):
            continue
        fusion = {i for i in imports_of(m) if i.startswith("fusion.")}
        if m.startswith("fusion.levels."):
            own = ".".join(m.split(".")[:3])
            assert not [i for i in fusion if i.startswith("fusion.levels.") and not i.startswith(own)], m
            assert not [i for i in fusion if i.startswith("fusion.data")], m
            assert not [i for i in fusion if _is_driver(i)], m
        if m.startswith(("fusion.core", "fusion.data", "fusion.log", "fusion.tasks", "fusion.backends",
                         "fusion.models")):
            assert not [i for i in fusion if i.startswith("fusion.levels.") or _is_driver(i)], m
        if m.startswith("fusion.core"):
            assert not [i for i in fusion if i.startswith("fusion.data")], m
        if m.startswith("fusion.log"):  # the routing-log contract is a leaf: importers that know tasks sit above it
            assert not [i for i in fusion if not i.startswith("fusion.log")], m


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_lists_the_code_each_stage_runs_and_nothing_else(stage):
    deps = _code_deps(stage)
    assert missing_code_deps(stage, deps) == []
    assert extra_code_deps(stage, deps) == []
    level = HOMES[stage].rsplit(".stages", 1)[0].replace(".", "/")
    others = [d for d in deps if d.startswith(("fusion/levels/", "fusion/data/")) and not d.startswith(level)]
    assert others == [], f"{stage} depends on another level's code"


def test_the_dvc_dependency_check_fails_when_a_runner_module_is_removed_or_one_is_extra():
    deps = _code_deps("train")
    runner = "fusion/levels/query/stages/train.py"
    assert runner in {str(module_file(m).relative_to(REPO_ROOT)) for m in runner_closure("train")}
    assert missing_code_deps("train", [d for d in deps if d != runner]) == [runner]
    # a folder entry covers its modules; dropping it uncovers every one the stage runs
    assert "fusion/tasks" in _code_deps("queries")
    without_tasks = missing_code_deps("queries", [d for d in _code_deps("queries") if d != "fusion/tasks"])
    assert "fusion/tasks/suite.py" in without_tasks and "fusion/tasks/scoring.py" in without_tasks
    # a module reached only through a function-level import counts too (routers/data.py computes embeddings lazily)
    assert "fusion/core/embedding.py" in missing_code_deps("train", [d for d in deps if d != "fusion/core/embedding.py"])
    # another level's code, or a whole folder the stage runs only part of, is extra
    assert extra_code_deps("train", [*deps, "fusion/levels/thought/bank.py"]) == ["fusion/levels/thought/bank.py"]
    assert extra_code_deps("train", [*deps, "fusion/levels/query"]) == ["fusion/levels/query"]
    # the level's parameters are the stage's code: their defaults decide what it does
    assert "fusion/levels/query/config.py" in deps and "fusion/core/config.py" in deps


def test_code_deps_are_what_the_generator_writes():
    for stage in STAGES:
        assert sorted(_code_deps(stage)) == code_deps(stage), stage
