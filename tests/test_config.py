from pathlib import Path

import pytest
import yaml

from fusion.config import ConfigError, load_params, parse_params


def _base(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_repo_params_load_and_resolve(repo_root):
    p = load_params(repo_root / "params.yaml")
    assert p.pool[0].name == "smollm2-135m"
    assert p.paths.routing_log.is_absolute() and p.paths.routing_log.parent.parent == repo_root
    assert p.tracking.uri == f"sqlite:///{repo_root}/mlflow.db"
    assert p.scenario.weights() == (1.0, 0.0)


def test_unknown_key_is_named(repo_root):
    data = _base(repo_root)
    data["routers"][0]["k"] = 5  # belongs under routers[0].params
    with pytest.raises(ConfigError, match=r"routers\.0\.k: unknown key"):
        parse_params(data)


def test_routers_are_known_unique_and_deployable(repo_root):
    data = _base(repo_root)
    data["routers"] = [{"name": "knn"}, {"name": "knn"}]
    with pytest.raises(ConfigError, match="repeated names"):
        parse_params(data)
    data["routers"] = [{"name": "nearest"}]
    with pytest.raises(ConfigError, match=r"unknown router 'nearest'; known: .*knn"):
        parse_params(data)
    data["routers"] = [{"name": "oracle"}]
    with pytest.raises(ConfigError, match="evaluation only"):
        parse_params(data)
    data["routers"] = [{"name": "random"}]
    with pytest.raises(ConfigError, match="baseline the evaluation always reports"):
        parse_params(data)
    data["routers"] = []
    with pytest.raises(ConfigError, match="routers"):
        parse_params(data)
    data = _base(repo_root)
    data["promote"]["margin"] = -0.1
    with pytest.raises(ConfigError, match=r"promote\.margin"):
        parse_params(data)


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
    with pytest.raises(ConfigError, match="repeated LLM names"):
        parse_params(data)


def test_scenario_by_name_or_weights(repo_root):
    data = _base(repo_root)
    data["scenario"] = {"name": "balance"}
    assert parse_params(data).scenario.weights() == (0.5, 0.5)
    data["scenario"] = {"name": "custom", "alpha": 0.7, "beta": 0.3}
    assert parse_params(data).scenario.weights() == (0.7, 0.3)
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
