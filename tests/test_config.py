import pytest

from benchmark.core.config import (
    RunConfig,
    apply_mapping,
    config_hash,
    flatten,
    load_yaml,
    parse_assignment,
    set_value,
    validate,
)
from benchmark.core.errors import UserError


def test_set_value_converts_int_to_float_and_checks_types():
    cfg = RunConfig()
    set_value(cfg, "train.lr", 1)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    set_value(cfg, "train.epochs", 7)
    assert cfg.train.epochs == 7
    with pytest.raises(UserError, match="train.epochs.*expected int"):
        set_value(cfg, "train.epochs", 2.5)
    with pytest.raises(UserError, match="expected int"):
        set_value(cfg, "train.epochs", True)  # a bool is not an epoch count
    set_value(cfg, "data.input_size", None)  # Optional fields accept null
    assert cfg.data.input_size is None


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(UserError) as err:
        set_value(RunConfig(), "train.learning_rate", 0.1)
    assert "train.learning_rate" in str(err.value)
    with pytest.raises(UserError, match="did you mean: train.lr"):
        set_value(RunConfig(), "train.lrr", 0.1)


def test_parse_assignment_reads_yaml_values():
    assert parse_assignment("train.lr=0.1") == ("train.lr", 0.1)
    assert parse_assignment("measure.latency_batch_sizes=[1, 8]") == ("measure.latency_batch_sizes", [1, 8])
    assert parse_assignment("model.small_input=null") == ("model.small_input", None)
    assert parse_assignment("data.augment=true") == ("data.augment", True)


@pytest.mark.parametrize("text", ["train.lr", "=3", "train.lr=[1,"])
def test_malformed_assignment_is_rejected(text):
    with pytest.raises(UserError, match="malformed --set"):
        parse_assignment(text)


def test_method_args_accept_any_name():
    cfg = RunConfig()
    set_value(cfg, "method_args.sparsity", 0.5)
    assert cfg.method_args == {"sparsity": 0.5}
    with pytest.raises(UserError, match="method_args"):
        set_value(cfg, "method_args", 3)


def test_config_hash_tracks_what_changes_results_only():
    base = config_hash(RunConfig())
    assert base == config_hash(RunConfig())
    changed = RunConfig()
    changed.train.lr = 0.01
    assert config_hash(changed) != base
    moved = RunConfig()
    moved.data.root = "/elsewhere"
    moved.data.num_workers = 4
    assert config_hash(moved) == base  # where the files live does not change the result


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("train.epochs", 0, "train.epochs.*must be > 0"),
        ("train.batch_size", -3, "train.batch_size.*must be > 0"),
        ("train.lr", 0.0, "train.lr.*must be > 0"),
        ("train.optimizer", "adam", "unknown optimizer 'adam'.*sgd"),
        ("train.schedule", "linear", "unknown schedule 'linear'"),
        ("data.val_fraction", 1.5, "data.val_fraction.*\\[0, 1\\)"),
        ("measure.latency_batch_sizes", [], "latency_batch_sizes"),
    ],
)
def test_validate_rejects_bad_values(key, value, message):
    cfg = RunConfig()
    set_value(cfg, key, value)
    with pytest.raises(UserError, match=message):
        validate(cfg)


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.2\n  epochs: 3\nmodel:\n  arch: resnet34\n")
    cfg = RunConfig()
    apply_mapping(cfg, load_yaml(path), str(path))
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.arch) == (0.2, 3, "resnet34")
    assert flatten(cfg.to_dict())["train.momentum"] == 0.9  # untouched keys keep defaults
    (tmp_path / "bad.yaml").write_text("train: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="not found"):
        load_yaml(tmp_path / "absent.yaml")


def test_adding_a_knob_with_a_default_keeps_every_hash():
    """The hash covers the fields that differ from their defaults (plus a schema version), as open_lth does."""
    import dataclasses

    from benchmark.core.config import SCHEMA_VERSION, TrainConfig, non_default_fields

    @dataclasses.dataclass
    class NewTrain(TrainConfig):
        label_smoothing: float = 0.0  # a knob added later, with a default that keeps old behaviour

    @dataclasses.dataclass
    class NewRun(RunConfig):
        train: NewTrain = dataclasses.field(default_factory=NewTrain)

    old, new = RunConfig(), NewRun()
    for cfg in (old, new):
        cfg.train.lr, cfg.method_args = 0.1, {"sparsity": 0.5}
    assert config_hash(new) == config_hash(old)
    assert non_default_fields(old) == {"train.lr": 0.1, "method_args.sparsity": 0.5}
    new.train.label_smoothing = 0.1  # set away from its default, it is part of what was run
    assert config_hash(new) != config_hash(old)
    assert isinstance(SCHEMA_VERSION, int)


def test_the_schema_version_is_part_of_the_hash(monkeypatch):
    from benchmark.core import config as config_module

    before = config_hash(RunConfig())
    monkeypatch.setattr(config_module, "SCHEMA_VERSION", config_module.SCHEMA_VERSION + 1)
    assert config_hash(RunConfig()) != before


def test_a_changed_default_is_caught_by_comparing_the_stored_config():
    """Defaults are left out of the hash, so a result also stores its full config: if a default changes,
    the stored config disagrees with the current one and the cell runs again."""
    from benchmark.core.config import same_config

    stored = RunConfig().to_dict()
    assert same_config(stored, RunConfig())
    changed = RunConfig()
    changed.train.momentum = 0.95  # what a changed default looks like to an old result
    assert not same_config(stored, changed)
    older = RunConfig().to_dict()
    del older["train"]["rho"]  # a result from before a knob existed: the knob was at its default
    assert same_config(older, RunConfig())
    assert not same_config("not a config", RunConfig())
