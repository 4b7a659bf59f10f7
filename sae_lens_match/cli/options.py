"""Command-line options shared by several commands, with defaults taken from the configs."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, UnmatchedRule


def weights(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights look like 'W_dec=1,W_enc=1,b_enc=1', got {text!r}") from None


def add_match_options(p: argparse.ArgumentParser) -> None:
    """``--no-fold``, ``--weights``, ``--solver``, ``--nonpositive-threshold``: a :class:`MatchConfig`."""
    default = MatchConfig()
    p.add_argument("--no-fold", action="store_true", help="match raw weights instead of threshold-folded ones")
    p.add_argument("--weights", type=weights, default=None, help="term weights, e.g. W_dec=1,W_enc=1,b_enc=1 (default: all 1)")
    p.add_argument("--solver", default=default.solver, help=f"assignment solver: auto, dense, sparse (default: {default.solver})")
    p.add_argument("--nonpositive-threshold", choices=["error", "keep"], default=default.nonpositive_threshold)


def match_config(args: argparse.Namespace) -> MatchConfig:
    return MatchConfig.of(fold=not args.no_fold, weights=args.weights, solver=args.solver, nonpositive_threshold=args.nonpositive_threshold)


def add_unmatched_options(p: argparse.ArgumentParser) -> None:
    """``--max-cost`` / ``--quantile`` / ``--random-ratio`` / ``--keep-all``: an :class:`UnmatchedRule`."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--max-cost", type=float, help="pairs above this cost count as unmatched")
    group.add_argument("--quantile", type=float, help="pairs above this quantile of the costs count as unmatched")
    group.add_argument(
        "--random-ratio", type=float,
        help=f"pairs above this multiple of the median cost of random pairs count as unmatched (default: {DEFAULT_UNMATCHED.random_ratio})",
    )
    group.add_argument("--keep-all", action="store_true", help="every pair counts as matched (the plain bijection)")


def unmatched_rule(args: argparse.Namespace) -> UnmatchedRule:
    if args.keep_all:
        return UnmatchedRule()
    if args.max_cost is None and args.quantile is None and args.random_ratio is None:
        return DEFAULT_UNMATCHED
    return UnmatchedRule(max_cost=args.max_cost, quantile=args.quantile, random_ratio=args.random_ratio)


def add_out(p: argparse.ArgumentParser, default: Path | None) -> None:
    p.add_argument(
        "--out", type=Path, required=default is None, default=default,
        help="output directory (a rerun resumes what is already there)",
    )
