"""``sae-lens-match compare`` and ``sae-lens-match evaluate``: judging matchings.

- ``compare``: every matcher on the same SAEs (and data), side by side: cost under one
  definition, agreement, co-activation on tokens, layer pruning, and optionally
  SAME/MAYBE/DIFFERENT judgements.
- ``evaluate``: the paper's evaluations: layer pruning with the three baselines and the chosen
  matchers, and the parameter MSE curves (Fig. 3).

Data: ``--world`` uses the embedded world (its model, its SAEs when no SAE is named, its
corpus: evaluation tokens from the test split, tokens for data-based matchers from the
train split); otherwise ``--model NAME`` with ``--tokens FILE``. Without data, only the
data-free parts run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sae_lens_match.cli.inputs import add_eval_inputs, eval_inputs
from sae_lens_match.cli.options import add_match_options, add_out, add_unmatched_options, match_config, matcher_names, out_dir, positive_int, unmatched_rule
from sae_lens_match.evaluation.compare import DEFAULT_MATCHERS, CompareConfig, add_judgements, compute_matchings, run_compare
from sae_lens_match.evaluation.explain.client import ChatClient
from sae_lens_match.evaluation.explain.judging import JUDGES, JudgingConfig
from sae_lens_match.evaluation.layer_pruning import LayerPruningConfig, run_layer_pruning
from sae_lens_match.evaluation.parameter_curves import ParameterCurvesConfig, run_parameter_curves
from sae_lens_match.evaluation.replacement import ReplacementConfig
from sae_lens_match.report.pages import html_table, write_page
from sae_lens_match.report.plots import line_panels, write_figure
from sae_lens_match.report.tables import format_table, write_result


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="all matchers side by side on the same SAEs and data")
    _common(p, Path("results/compare"))
    p.add_argument("--judge", choices=["none", *JUDGES.names()], default="none", help="judge matched pairs (heuristic: offline, not an LLM)")
    p.add_argument("--judge-features", type=positive_int, default=JudgingConfig.n_features, help="pairs judged per layer pair and matcher")
    p.add_argument("--llm-base-url", default=None, help="OpenAI-compatible base URL (default: SAE_LENS_MATCH_LLM_BASE_URL / OPENAI_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="model name (default: SAE_LENS_MATCH_LLM_MODEL / OPENAI_MODEL)")
    p.set_defaults(run=run_compare_command)

    p = sub.add_parser("evaluate", help="layer pruning (delta loss, explained variance) with baselines, and parameter MSE curves")
    _common(p, Path("results/evaluate"))
    p.add_argument("--error-term", action="store_true", help="add SAE t+1's reconstruction error (use_error_term-style)")
    p.set_defaults(run=run_evaluate_command)


def _common(p: argparse.ArgumentParser, out: Path) -> None:
    add_eval_inputs(p)
    p.add_argument("--matchers", type=matcher_names, default=list(DEFAULT_MATCHERS), help=f"comma-separated registered matchers (default: {','.join(DEFAULT_MATCHERS)})")
    p.add_argument("--unfolded-inference", action="store_true", help="layer pruning decodes raw (unfolded) activations")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads for this process")
    add_out(p, out)
    add_match_options(p)
    add_unmatched_options(p)


def _setup(args: argparse.Namespace):
    out_dir(args)
    if args.threads:
        torch.set_num_threads(args.threads)  # the command owns its process
    inputs = eval_inputs(args)
    replacement = ReplacementConfig(
        fold=not args.unfolded_inference, unmatched_rule=unmatched_rule(args),
        error_term=getattr(args, "error_term", False), nonpositive_threshold=args.nonpositive_threshold,
    )
    return inputs, replacement, args.matchers


def run_compare_command(args: argparse.Namespace) -> list[dict]:
    """Print and write the side-by-side table."""
    if args.judge != "none" and not (args.world or args.tokens):
        raise ValueError("--judge needs data (--world, or --model with --tokens).")
    inputs, replacement, names = _setup(args)
    judge = explainer = None
    if args.judge != "none":  # a bad endpoint or model name is refused before any work
        client = ChatClient(args.llm_base_url, args.llm_model, cache_dir=args.out / "llm_cache") if args.judge == "llm" else None
        judge, explainer = JUDGES.get(args.judge)(client)
    matchings = compute_matchings(inputs.saes, names, data=inputs.fit_data, config=match_config(args), skip_data_matchers=True)
    skipped = [m for m in names if m not in matchings]
    config = CompareConfig(replacement=replacement, judging=JudgingConfig(n_features=args.judge_features, seed=args.seed), seed=args.seed)
    result = run_compare(inputs.saes, matchings, data=inputs.data, config=config)
    write_result(args.out, "compare", result)  # kept even if judging below fails
    if judge is not None:
        result = add_judgements(result, inputs.saes, matchings, inputs.data, judge, explainer)
    rows = result.rows()
    columns = ["pair", "method", "mean_cost", "fraction_matched", "n_distinct_targets", "agreement", "matching_score", "random_matching_score", "correlation", "delta_loss", "explained_variance", "frac_same", "frac_maybe", "frac_different"]
    print(format_table(rows, [c for c in columns if any(r.get(c) is not None for r in rows)]))
    if skipped:
        print(f"skipped data-based matchers without data: {skipped}")
    if args.judge == "heuristic":
        print("judgements are the offline context-overlap heuristic, not an LLM's labels")
    write_result(args.out, "compare", result)
    panels = [c for c in ("mean_cost", "matching_score", "delta_loss", "explained_variance") if any(r.get(c) is not None for r in rows)]
    write_figure(args.out / "compare.html", line_panels(rows, x="pair", series="method", panels=panels), title="Matchers side by side")
    _index(args.out, "Matchers side by side", [("compare", rows, columns)])
    print(f"wrote {args.out}/index.html (open it in a browser), compare.json, compare.csv, compare.html, compare.png")
    return rows


def run_evaluate_command(args: argparse.Namespace) -> list[dict]:
    """Layer-pruning table and parameter MSE curves."""
    inputs, replacement, names = _setup(args)
    curves = run_parameter_curves(inputs.saes, ParameterCurvesConfig(match=match_config(args)))
    write_result(args.out, "parameter_curves", curves)
    panels = line_panels(curves.rows(), x="pair", series="variant", panels=["mean_mse"], facet="term", log_y=["mean_mse"])
    write_figure(args.out / "parameter_curves.html", panels, title="Folded parameter MSE per layer pair (paper Fig. 3)")
    print(format_table([r for r in curves.rows() if r["variant"] in ("vanilla", "matched", "folded+matched")], ["pair", "variant", "term", "mean_mse"]))
    tables = [("parameter_curves", curves.rows(), ["pair", "variant", "term", "mean_mse"])]
    if inputs.data is None:
        print("no data given (--world, or --model with --tokens): layer pruning skipped")
        _index(args.out, "SAE Match evaluation", tables)
        print(f"wrote {args.out}/index.html, parameter_curves.json, .csv, .html, .png")
        return curves.rows()
    matchings = compute_matchings(inputs.saes, names, data=inputs.fit_data, config=match_config(args))
    result = run_layer_pruning(inputs.data, inputs.saes, matchings, LayerPruningConfig(replacement))
    write_result(args.out, "layer_pruning", result)
    rows = result.rows()
    panels = line_panels(rows, x="pair", series="method", panels=["delta_loss", "explained_variance"])
    write_figure(args.out / "layer_pruning.html", panels, title="Hidden-state approximation per layer pair")
    print(format_table(rows, ["pair", "method", "delta_loss", "explained_variance", "clean_loss"]))
    _index(args.out, "SAE Match evaluation", [("layer_pruning", rows, ["pair", "method", "kind", "delta_loss", "explained_variance", "clean_loss"]), *tables])
    print(f"wrote {args.out}/index.html (open it in a browser), layer_pruning.{{json,csv,html,png}} and parameter_curves.{{json,csv,html,png}}")
    return rows


def _index(out: Path, title: str, tables: list[tuple[str, list[dict], list[str]]]) -> Path:
    """``index.html``: each table with its PNG and links to its JSON, CSV and interactive plots."""
    blocks = []
    for name, rows, columns in tables:
        shown = [c for c in columns if any(r.get(c) is not None for r in rows)]
        blocks += [f"<h2>{name.replace('_', ' ').capitalize()}</h2>", f"<img src='{name}.png' alt='{name}'>", html_table(rows, shown),
                   f"<p><a href='{name}.html'>interactive plots</a> · <a href='{name}.json'>{name}.json</a> · <a href='{name}.csv'>{name}.csv</a></p>"]
    return write_page(out / "index.html", title, blocks)
