"""The ``sae-lens-match`` command: one parser, one subcommand per module.

- ``demo`` (:mod:`~sae_lens_match.cli.demo`): everything on the embedded world, one results folder;
- ``match`` (:mod:`~sae_lens_match.cli.match`): SAE Match across consecutive layers;
- ``compare``, ``evaluate`` (:mod:`~sae_lens_match.cli.evaluate`): judging matchings;
- ``lfp`` (:mod:`~sae_lens_match.cli.lfp`): Learned Feedback Patterns;
- ``world`` (:mod:`~sae_lens_match.cli.world`): the embedded default world.

Each module adds its parsers and sets ``run``; defaults come from the library's configs.
Data comes from :mod:`~sae_lens_match.cli.inputs`, the one place the world is picked.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sae_lens_match.assignment import DenseTooLargeError
from sae_lens_match.cli import demo, evaluate, flow, lfp, match, world


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae-lens-match", description="SAE Match and Learned Feedback Patterns for SAELens + TransformerLens.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (demo, match, evaluate, flow, lfp, world):
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 with a one-line message for bad input,
    unusable files or an unreachable service)."""
    args = build_parser().parse_args(argv)
    _show_package_messages()
    try:
        args.run(args)
    except (ValueError, RuntimeError, DenseTooLargeError, OSError) as error:
        print(f"sae-lens-match: error: {error}", file=sys.stderr)
        return 2
    return 0


def _show_package_messages() -> None:
    """The package's own log messages on stderr (other libraries keep their own handlers)."""
    logger = logging.getLogger("sae_lens_match")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("sae-lens-match: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
