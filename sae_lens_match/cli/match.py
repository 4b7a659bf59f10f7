"""``sae-lens-match match``: SAE Match across consecutive layers (and ``demo --synthetic``, on a planted stack)."""

from __future__ import annotations

import argparse
from typing import Any

from sae_lens_match.cli.options import add_match_options, add_out, add_unmatched_options, match_config, out_dir, unmatched_rule
from sae_lens_match.evaluation.cost_summary import CostSummaryConfig, run_cost_summary
from sae_lens_match.matching.layers import match_layers
from sae_lens_match.matching.matching import Matching
from sae_lens_match.matching.synthetic import make_stack
from sae_lens_match.report.matching_report import write_matching_report


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match", help="match the features of consecutive SAEs")
    p.add_argument("saes", nargs="+", help="SAE directories (SAE.save_model) or release:sae_id, shallowest first")
    add_out(p, None)
    add_match_options(p)
    add_unmatched_options(p)
    p.set_defaults(run=lambda args: run_match(args.saes, args))


def run_match(specs: list[Any], args: argparse.Namespace) -> list[dict]:
    """Match consecutive SAEs, write pair files and the report, return the summary rows."""
    out_dir(args)
    matchings = match_layers(specs, match_config(args), out_dir=args.out)
    summary = run_cost_summary(matchings, CostSummaryConfig(unmatched_rule(args)))
    write_matching_report(args.out, summary, matchings)
    rows = summary.rows()
    for r in rows:
        print(
            f"pair {r['pair']}: {r['source']} -> {r['target']}  mean {r['mean_cost']:.4g}  "
            f"median {r['median_cost']:.4g}  matched {r['fraction_matched']:.1%}"
        )
    print(f"wrote {args.out}/summary.json, summary.csv, report.html, report.png and pair_*.safetensors")
    return rows


def synthetic_demo(args: argparse.Namespace) -> None:
    """``demo --synthetic``: SAE Match on a planted stack, scored against its truth."""
    if args.layers < 2:
        raise ValueError(f"--layers must be at least 2 (a stack to match), got {args.layers}.")
    stack = make_stack(n_layers=args.layers, d_in=args.d_in, d_sae=args.d_sae, seed=args.seed)
    specs = []
    for layer, sae in enumerate(stack.saes):
        path = args.out / "saes" / f"layer_{layer}"
        sae.save_model(path)  # same bytes on every run, so pairs matched before are reused
        specs.append(path)
    print(f"synthetic stack of {args.layers} JumpReLU SAEs (d_in={args.d_in}, d_sae={args.d_sae}) in {args.out}/saes")
    run_match(specs, args)
    for layer in range(args.layers - 1):
        m = Matching.load(args.out / f"pair_{layer:03d}.safetensors")
        print(f"pair {layer}: accuracy on persisting features vs planted truth {stack.accuracy(m, layer):.1%}")
