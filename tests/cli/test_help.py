"""A coherent command line: every option of every command says what it does."""

import argparse

from sae_lens_match.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_command_has_help():
    missing = []
    for name, sub in _subparsers(build_parser()).items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        parsers = {name: sub, **{f"{name} {k}": p for a in nested for k, p in a.choices.items()}}
        for label, p in parsers.items():
            for action in p._actions:
                if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                    continue
                if not (action.help or "").strip():
                    missing.append(f"{label} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"
