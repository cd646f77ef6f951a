"""pipeline.toml validation: every error is a ConfigError naming the file and the dotted key."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mlops import config
from mlops.errors import EXIT_CONFIG, ConfigError

ROOT = Path(__file__).resolve().parents[2]
REAL_FILE = ROOT / "pipeline.toml"
RAW = tomllib.loads(REAL_FILE.read_text(encoding="utf-8"))


def raw() -> dict[str, Any]:
    """A fresh, mutable copy of the real configuration document."""
    return copy.deepcopy(RAW)


def fails(doc: dict[str, Any], *fragments: str, source: str = "test.toml") -> str:
    with pytest.raises(ConfigError) as exc:
        config.parse(doc, source)
    message = str(exc.value)
    assert message.startswith(f"{source}: ") or source in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    assert exc.value.exit_code == EXIT_CONFIG
    return message


def test_the_real_file_loads_and_matches_its_text():
    cfg = config.load(REAL_FILE)
    assert cfg.source == str(REAL_FILE)
    assert cfg.project == RAW["project"]["name"]
    assert cfg.model_package == RAW["model"]["package"]
    assert cfg.local_entrypoint == tuple(RAW["model"]["local_entrypoint"])
    assert cfg.max_rmse == pytest.approx(RAW["gate"]["max_rmse"])
    assert set(cfg.stages) == set(config.STAGES)
    for name, stage in cfg.stages.items():
        table = RAW["stages"][name]
        assert stage.name == name
        for key, value in table.items():
            assert getattr(stage, key) == value, f"stages.{name}.{key}"
    assert cfg.stage("prod") is cfg.stages["prod"]
    assert cfg.stack_name("dev") == f"{cfg.project}-endpoint-dev"
    assert cfg.endpoint_name("prod") == f"{cfg.project}-prod"
    assert all(isinstance(v, str) for v in cfg.etl.values())
    assert "hyperparameters" not in cfg.train


def test_unknown_stage_name_is_refused():
    cfg = config.parse(raw())
    with pytest.raises(ConfigError, match="unknown stage 'qa'"):
        cfg.stage("qa")


def test_defaults_fill_optional_keys():
    doc = raw()
    del doc["project"]["bootstrap_stack"]
    doc["stages"]["dev"] = {"instance_type": "ml.m5.large"}
    cfg = config.parse(doc)
    assert cfg.bootstrap_stack == f"{cfg.project}-bootstrap"
    dev = cfg.stage("dev")
    assert (dev.instance_count, dev.autoscaling, dev.deployment_type) == (1, False, "ALL_AT_ONCE")


def test_int_is_accepted_where_a_float_is_expected():
    doc = raw()
    doc["gate"]["max_rmse"] = 2
    cfg = config.parse(doc)
    assert isinstance(cfg.max_rmse, float)
    assert cfg.max_rmse == 2.0


@pytest.mark.parametrize(
    ("table", "key", "dotted"),
    [
        (("model",), "package", "model.package"),
        (("project",), "name", "project.name"),
        (("gate",), "max_rmse", "gate.max_rmse"),
        (("stages", "prod"), "instance_type", "stages.prod.instance_type"),
        ((), "version", "version"),
    ],
)
def test_missing_key_is_named(table, key, dotted):
    doc = raw()
    node = doc
    for part in table:
        node = node[part]
    del node[key]
    fails(doc, f"test.toml: {dotted} is missing")


def test_missing_stage_is_named():
    doc = raw()
    del doc["stages"]["prod"]
    fails(doc, "stages.prod is missing")


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("stages", "dev", "instance_count"),
            "1",
            "stages.dev.instance_count must be int, got '1'",
        ),
        (
            ("stages", "dev", "instance_count"),
            True,
            "stages.dev.instance_count must be int, got True",
        ),
        (("stages", "prod", "autoscaling"), "yes", "stages.prod.autoscaling must be bool"),
        (("gate", "max_rmse"), "2.1", "gate.max_rmse must be float"),
        (("project", "name"), 7, "project.name must be str"),
        (("model", "local_entrypoint"), "python -m x", "model.local_entrypoint must be list"),
        (("evaluate", "reused_model_on"), "laptop", "evaluate.reused_model_on = 'laptop' is inv"),
    ],
)
def test_wrong_type_is_named(path, value, expected):
    doc = raw()
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    fails(doc, expected)


def test_a_table_given_as_a_value_is_named():
    doc = raw()
    doc["stages"]["dev"] = "ml.m5.large"
    fails(doc, "stages.dev must be a table")


def test_unknown_top_level_key_is_named():
    doc = raw()
    doc["deploy"] = {}
    fails(doc, "test.toml: deploy is not a known setting", "stages")


def test_unknown_stage_key_is_named_with_the_known_ones():
    doc = raw()
    doc["stages"]["dev"]["instanse_type"] = "ml.m5.large"
    message = fails(doc, "stages.dev.instanse_type is not a known setting")
    assert "instance_type" in message.split("known:", 1)[1]


def test_a_misspelt_gate_key_is_refused_not_silently_defaulted():
    # A typo must not let the rule silently fall back to its default of 0.0 (a weaker gate).
    doc = raw()
    doc["gate"]["min_improvement"] = doc["gate"].pop("min_improvement_over_baseline")
    fails(doc, "gate.min_improvement")


@pytest.mark.parametrize(("table", "key"), [("project", "bootstap_stack"), ("model", "pakage")])
def test_unknown_keys_in_other_tables_are_named(table, key):
    doc = raw()
    doc[table][key] = "x"
    fails(doc, f"{table}.{key} is not a known setting")


def test_a_wrong_type_in_train_is_caught_at_load():
    # BUG (config.py parse): [train] and [evaluate] values are copied unchecked; `instance_count =
    # "two"` passes validation and later crashes train.run with a ValueError traceback (int("two")).
    doc = raw()
    doc["train"]["instance_count"] = "two"
    fails(doc, "train.instance_count")


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("deployment_type", "BLUE_GREEN", "use one of ALL_AT_ONCE, CANARY, LINEAR"),
        ("capture_sampling_percent", 101, "must be 0-100"),
        ("canary_size_percent", 60, "must be 1-50"),
        ("wait_interval_seconds", 4000, "must be 0-3600"),
        ("instance_count", 0, "must be > 0"),
        ("latency_budget_ms", -1, "must be > 0"),
        ("instance_type", "m5.large", "start with 'ml.'"),
    ],
)
def test_bad_stage_value_is_named_with_the_reason(key, value, why):
    doc = raw()
    doc["stages"]["prod"][key] = value
    fails(doc, f"stages.prod.{key} = {value!r} is invalid", why)


def test_canary_with_one_instance_is_refused():
    doc = raw()
    doc["stages"]["prod"].update(deployment_type="CANARY", instance_count=1)
    fails(doc, "stages.prod.deployment_type CANARY needs instance_count >= 2")


def test_canary_with_two_instances_is_accepted():
    doc = raw()
    doc["stages"]["dev"].update(deployment_type="CANARY", instance_count=2)
    assert config.parse(doc).stage("dev").deployment_type == "CANARY"


def test_autoscaling_on_burstable_instances_is_refused():
    doc = raw()
    doc["stages"]["prod"].update(autoscaling=True, instance_type="ml.t2.medium")
    fails(doc, "stages.prod.instance_type ml.t2.medium", "cannot autoscale")


def test_burstable_instances_without_autoscaling_are_fine():
    doc = raw()
    doc["stages"]["dev"].update(autoscaling=False, instance_type="ml.t2.medium")
    assert config.parse(doc).stage("dev").instance_type == "ml.t2.medium"


def test_autoscaling_min_above_max_is_refused():
    doc = raw()
    doc["stages"]["prod"].update(autoscaling=True, min_capacity=5, max_capacity=3)
    fails(doc, "stages.prod.min_capacity > max_capacity")


def test_hyperparameter_must_be_a_string():
    doc = raw()
    doc["train"]["hyperparameters"] = {"eta": 0.03}
    fails(doc, "train.hyperparameters.eta must be a string", "0.03")


def test_string_hyperparameters_pass_through():
    doc = raw()
    doc["train"]["hyperparameters"] = {"eta": "0.03", "max_depth": "5"}
    assert config.parse(doc).hyperparameters == {"eta": "0.03", "max_depth": "5"}


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_only_version_1_is_read(version):
    doc = raw()
    doc["version"] = version
    fails(doc, "test.toml: version")


@pytest.mark.parametrize("name", ["My_Project", "x", "1abc", "a" * 40])
def test_project_name_must_be_usable_in_aws_names(name):
    doc = raw()
    doc["project"]["name"] = name
    fails(doc, "project.name", "lowercase letters")


@pytest.mark.parametrize("fraction", [1.0, -0.1])
def test_gate_fractions_must_be_in_unit_interval(fraction):
    doc = raw()
    doc["gate"]["max_regression_vs_prod"] = fraction
    fails(doc, "gate.max_regression_vs_prod", "[0, 1)")


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert str(exc.value).startswith(f"{path}: not found")
    assert "--config" in str(exc.value)


def test_bad_toml_names_the_path(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("version = 1\n[project\nname = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert str(exc.value).startswith(f"{path}: not valid TOML")
    assert exc.value.__suppress_context__


def test_errors_from_a_loaded_file_name_that_file(tmp_path):
    path = tmp_path / "custom.toml"
    text = REAL_FILE.read_text(encoding="utf-8").replace(
        'deployment_type = "CANARY"', 'deployment_type = "SOMETIMES"'
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert str(exc.value).startswith(f"{path}: stages.prod.deployment_type")


# --- [tune] (config_tune.py): what CreateHyperParameterTuningJob refuses, refused at load -------


def tuned(**table: Any) -> dict[str, Any]:
    doc = raw()
    doc["tune"] = {**doc["tune"], **table}
    return doc


def test_the_real_tune_table_is_read():
    tune = config.load(REAL_FILE).tune
    assert (tune.strategy, tune.trials(), tune.max_parallel_jobs) == ("Bayesian", 4, 2)
    eta = next(r for r in tune.ranges if r.name == "eta")
    assert (eta.type, eta.min, eta.max, eta.scaling) == ("continuous", "0.05", "0.3", "Logarithmic")
    assert tune.tuned == set(RAW["tune"]["ranges"])


def test_without_a_tune_table_nothing_is_tuned_and_defaults_hold():
    doc = raw()
    del doc["tune"]
    tune = config.parse(doc).tune
    assert tune.ranges == () and tune.strategy == "Bayesian" and tune.trials() == 4


@pytest.mark.parametrize(
    ("table", "fragments"),
    [
        ({"strategy": "Genetic"}, ("tune.strategy", "Bayesian, Random, Hyperband, Grid")),
        ({"max_jobs": 0}, ("tune.max_jobs", "1-750")),
        ({"max_jobs": 751}, ("tune.max_jobs", "1-750")),
        ({"max_parallel_jobs": 101}, ("tune.max_parallel_jobs", "quota is 10")),
        ({"early_stopping": "On"}, ("tune.early_stopping", "Off or Auto")),
        ({"max_resource": 100}, ("tune.max_resource", "Hyperband setting")),
        ({"random_seed": -1}, ("tune.random_seed", ">= 0")),
        ({"trials": 3}, ("tune.trials is not a known setting",)),
    ],
)
def test_bad_tune_settings_are_named(table, fragments):
    fails(tuned(**table), *fragments)


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({"type": "discrete"}, ("tune.ranges.x.type", "continuous, integer, categorical")),
        ({"type": "continuous", "min": "0.1"}, ("tune.ranges.x.max is missing",)),
        ({"type": "continuous", "min": "a", "max": "1"}, ("tune.ranges.x.min", "not a number")),
        ({"type": "integer", "min": "1.5", "max": "4"}, ("tune.ranges.x.min", "not an integer")),
        ({"type": "integer", "min": "4", "max": "4"}, ("tune.ranges.x.min", "less than max")),
        ({"type": "continuous", "min": "0", "max": "1", "scaling": "Logarithmic"},
         ("tune.ranges.x.scaling", "greater than 0")),
        ({"type": "continuous", "min": "0.5", "max": "1", "scaling": "ReverseLogarithmic"},
         ("tune.ranges.x.scaling", "0 <= x < 1")),
        ({"type": "integer", "min": "1", "max": "5", "scaling": "ReverseLogarithmic"},
         ("tune.ranges.x.scaling", "not supported for integer")),
        ({"type": "integer", "min": "1", "max": "5", "scaling": "Log"}, ("tune.ranges.x.scaling",)),
        ({"type": "categorical", "values": []}, ("tune.ranges.x.values", "distinct values")),
        ({"type": "categorical", "values": ["a", "a"]}, ("tune.ranges.x.values",)),
        ({"type": "categorical", "values": [str(i) for i in range(31)]}, ("1-30",)),
        ({"type": "categorical", "values": ["a"], "min": "1"}, ("tune.ranges.x.min is not",)),
        ({"type": "integer", "min": "1", "max": "2", "values": ["a"]}, ("tune.ranges.x.values",)),
    ],
)  # fmt: skip
def test_bad_ranges_are_named_with_awss_rule(spec, fragments):
    doc = raw()
    doc["tune"]["ranges"] = {"x": spec}
    fails(doc, *fragments)


def test_numbers_are_taken_as_sagemakers_strings():
    doc = raw()
    doc["tune"]["ranges"] = {"eta": {"type": "continuous", "min": 0.01, "max": 0.3}}
    (eta,) = config.parse(doc).tune.ranges
    assert (eta.min, eta.max, eta.scaling) == ("0.01", "0.3", "Auto")


def test_more_than_30_searched_hyperparameters_are_refused():
    doc = raw()
    doc["tune"]["ranges"] = {
        f"h{i}": {"type": "integer", "min": "1", "max": "2"} for i in range(31)
    }
    fails(doc, "tune.ranges", "at most 30")


def grid(**table: Any) -> dict[str, Any]:
    doc = tuned(strategy="Grid")
    doc["tune"].pop("max_jobs")
    doc["tune"].update(table)
    doc["tune"]["ranges"] = {
        "max_depth": {"type": "categorical", "values": ["3", "4", "5"]},
        "eta": {"type": "categorical", "values": ["0.1", "0.2"]},
    }
    return doc


def test_grid_runs_every_combination_of_categorical_values():
    tune = config.parse(grid()).tune
    assert tune.max_jobs is None and tune.trials() == 6
    assert config.parse(grid(max_jobs=6)).tune.trials() == 6


def test_grid_refuses_numeric_ranges_and_a_job_count_that_is_not_the_grid():
    fails(grid(max_jobs=4), "tune.max_jobs", "must equal the number of value combinations (6)")
    doc = grid()
    doc["tune"]["ranges"]["gamma"] = {"type": "continuous", "min": "0", "max": "1"}
    fails(doc, "tune.ranges.gamma", "Grid search supports only categorical ranges")


def test_hyperband_needs_its_resources_and_early_stopping_off():
    fails(tuned(strategy="Hyperband"), "tune.max_resource is missing", "Hyperband needs it")
    fails(tuned(strategy="Hyperband", max_resource=20001), "tune.max_resource", "1-20000")
    fails(
        tuned(strategy="Hyperband", max_resource=500, early_stopping="Auto"),
        "tune.early_stopping", "must be Off with Hyperband",
    )  # fmt: skip
    fails(tuned(strategy="Hyperband", max_resource=5, min_resource=9), "tune.min_resource")
    band = config.parse(tuned(strategy="Hyperband", max_resource=500, min_resource=10)).tune
    assert (band.min_resource, band.max_resource) == (10, 500)
    doc = tuned(strategy="Hyperband")
    doc["train"]["hyperparameters"] = {"epochs": "40"}  # MaxResource inferred from it
    assert config.parse(doc).tune.max_resource is None
