"""Command-line options shared by several commands, with defaults taken from the configs.

Every option is checked by its ``type`` while the command line is parsed, so a bad value is
refused in one line naming the option, before any work is done.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from sae_lens_match.assignment import SOLVERS
from sae_lens_match.atomic import prepare_out_dir
from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.matchers import MATCHERS
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, UnmatchedRule


def _convert(convert: Any, text: str, expected: str) -> Any:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _convert(int, text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def finite_float(text: str) -> float:
    value = _convert(float, text, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value:g}")
    return value


def bos_token(text: str) -> Any:
    """``auto``, ``none`` or a token id."""
    if text in ("auto", "none", "None"):
        return "auto" if text == "auto" else None
    value = _convert(int, text, "'auto', 'none' or a token id")
    if value < 0:
        raise argparse.ArgumentTypeError(f"a token id is >= 0, got {value}")
    return value


def weights(text: str) -> dict[str, float]:
    try:
        parsed = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
        MatchConfig(weights=parsed)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"weights look like 'W_dec=1,W_enc=1,b_enc=1' ({error})" if "=" in text else f"weights look like 'W_dec=1,W_enc=1,b_enc=1', got {text!r}") from None
    return parsed


def solver(text: str) -> str:
    """A registered assignment solver."""
    if text != "auto" and text not in SOLVERS:
        raise argparse.ArgumentTypeError(f"unknown solver {text!r}; choose auto or a registered one: {SOLVERS.names()}")
    return text


def matcher_names(text: str) -> list[str]:
    """Comma-separated registered matchers."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MATCHERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown matcher(s) {unknown or text!r}; registered: {MATCHERS.names()}")
    return names


def add_match_options(p: argparse.ArgumentParser) -> None:
    """``--no-fold``, ``--weights``, ``--solver``, ``--nonpositive-threshold``: a :class:`MatchConfig`."""
    default = MatchConfig()
    p.add_argument("--no-fold", action="store_true", help="match raw weights instead of threshold-folded ones")
    p.add_argument("--weights", type=weights, default=None, help="term weights, e.g. W_dec=1,W_enc=1,b_enc=1 (default: all 1)")
    p.add_argument("--solver", type=solver, default=default.solver, help=f"assignment solver: auto, dense, sparse (default: {default.solver})")
    p.add_argument("--nonpositive-threshold", choices=["error", "keep"], default=default.nonpositive_threshold, help=f"JumpReLU thresholds <= 0: refuse, or keep those features unfolded (default: {default.nonpositive_threshold})")


def match_config(args: argparse.Namespace) -> MatchConfig:
    return MatchConfig.of(fold=not args.no_fold, weights=args.weights, solver=args.solver, nonpositive_threshold=args.nonpositive_threshold)


def add_unmatched_options(p: argparse.ArgumentParser) -> None:
    """``--max-cost`` / ``--quantile`` / ``--random-ratio`` / ``--keep-all``: an :class:`UnmatchedRule`."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--max-cost", type=finite_float, help="pairs above this cost count as unmatched")
    group.add_argument("--quantile", type=fraction, help="pairs above this quantile (in [0, 1]) of the costs count as unmatched")
    group.add_argument(
        "--random-ratio", type=positive_float,
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


def out_dir(args: argparse.Namespace) -> Path:
    """The command's ``--out``, checked writable (and cleared of killed writes' leftovers) before any work."""
    return prepare_out_dir(args.out)
