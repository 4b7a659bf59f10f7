"""SAE Match on the embedded world: the paper's qualitative picture, offline.

For each consecutive pair of the world's residual-stream SAEs (layers t -> t+1) it prints

- the folded-parameter MSE of three pairings (paper Fig. 3): vanilla (identity),
  matched on unfolded weights, and folded+matched; expected vanilla > matched >
  folded+matched;
- the matching score on held-out world reviews: P(both active | either active) of the
  folded+matched pairs, next to the same statistic for a random pairing (chance).

Run (builds the world on first use, a few minutes on 2 CPU cores)::

    python benchmarks/world_sae_match.py [--hook resid_post] [--n-reviews 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import math

import torch

from sae_lens_match import UnmatchedRule, match, parameter_mse, world
from sae_lens_match.evaluation import MatchingScoreConfig, run_matching_score
from sae_lens_match.sources import TokenSet


def _mean(t: torch.Tensor) -> float:
    return float(t[~torch.isnan(t)].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hook", choices=["resid_post", "mlp_out"], default="resid_post")
    parser.add_argument("--n-reviews", type=int, default=300, help="held-out reviews for co-activation")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    args = parser.parse_args()

    saes = world.load_saes(hook=args.hook, seed=args.seed)
    model = world.load_model("hooked", seed=args.seed)
    rows = world.tokens("test", args.n_reviews, seed=args.seed)
    data = TokenSet(model, rows, bos_token_id="auto", batch_size=32, progress=False)
    print(f"world seed {args.seed}: {len(saes)} {args.hook} SAEs, d_in={saes[0].cfg.d_in}, "
          f"d_sae={saes[0].cfg.d_sae}; co-activation on {rows.numel() - len(rows)} held-out tokens\n")
    header = (f"{'pair':>6} {'vanilla':>9} {'matched':>9} {'fold+match':>10} "
              f"{'score':>7} {'random':>7} {'ratio':>6}")
    print("parameter MSE (folded params, mean over features) and matching score "
          "(P(both active | either active))")
    print(header)
    for t in range(len(saes) - 1):
        a, b = saes[t], saes[t + 1]
        identity = torch.arange(a.cfg.d_sae)
        unfolded = match(a, b, fold=False)
        folded = match(a, b, fold=True)
        vanilla_mse = _mean(parameter_mse(a, b, identity, fold=True))
        matched_mse = _mean(parameter_mse(a, b, unfolded.permutation, fold=True))
        folded_mse = _mean(parameter_mse(a, b, folded.permutation, fold=True))
        # every pair of the bijection is scored (no unmatched rule), as in the paper
        (score,) = run_matching_score(data, [a, b], {"sae_match": [folded]}, MatchingScoreConfig(UnmatchedRule(), args.seed)).rows()
        ratio = score["matching_score"] / score["random_matching_score"]
        print(f"{t:>2}->{t + 1:<2} {vanilla_mse:9.5f} {matched_mse:9.5f} {folded_mse:10.5f} "
              f"{score['matching_score']:7.3f} {score['random_matching_score']:7.3f} "
              f"{ratio if math.isfinite(ratio) else float('nan'):6.1f}")


if __name__ == "__main__":
    main()
