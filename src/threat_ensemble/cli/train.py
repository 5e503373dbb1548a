"""``scripts/train.py``: options, exit codes and the closing summary. Heavy libraries load only
after the options are known to be good, so ``--help`` and option errors answer at once."""

from __future__ import annotations

import re
import sys
import types
import typing
import warnings
from argparse import ArgumentError
from typing import Any, Union

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

from threat_ensemble.config import YAML_SECTIONS, TrainConfig, field_names, load_yaml_config, options
from threat_ensemble.errors import OneLineWarnings, UsageError, option_strings, refuse_near_misses, run_cli

EXIT_CODES = (
    "exit status: 0 gate passed, 3 gate failed, 2 usage or input error, 1 unexpected error, "
    "5 gate passed but MLflow tracking failed mid-run (bundle written; --resume logs it later), "
    "143 stopped by SIGTERM, 130 stopped by Ctrl-C (continue either with --resume)"
)


def build_parser(config_type: type[TrainConfig] = TrainConfig) -> ArgumentParser:
    """The train.py options as a jsonargparse parser: flags, ``--config FILE.yaml`` (any option, flags
    override it) and typed values. Every option is one field of ``config_type`` (TrainConfig): its
    flag, type and default are the field's, its group, help and metavar the field's OptionSpec."""
    parser = ArgumentParser(
        prog="train.py",
        description="Train the threat-detection ensemble (autoencoder + random forest + isolation "
        "forest), evaluate the fused score and write a gated model bundle.",
        epilog=EXIT_CODES,
        formatter_class=_HelpFormatter,
        exit_on_error=False,
        allow_abbrev=False,  # --max-epoch is not --max-epochs: a typo that ran replaced the last bundle
        print_config=None,  # ours below prints the validated TrainConfig, the one the bundle keeps
        env_prefix=False,
        default_env=False,
    )
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        metavar="FILE.yaml",
        help="YAML file of options (keys as the flags, with - or _); flags given after it override it",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective configuration as YAML and exit"
    )
    every = options(config_type)
    for title in YAML_SECTIONS:
        group = parser.add_argument_group(title)
        for opt in (o for o in every if o.spec.group == title):
            spec, default = opt.spec, opt.default
            if opt.is_switch:
                group.add_argument(opt.flag, action="store_true", default=default, help=spec.help)
            elif spec.const is not None:  # --resume alone is --resume last
                group.add_argument(
                    opt.flag, type=opt.type, metavar=spec.metavar, nargs="?", const=spec.const, help=spec.help
                )
            else:
                shown = ",".join(default) if isinstance(default, list) else default
                suffix = "" if default is None or shown == "" else f" (default: {shown})"
                group.add_argument(
                    opt.flag, type=_cli_type(opt.type), metavar=spec.metavar, default=default, help=spec.help + suffix
                )
    return parser


def _cli_type(hint: Any) -> Any:
    """The jsonargparse type of a TrainConfig field. Text options also take YAML numbers
    (``normal_label: 0``, ``devices: 2``); lists take ``a,b`` on the command line as well as YAML."""
    is_union = typing.get_origin(hint) in (Union, types.UnionType)
    members = typing.get_args(hint) if is_union else (hint,)
    optional = type(None) in members
    base = next(a for a in members if a is not type(None))
    if base is str:
        base = str | int | float
    elif typing.get_origin(base) is list:
        base = list[str] | str
    return base | None if optional else base


class _HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help with our own ``(default: ...)`` texts and no Python type names."""

    def _get_help_string(self, action: Any) -> str:
        return action.help or ""

    def _format_action_invocation(self, action: Any) -> str:
        # jsonargparse adds ``--drop-columns+`` (append to a list); ``--drop-columns A,B`` is the form we document
        shown = [o for o in action.option_strings if not o.endswith("+")]
        if shown == list(action.option_strings) or not shown:
            return super()._format_action_invocation(action)
        saved = action.option_strings
        action.option_strings = shown
        try:
            return super()._format_action_invocation(action)
        finally:
            action.option_strings = saved


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, Any]:
    """Config file values, then command-line flags on top; validated by TrainConfig."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    refuse_near_misses(argv, option_strings(parser))
    try:
        args = parser.parse_args(_dashes_to_underscores_in_configs(argv))
    except ArgumentError as exc:
        raise UsageError(_one_line_error(str(exc))) from None
    values = {name: args[name] for name in field_names()}
    return TrainConfig(**values), args


def _dashes_to_underscores_in_configs(argv: list[str]) -> list[str]:
    """Config files may spell keys as the flags (``max-epochs``); jsonargparse wants ``max_epochs``.
    Each ``--config FILE`` is read, checked and passed on as YAML text with the keys normalised."""
    out = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            out[i + 1] = _normalised_config_text(argv[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + _normalised_config_text(arg.split("=", 1)[1])
    return out


def _normalised_config_text(path: str) -> str:
    import yaml

    values = load_yaml_config(path)  # one-line errors for a missing file, bad YAML, unknown keys
    return yaml.safe_dump(values, sort_keys=False) if values else "{}"


def _one_line_error(message: str) -> str:
    """jsonargparse's messages, as one line that names the option and the value."""
    text = " ".join(message.split())
    typed = re.match(r'Parser key "(\w+)": Expected a <class \'(\w+)\'>\. Got value: (.*)$', text)
    if typed:
        name, expected, got = typed.groups()
        return f"--{name.replace('_', '-')}: expected {expected}, got {got!r}"
    union = re.match(r'Parser key "(\w+)": Does not validate .*?Subtypes: \[(.*?)\].*Given value: (.*)$', text)
    if union:
        name, subtypes, got = union.groups()
        names = [n for n in re.findall(r"<class '(\w+)'>", subtypes) if n != "NoneType"]
        return f"--{name.replace('_', '-')}: expected {' or '.join(names)}, got {got!r}"
    keyed = re.match(r'Parser key "(\w+)": (.*)$', text)
    if keyed:
        name, rest = keyed.groups()
        return f"--{name.replace('_', '-')}: {rest}"
    return text + " (see --help)"


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg, args = parse_config(argv)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    from threat_ensemble.data.tables import DataWarning
    from threat_ensemble.pipeline import train

    with warnings.catch_warnings():
        if cfg.quiet:  # library chatter off; our own findings about the data (imputed cells, labels) stay
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", DataWarning)
        warnings.showwarning = OneLineWarnings(warnings.showwarning, DataWarning)  # our data warnings: a line each
        result = train(cfg)
    if result.gate is None:  # not rank 0 of a multi-process run
        return 0
    from threat_ensemble.console import summary_table

    print(summary_table(result))
    if result.tracking_failure and result.passed:
        print(
            f"tracking failed: {result.tracking_failure}; the bundle in {result.bundle_dir} is complete; "
            "run the same command with --resume once the tracking server is back to log the run (exit 5)",
            file=sys.stderr,
        )
    return result.exit_code
