"""Layer pruning on the embedded world model: all baselines and all three matchers side by side.

For each consecutive pair of the world's SAEs (layers t, t+1) the hidden state at t+1 is
replaced during the forward pass (SAE Match paper, Eq. 5) and we report delta LM loss
(nats) and explained variance on held-out reviews (test split, BOS excluded), for

- the paper's baselines: ``layer_drop`` (x(t+1) := x(t)), ``current`` (SAE t+1's own
  reconstruction), ``previous`` (SAE t's reconstruction of x(t));
- the matchers: ``sae_match`` (data-free), ``cosine_top1`` (Feature Flow, data-free),
  ``activation_correlation`` (fitted on *train*-split reviews, so it is not judged on the
  tokens it was fitted to);
- SAE Match with unfolded inference, and with the MSE-quantile rule (pairs above the
  ``--rule-quantile`` of costs keep their own decoder, paper Appendix B).

Also the matching score on data (co-activation Jaccard, chance level from a random
pairing) and agreement with SAE Match.

    python benchmarks/world_layer_pruning.py [--n-texts 256 --n-fit-texts 256 --out results/world_layer_pruning]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sae_lens_match import DEFAULT_UNMATCHED, UnmatchedRule, world
from sae_lens_match.atomic import write_text
from sae_lens_match.evaluation import CompareConfig, LayerPruningConfig, ReplacementConfig, compute_matchings, run_compare, run_layer_pruning
from sae_lens_match.report import format_table, line_panels, markdown_table, write_figure, write_table
from sae_lens_match.sources import TokenSet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-texts", type=int, default=256, help="held-out (test split) reviews to evaluate on")
    parser.add_argument("--n-fit-texts", type=int, default=256, help="train-split reviews for activation_correlation")
    parser.add_argument("--hook", choices=["resid_post", "mlp_out"], default="resid_post", help="which world SAEs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quantile", type=float, default=None, help="MSE-quantile rule for the matchers (default: every pair kept, paper Eq. 5)")
    parser.add_argument("--rule-quantile", type=float, default=0.9, help="extra SAE Match row with the MSE-quantile rule at this quantile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids contention on shared CPUs)")
    parser.add_argument("--out", type=Path, default=Path("results/world_layer_pruning"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    start = time.perf_counter()

    model, saes = world.load_model("hooked_sae", seed=args.seed), world.load_saes(args.hook, seed=args.seed)
    eval_tokens, fit_tokens = world.tokens("test", args.n_texts, seed=args.seed), world.tokens("train", args.n_fit_texts, seed=args.seed)
    data = TokenSet(model, eval_tokens, batch_size=args.batch_size)
    fit = TokenSet(model, fit_tokens, batch_size=args.batch_size)
    print(
        f"world: {len(saes)} SAEs at {[s.cfg.metadata.hook_name for s in saes]}, d_sae={saes[0].cfg.d_sae}; "
        f"eval {tuple(eval_tokens.shape)} tokens ({data.n_positions()} non-BOS positions), fit {tuple(fit_tokens.shape)}"
    )

    matchings = compute_matchings(saes, data=fit)
    rule = UnmatchedRule(quantile=args.quantile)

    def pruning(name: str, **replacement) -> list[dict]:
        config = LayerPruningConfig(ReplacementConfig(**{"unmatched_rule": rule, **replacement}), baselines=())
        return run_layer_pruning(data, saes, {name: matchings["sae_match"]}, config).rows()

    rows = run_compare(saes, matchings, data=data, config=CompareConfig(replacement=ReplacementConfig(unmatched_rule=rule), seed=args.seed)).rows()
    # folded vs unfolded inference for SAE Match (same matching, different transfer of scales)
    unfolded = pruning("sae_match (unfolded inference)", fold=False)
    rule_name = f"sae_match (q={args.rule_quantile} rule)"
    quantile = pruning(rule_name, unmatched_rule=UnmatchedRule(quantile=args.rule_quantile))
    default = pruning("sae_match (default rule)", unmatched_rule=DEFAULT_UNMATCHED)

    table = rows + unfolded + quantile + default
    order = {"layer_drop": 0, "current": 1, "previous": 2, "sae_match": 3, "sae_match (unfolded inference)": 4, rule_name: 5, "sae_match (default rule)": 6, "cosine_top1": 7, "activation_correlation": 8}
    table.sort(key=lambda r: (r["pair"], order.get(r["method"], 9)))
    columns = ["pair", "method", "delta_loss", "explained_variance", "clean_loss"]
    print("\nHidden-state approximation (delta loss in nats, explained variance), BOS excluded:")
    print(format_table(table, columns))
    matcher_rows = [r for r in rows if r.get("kind") == "matcher"]
    score_columns = ["pair", "method", "mean_cost", "fraction_matched", "n_distinct_targets", "agreement", "matching_score", "random_matching_score", "correlation"]
    print("\nMatching on data (co-activation Jaccard; chance from a random pairing) and parameter MSE:")
    print(format_table(matcher_rows, score_columns))

    write_table(args.out, "layer_pruning", table)
    write_table(args.out, "matchers", matcher_rows)
    panels = line_panels(table, x="pair", series="method", panels=["delta_loss", "explained_variance"])
    write_figure(args.out / "layer_pruning.html", panels, title="World model: hidden-state approximation per layer pair")
    write_text(args.out / "README_table.md", markdown_table(table, columns, digits=3) + "\n\n" + markdown_table(matcher_rows, score_columns, digits=3) + "\n")
    print(f"\nwrote {args.out}/layer_pruning.{{json,csv,html,png}}, matchers.{{json,csv}}, README_table.md in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
