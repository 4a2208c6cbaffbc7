"""Narrow dependencies, seen through DVC itself: in a copy of the project whose stages are all recorded in a fresh
dvc.lock (placeholder data, the real code, dvc.yaml and params.yaml), `dvc status` lists exactly the stages an edit
concerns: one field of a level's parameters (its config module or its params.yaml key) reruns that level only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fusion.stages import HOMES

REPO_ROOT = Path(__file__).resolve().parents[1]
THOUGHT = {"templates", "thought_eval"}


def _dvc(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _changed(cwd: Path) -> set[str]:
    """The stages `dvc status` reports (any change of deps, params or outs)."""
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        return {name.split(":")[-1] for name in repo.status()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("narrow")
    shutil.copytree(REPO_ROOT / "fusion", root / "fusion", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO_ROOT / f, root / f)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(["init", "-q"], root)
    with Repo(str(root)) as repo:  # every data dependency and output as a placeholder
        for stage in repo.index.stages:
            for x in [*stage.deps, *stage.outs]:
                p = Path(x.fs_path)
                if p.exists() or str(p).startswith(str(root / "fusion")):
                    continue
                if p.suffix:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text("placeholder\n")
                else:
                    p.mkdir(parents=True, exist_ok=True)
                    (p / "placeholder").write_text("placeholder\n")
    _dvc(["commit", "-f", "-q"], root)
    assert _changed(root) == set()
    return root


def test_editing_a_field_of_the_thought_config_reruns_the_thought_level_only(project):
    cfg = project / "fusion/levels/thought/config.py"
    text = cfg.read_text()
    edited, n = re.subn(r"(top_n: int = Field\(default=)3", r"\g<1>4", text)
    assert n == 1
    cfg.write_text(edited)
    try:
        assert _changed(project) == THOUGHT
    finally:
        cfg.write_text(text)
    assert _changed(project) == set()


def test_a_level_key_in_params_reruns_that_level_only(project):
    params = project / "params.yaml"
    text = params.read_text()
    p = yaml.safe_load(text)
    try:
        p["thought"]["k"] = 4  # over the recipe's
        params.write_text(yaml.safe_dump(p, sort_keys=False))
        assert _changed(project) == THOUGHT
        p = yaml.safe_load(text)
        p["recipe"] = "fusionfactory"  # the recipe of the levels that have one: thought, and the model level's data
        params.write_text(yaml.safe_dump(p, sort_keys=False))
        assert _changed(project) == THOUGHT | {"sft_data"}
        p = yaml.safe_load(text)
        p["tokenroute"]["train"]["beta"] = 0.2
        params.write_text(yaml.safe_dump(p, sort_keys=False))
        assert _changed(project) == {"tokenroute_train"}
    finally:
        params.write_text(text)


def test_editing_the_token_level_losses_reruns_token_stages_only(project):
    losses = project / "fusion/levels/token/losses.py"
    text = losses.read_text()
    losses.write_text(text + "\n# edited\n")
    try:
        changed = _changed(project)
        assert changed and changed <= {s for s, h in HOMES.items() if h == "fusion.levels.token.stages"}
    finally:
        losses.write_text(text)
