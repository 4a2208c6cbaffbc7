from pathlib import Path

import pytest
import yaml

from fusion.config import ConfigError, load_params, parse_params
from fusion.levels.query.base import RouterParamError
from fusion.stages import load_params as load_checked


def _base(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_repo_params_load_and_resolve(repo_root):
    p = load_params(repo_root / "params.yaml")
    assert p.pool[0].name == "smollm2-135m"
    assert p.paths.routing_log.is_absolute() and p.paths.routing_log.parent.parent == repo_root
    assert p.tracking.uri == f"sqlite:///{repo_root}/mlflow.db"
    sc = p.scenario.resolve()
    assert (sc.alpha, sc.beta, sc.objective) == (1.0, 0.0, "reward")


def test_unknown_key_is_named(repo_root):
    data = _base(repo_root)
    data["routers"][0]["k"] = 5  # belongs under routers[0].params
    with pytest.raises(ConfigError, match=r"routers\.0\.k: unknown key"):
        parse_params(data)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_routers_are_known_unique_and_deployable(repo_root, tmp_path):
    data = _base(repo_root)
    data["routers"] = [{"name": "knn"}, {"name": "knn"}]
    with pytest.raises(ConfigError, match="repeated names"):
        parse_params(data)
    data["routers"] = []
    with pytest.raises(ConfigError, match="routers"):
        parse_params(data)
    # names are checked where routers are built: when a driver loads params.yaml (fusion.stages.load_params)
    for routers, msg in (([{"name": "nearest"}], r"unknown router 'nearest'; known: .*knn"),
                         ([{"name": "oracle"}], "evaluation only"),
                         ([{"name": "random"}], "baseline the evaluation always reports")):
        data["routers"] = routers
        parse_params(data)  # structurally fine: the config is a leaf that knows no router
        with pytest.raises(RouterParamError, match=msg):
            load_checked(_write(tmp_path, data))
    data = _base(repo_root)
    data["promote"]["margin"] = -0.1
    with pytest.raises(ConfigError, match=r"promote\.margin"):
        parse_params(data)


@pytest.mark.parametrize(("router", "params", "match"), [
    ("mf", {"dimm": 8}, r"router 'mf': parameter 'dimm': unknown parameter \(known: .*\bdim\b"),
    ("mf", {"dim": "eight"}, r"router 'mf': parameter 'dim': .*integer"),
    ("knn", {"k": 0}, r"router 'knn': parameter 'k': .*greater than or equal to 1"),
    ("svm", {"C": "big"}, r"router 'svm': parameter 'C'"),
    ("graph", {"mask_fraction": 1.5}, r"router 'graph': parameter 'mask_fraction'"),
    ("encoder", {"epochs": 1.5}, r"router 'encoder': parameter 'epochs'"),
    ("budget", {"target_cost": 1e-3, "base_params": {"kk": 3}}, r"'budget': parameter 'base_params'.*'kk'"),
])
def test_router_parameter_errors_at_load_time(repo_root, tmp_path, router, params, match):
    """A misspelt or ill-typed router parameter fails when params.yaml is loaded, naming the router and key."""
    data = _base(repo_root)
    data["routers"] = [{"name": "knn"}, {"name": router, "params": params}] if router != "knn" else \
        [{"name": router, "params": params}]
    with pytest.raises(RouterParamError, match=match):
        load_checked(_write(tmp_path, data))
    data["routers"] = [{"name": router, "params": {}}] if router != "budget" else \
        [{"name": "budget", "params": {"target_cost": 1e-3, "base_params": {"k": 3}}}]
    assert load_checked(_write(tmp_path, data)).routers[0].name == router


def test_cli_names_a_bad_router_parameter(repo_root, tmp_path):
    from typer.testing import CliRunner

    from fusion.cli import app

    data = _base(repo_root)
    data["routers"] = [{"name": "mf", "params": {"dimm": 8}}]
    result = CliRunner().invoke(app, ["queries", "--params", str(_write(tmp_path, data))])
    assert result.exit_code == 2
    assert "router 'mf': parameter 'dimm': unknown parameter" in result.output


def test_wrong_type_is_named(repo_root):
    data = _base(repo_root)
    data["collect"]["batch_size"] = "eight"
    with pytest.raises(ConfigError, match=r"collect\.batch_size"):
        parse_params(data)


def test_bad_pool_entries(repo_root):
    data = _base(repo_root)
    data["pool"][0]["backend"] = "llamacpp"
    with pytest.raises(ConfigError, match=r"pool\.0\.backend"):
        parse_params(data)
    data = _base(repo_root)
    data["pool"].append(dict(data["pool"][0]))
    with pytest.raises(ConfigError, match="pool has repeated names"):
        parse_params(data)


def test_scenario_by_name_or_weights(repo_root):
    data = _base(repo_root)
    data["scenario"] = {"name": "balance"}
    assert parse_params(data).scenario.resolve().alpha == 0.5
    data["scenario"] = {"name": "custom", "alpha": 0.7, "beta": 0.3}
    sc = parse_params(data).scenario.resolve()
    assert (sc.alpha, sc.beta) == (0.7, 0.3)
    data["scenario"] = {"name": "llm_judge"}  # a params scenario too: the judge score is the reward
    assert parse_params(data).scenario.resolve().objective == "judge"
    data["scenario"] = {"name": "nonsense"}
    with pytest.raises(ConfigError, match="scenario"):
        parse_params(data)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "p.yaml"
    bad.write_text("pool: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_dvc_reads_the_repository_params(repo_root):
    """DVC parses params.yaml with ruamel.yaml, which is stricter than PyYAML (a `:` in an unquoted flow-mapping
    value): the embedded default must load in both."""
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((repo_root / "params.yaml").read_text())
    assert data["thought"]["summariser"]["model"].startswith("pkg:")
    assert data == yaml.safe_load((repo_root / "params.yaml").read_text())


def test_every_parameter_dvc_names_is_in_params_yaml(repo_root):
    """`dvc repro` fails on a stage whose listed parameter is missing from params.yaml (a default in the typed
    config is not enough): every key of every stage's `params:` must be written out."""
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    missing = []
    for name, stage in dvc["stages"].items():
        for key in stage.get("params", []):
            node = params
            for part in str(key).split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(f"{name}: {key}")
                    break
                node = node[part]
    assert missing == []
