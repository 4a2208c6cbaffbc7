"""Dependencies point one way, and dvc.yaml lists the code each stage runs (derived from the imports)."""

from __future__ import annotations

import pytest
import yaml
from architecture import (
    REPO_ROOT,
    all_modules,
    closure,
    cycles,
    imports_of,
    missing_code_deps,
    module_file,
    runner_closure,
)

from fusion.stages import STAGES


def _code_deps(stage: str) -> list[str]:
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    return [d for d in dvc["stages"][stage]["deps"] if d.startswith("fusion")]


def test_config_is_a_leaf():
    """The parameters' module knows no stage, router or driver: loading params.yaml loads no router."""
    reach = closure("fusion.config")
    assert not [m for m in reach if m.startswith(("fusion.stages", "fusion.routers", "fusion.collection"))], reach
    assert reach <= {"fusion.config", "fusion.models.refs", "fusion.rewards"}


def test_no_import_cycle_inside_the_package():
    assert cycles() == []


def test_the_package_never_imports_its_drivers():
    offenders = {m: sorted(i for i in imports_of(m) if i == "flows" or i.startswith("flows."))
                 for m in all_modules()}
    assert {m: v for m, v in offenders.items() if v} == {}


def test_routers_import_no_stage_module():
    for m in all_modules():
        if m.startswith("fusion.routers"):
            assert not [i for i in imports_of(m) if i.startswith(("fusion.stages", "fusion.collection"))], m


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_lists_the_code_each_stage_runs(stage):
    assert missing_code_deps(stage, _code_deps(stage)) == []


def test_the_dvc_dependency_check_fails_when_a_runner_module_is_removed():
    deps = _code_deps("train")
    assert "fusion/stages/train.py" in {str(module_file(m).relative_to(REPO_ROOT)) for m in runner_closure("train")}
    assert missing_code_deps("train", [d for d in deps if d != "fusion/stages/train.py"]) == ["fusion/stages/train.py"]
    # a folder entry covers its modules; dropping it uncovers every one the stage runs
    without_routers = missing_code_deps("train", [d for d in deps if d != "fusion/routers"])
    assert "fusion/routers/training.py" in without_routers and "fusion/routers/knn.py" in without_routers
    # a module reached only through a function-level import counts too (routers/data.py computes embeddings lazily)
    assert "fusion/embedding.py" in missing_code_deps("train", [d for d in deps if d != "fusion/embedding.py"])

