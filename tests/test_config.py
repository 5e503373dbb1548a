from __future__ import annotations

import dataclasses
import re
import typing
from argparse import ArgumentError
from pathlib import Path

import pytest
import yaml

from threat_ensemble.cli.train import build_parser, parse_config
from threat_ensemble.config import (
    SECTIONS,
    TYPED_SECTIONS,
    Bound,
    GateOptions,
    Option,
    TrainConfig,
    at_least,
    field_names,
    load_yaml_config,
    option,
    options,
    parse_weights,
    yaml_sections,
)
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
    written = yaml.safe_load(path.read_text())
    assert list(written) == ["data", "hardware", "autoencoder", "fusion", "gate", "outputs", "tracking", "resume"]
    assert written["data"]["drop_columns"] == ["a", "b"] and written["autoencoder"]["max_epochs"] == 3


def test_a_flat_config_written_by_the_previous_print_config_still_loads(tmp_path: Path) -> None:
    """Before sections, --print-config wrote every option at the top level."""
    cfg, _ = parse_config(["--max-epochs", "3", "--drop-columns", "a,b", "--no-header", "--lr", "0.01"])
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    again, _ = parse_config(["--config", str(path)])
    assert again == cfg
    mixed = tmp_path / "mixed.yaml"  # sections and top-level keys together, flags spelled with dashes
    mixed.write_text("data: flows.csv\nautoencoder:\n  max-epochs: 5\nmin-f1: 0.9\n")
    both, _ = parse_config(["--config", str(mixed)])
    assert (both.data, both.max_epochs, both.min_f1) == ("flows.csv", 5, 0.9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gate:\n  max_epochs: 3\n", "unknown key 'max_epochs' in section 'gate'"),
        ("autoencoder:\n  lr: 0.1\nlr: 0.2\n", "lr is given twice"),
    ],
)
def test_a_config_section_holds_only_its_own_options(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        parse_config(["--config", str(path)])


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


@pytest.mark.parametrize(
    ("argv", "typed", "meant"),
    [
        (["--max-epoch", "5"], "--max-epoch", "--max-epochs"),  # a prefix argparse used to complete
        (["--max-epoch=5"], "--max-epoch", "--max-epochs"),
        (["--no-headr"], "--no-headr", "--no-header"),
        (["--data", "x.csv", "--qiet"], "--qiet", "--quiet"),
        (["--max-dec", "5"], "--max-dec", "--max-decompressed-mb"),
    ],
)
def test_a_mistyped_option_is_refused_with_the_option_meant(argv: list[str], typed: str, meant: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(argv)
    assert str(info.value) == f"unrecognized option {typed}: did you mean {meant}?"


def test_an_ambiguous_prefix_is_refused_and_spelled_out_options_still_parse() -> None:
    with pytest.raises(UsageError, match=r"^unrecognized arguments: --max 3 \(see --help\)$"):
        parse_config(["--max", "3"])
    cfg, _ = parse_config(["--max-epochs", "5", "--no-header", "--drop-columns+", "a"])
    assert (cfg.max_epochs, cfg.no_header, cfg.drop_columns) == (5, True, ["a"])


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


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"weights: *a{levels}"]) + "\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_alias_bomb(), "more than 20 YAML aliases"),
        ("weights: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 20 levels"),
        ("seed: 1\n" + "#" * (2 << 20) + "\n", "a config file may hold at most 1048576"),
        (b"seed: \xff\xfe\n", "not UTF-8 text"),
    ],
    ids=["alias bomb", "deep nesting", "too large", "not utf-8"],
)
def test_a_hostile_config_file_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, message: str
) -> None:
    """Refused before YAML builds anything (the alias bomb took 154 s and 4.7 GB when it was
    built): nothing reaches ``yaml.safe_load``, and a file too large or not text is not parsed."""
    import yaml

    calls: list[str] = []
    parse = yaml.parse

    def counted_parse(*args: object, **kwargs: object) -> object:
        calls.append("parse")
        return parse(*args, **kwargs)

    def refuse_to_build(*args: object, **kwargs: object) -> object:
        calls.append("safe_load")
        raise AssertionError("the hostile file reached yaml.safe_load")

    monkeypatch.setattr(yaml, "parse", counted_parse)
    monkeypatch.setattr(yaml, "safe_load", refuse_to_build)
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_yaml_config(path)
    assert calls == (["parse"] if "YAML" in message or "nested" in message else [])


@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink loop", "missing"])
def test_a_config_that_is_not_a_readable_file_names_the_reason(tmp_path: Path, kind: str) -> None:
    import os

    path = tmp_path / "c.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink loop":
        path.symlink_to(path)
    expected = {
        "folder": "is a folder; expected a YAML file",
        "fifo": "not a regular file (a FIFO, device or socket)",
        "symlink loop": "cannot read (Too many levels of symbolic links)",
        "missing": "no such file",
    }[kind]
    with pytest.raises(UsageError, match=re.escape(f"--config {path}: {expected}")):
        load_yaml_config(path)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("devices", "0", "--devices '0': expected 'auto', a count of at least 1"),
        ("devices", "-1", "--devices '-1': expected"),
        ("devices", "abc", "--devices 'abc': expected"),
        ("precision", "8", "--precision '8': expected one of 32-true"),
        ("precision", "64", "64-bit is not supported"),
        ("accelerator", "tpu", "--accelerator 'tpu': expected one of auto, cpu"),
        ("strategy", "bogus", "--strategy 'bogus': expected one of auto, ddp"),
        ("seed", -1, r"--seed must be within \[0, 2\*\*32\), got -1"),
        ("seed", 2**32, r"--seed must be within \[0, 2\*\*32\), got 4294967296"),
        ("num_threads", 100000, "--num-threads 100000: this machine has"),
        ("register_model", "team/model", "--register-model 'team/model': not a valid model name"),
    ],
)
def test_lightning_and_registry_options_are_checked_before_any_work(option: str, value: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        TrainConfig(**{option: value})


def test_good_hardware_options_pass() -> None:
    for devices in ("auto", "1", "2", "0,1"):
        assert TrainConfig(devices=devices).devices == devices
    assert TrainConfig(precision="bf16-mixed", strategy="ddp", accelerator="cpu", seed=2**32 - 1).seed == 2**32 - 1


def _train_actions(parser: object) -> dict[str, object]:
    """The parser's actions of options (not --help, --config, --print-config), by dest."""
    skipped = {"help", "config", "print_config"}
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in skipped}  # type: ignore[attr-defined]


def test_the_cli_options_are_the_dataclass_fields_with_their_help_and_types() -> None:
    actions = _train_actions(build_parser())
    assert set(actions) == set(field_names())
    for opt in options():
        action = actions[opt.name]
        assert action.option_strings[0] == opt.flag  # type: ignore[attr-defined]
        assert action.help.startswith(opt.spec.help)  # type: ignore[attr-defined]
        assert action.metavar == opt.spec.metavar  # type: ignore[attr-defined]
        assert (action.nargs == 0) == (opt.type is bool), opt.name  # type: ignore[attr-defined]
    # the YAML sections are the --help groups, option for option
    groups = {g.title: [a.dest for a in g._group_actions] for g in build_parser()._action_groups}
    for title, names in SECTIONS.items():
        assert groups[title] == list(names)


def test_a_field_added_once_appears_in_the_cli_yaml_and_checks() -> None:
    """One field with its spec is all an option takes: the flag with its help and default, its
    YAML section, its type and its bound follow from it."""
    extended = dataclasses.make_dataclass(
        "Extended",
        [("new_knob", int, option(7, "gate", "a knob added later", metavar="N", bounds=(at_least(1),)))],
        bases=(TrainConfig,),
    )
    parser = build_parser(extended)
    assert "--new-knob N" in parser.format_help()
    assert _train_actions(parser)["new_knob"].help == "a knob added later (default: 7)"  # type: ignore[attr-defined]
    assert parser.parse_args(["--new-knob", "3"]).new_knob == 3
    with pytest.raises(ArgumentError):
        parser.parse_args(["--new-knob", "three"])
    assert yaml_sections(extended)["gate"][-1] == "new_knob"
    assert yaml.safe_load(extended(new_knob=4).to_yaml())["gate"]["new_knob"] == 4
    assert extended(new_knob="5").new_knob == 5  # typed from the annotation, as a YAML value is
    with pytest.raises(UsageError, match=r"^--new-knob must be at least 1, got 0$"):
        extended(new_knob=0)


def _outside(bound: Bound, integer: bool) -> list[float]:
    step = 1 if integer else 1e-6
    values = []
    if bound.low is not None:
        values.append(bound.low if bound.low_open else bound.low - step)
    if bound.high is not None:
        values.append(bound.high if bound.high_open else bound.high + step)
    return values


@pytest.mark.parametrize("opt", [o for o in options() if o.spec.bounds], ids=lambda o: o.name)
def test_every_bound_of_the_spec_is_enforced_with_its_words(opt: Option) -> None:
    integer = int in typing.get_args(opt.type) or opt.type is int
    for bound in opt.spec.bounds:
        for value in _outside(bound, integer):
            with pytest.raises(UsageError, match=f"^{re.escape(opt.flag)} must be {re.escape(bound.describe())}, got"):
                TrainConfig(**{opt.name: value})
    if not integer:
        with pytest.raises(UsageError, match=f"^{re.escape(opt.flag)} must be"):
            TrainConfig(**{opt.name: float("nan")})


@pytest.mark.parametrize("opt", [o for o in options() if o.spec.choices], ids=lambda o: o.name)
def test_every_choice_of_the_spec_is_taken_and_nothing_else(opt: Option) -> None:
    assert opt.spec.choices is not None
    for value in opt.spec.choices.values:
        assert getattr(TrainConfig(**{opt.name: value}), opt.name) == value
    with pytest.raises(UsageError, match=f"^{re.escape(opt.flag)} .*one of"):
        TrainConfig(**{opt.name: "bogus"})


def test_each_typed_section_is_a_frozen_view_of_the_options_its_step_reads() -> None:
    hints = typing.get_type_hints(TrainConfig)
    placed: set[str] = set()
    for kind in TYPED_SECTIONS.values():
        for name, hint in typing.get_type_hints(kind).items():
            assert name in hints, f"{kind.__name__}.{name} is not an option"
            wanted = hints[name]
            if typing.get_origin(wanted) is list:  # a list option is a tuple in a frozen section
                wanted = tuple[(*typing.get_args(wanted), ...)]
            assert hint == wanted, (kind.__name__, name)
            placed.add(name)
    assert placed == set(field_names()), "options in no section"

    cfg = TrainConfig(min_recall=0.5, drop_columns=["a", "b"], fusion="fixed", weights="ae=1", seed=7)
    assert cfg.gate_options == GateOptions(min_pr_auc=0.85, min_f1=0.8, min_recall=0.5, max_fpr=None)
    assert cfg.section(GateOptions) == cfg.gate_options
    assert cfg.data_options.drop_columns == ("a", "b") and cfg.data_options.seed == cfg.run_options.seed == 7
    assert cfg.fusion_options.weight_map == cfg.weight_map == {"ae": 1.0, "rf": 0.0, "if": 0.0}
    for section in (cfg.data_options, cfg.model_options, cfg.tracking_options, cfg.run_options):
        for f in dataclasses.fields(section):
            value = getattr(cfg, f.name)
            assert getattr(section, f.name) == (tuple(value) if isinstance(value, list) else value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gate_options.min_f1 = 0.1  # type: ignore[misc]
