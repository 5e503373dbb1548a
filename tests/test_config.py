from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from threat_ensemble.cli import build_parser, parse_config
from threat_ensemble.config import TrainConfig, field_names, parse_weights
from threat_ensemble.errors import UsageError


def test_weights_are_parsed_and_normalised() -> None:
    assert parse_weights("ae=0.4,rf=0.4,if=0.2") == pytest.approx({"ae": 0.4, "rf": 0.4, "if": 0.2})
    assert parse_weights("ae=2, rf=2") == pytest.approx({"ae": 0.5, "rf": 0.5, "if": 0.0})


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("ae=0,rf=0,if=0", "sum to zero"),
        ("ae=x", "not a number"),
        ("xx=1", "cannot read"),
        ("ae0.4", "cannot read"),
        ("ae=-1", ">= 0"),
        ("ae=inf", "finite"),
    ],
)
def test_bad_weights_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        TrainConfig(weights=text)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"min_pr_auc": 1.5}, "min-pr-auc must be within"),
        ({"min_f1": -0.1}, "min-f1 must be within"),
        ({"max_epochs": 0}, "max-epochs must be at least 1"),
        ({"batch_size": "many"}, "batch-size: expected int"),
        ({"threshold_percentile": 0}, "threshold-percentile"),
        ({"gpus": -1}, "--gpus"),
        ({"lr": 0}, "--lr"),
    ],
)
def test_bad_values_are_refused(kwargs: dict, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        TrainConfig(**kwargs)


def test_every_option_has_a_flag_with_its_default_in_help() -> None:
    text = build_parser().format_help()
    for name in field_names():
        assert f"--{name.replace('_', '-')}" in text
    assert "(default: 100)" in text  # max-epochs
    assert "(default: ae=0.4,rf=0.4,if=0.2)" in text


def test_flags_override_config_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("max-epochs: 7\nbatch_size: 64\nweights: ae=1\n")
    cfg, _ = parse_config(["--config", str(path), "--batch-size", "32"])
    assert cfg.max_epochs == 7
    assert cfg.batch_size == 32
    assert cfg.weight_map["ae"] == 1.0


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("max_epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(UsageError, match="unknown key 'learning_rate'"):
        parse_config(["--config", str(path)])


def test_print_config_round_trips(tmp_path: Path) -> None:
    cfg, _ = parse_config(["--max-epochs", "3", "--drop-columns", "a,b", "--no-header", "--lr", "0.01"])
    path = tmp_path / "effective.yaml"
    path.write_text(cfg.to_yaml())
    again, _ = parse_config(["--config", str(path)])
    assert again == cfg
    assert yaml.safe_load(path.read_text())["drop_columns"] == ["a", "b"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-epochs", "2.5"], "--max-epochs: expected int, got '2.5'"),
        (["--lr", "abc"], "--lr: expected float, got 'abc'"),
        (["--gpus", "x"], "--gpus: expected int, got 'x'"),
        (["--min-recall", "high"], "--min-recall: expected float, got 'high'"),
        (["--bogus", "1"], "unrecognized arguments: --bogus 1 (see --help)"),
    ],
)
def test_bad_flags_get_one_line_naming_the_option(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(argv)
    assert str(info.value) == message


def test_config_file_values_are_typed_by_the_parser(tmp_path: Path) -> None:
    # YAML numbers for text options (labels, devices) and YAML lists for list options are accepted
    path = tmp_path / "run.yaml"
    path.write_text("normal_label: 0\ndevices: 2\ndrop_columns: [a, b]\nmin-recall: 0.5\nno_header: true\n")
    cfg, _ = parse_config(["--config", str(path)])
    assert (cfg.normal_label, cfg.devices, cfg.drop_columns) == ("0", "2", ["a", "b"])
    assert cfg.min_recall == 0.5 and cfg.no_header is True
    path.write_text("max_epochs: many\n")
    with pytest.raises(UsageError, match="--max-epochs: expected int, got 'many'"):
        parse_config(["--config", str(path)])
