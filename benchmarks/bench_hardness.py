"""How hard pairs are for the sparse exact solver, and which regime real SAEs are in.

**Sweep** (default): at one width, a planted pair per hardness level (``make_pair``: the
fraction of B's features without a counterpart, noise on the rest, threshold scale), folded
into SAE Match's feature rows. Each solver runs in its own process (``bench_scale``'s worker,
so peak RSS is its own). Printed per level: wall time, per-phase time, proof rounds, edges
added and pairs rescored per round, peak RSS, total cost, and dense's cost side by side
where dense runs (``--dense-max``); the two must be identical.

    python benchmarks/bench_hardness.py --size 16384
    python benchmarks/bench_hardness.py --size 131072 --dense-max 0     # the issue's scale

**Regime** (``--regime``): which hardness real SAEs resemble. For each feature of A, the
cosine of its best and second-best B feature, and whether the best is better than what a
*null* B offers (B with its input coordinates permuted: same statistics, no counterparts).
Measured on the world's consecutive-layer SAE pairs, on two dictionaries trained with
different seeds on the same world activations, and on planted pairs of every level at the
world's width. A pair resembles the level whose "no better than null" fraction it shares.

    python benchmarks/bench_hardness.py --regime

Threads: set ``OMP_NUM_THREADS`` (the figures in the README use 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import gib, spawn  # noqa: E402

LEVELS = (0.0, 0.15, 0.3, 0.5)


def rows_path(work: Path, d_sae: int, d_in: int, hardness, seed: int) -> Path:
    return work / f"hard_rows_{d_sae}x{d_in}_{hardness.name}_seed{seed}.safetensors"


def make_rows(path: Path, d_sae: int, d_in: int, hardness, seed: int) -> None:
    """Feature rows (W_dec + W_enc + b_enc, folded) of a planted pair, written to ``path``."""
    from sae_lens_match.matching import feature_rows, make_pair

    pair = make_pair(d_in, d_sae, hardness, seed=seed)
    rows = {"a": feature_rows(pair.saes[0]).contiguous(), "b": feature_rows(pair.saes[1]).contiguous()}
    del pair
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(rows, str(tmp))
    tmp.replace(path)


def _rounds(info: dict) -> str:
    added = info.get("added_edges")
    per_round = info.get("round_seconds")
    parts = [f"rounds {info.get('rounds')}", f"proven {info.get('proven_optimal')}"]
    if added is not None:
        parts.append(f"added/round {added}")
    rescored = info.get("rescored_pairs", [])
    parts.append(f"rescored {sum(rescored):.3g} in all, per round {[f'{x:.3g}' for x in rescored]}")
    if per_round is not None:
        parts.append(f"s/round {[round(x, 1) for x in per_round]}")
    return " | ".join(parts)


def sweep(args: argparse.Namespace) -> None:
    from sae_lens_match.matching import Hardness

    table = []
    for level in args.levels:
        hardness = Hardness(unmatched=level, noise=args.noise, threshold_scale=args.threshold_scale)
        path = rows_path(args.work, args.size, args.d_in, hardness, args.seed)
        if not path.exists():
            print(f"generating {hardness} at {args.size} x {args.d_in} ...", flush=True)
            make_rows(path, args.size, args.d_in, hardness, args.seed)
        solvers = list(args.solvers) + (["dense"] if args.size <= args.dense_max and "dense" not in args.solvers else [])
        print(f"{args.size} x {args.size}, {hardness}:", flush=True)
        results = {s: spawn(path, s, args.work, args.device, s in args.reuse) for s in solvers}
        for solver, r in results.items():
            if "refused" in r:
                print(f"  {solver:>6}: refused: {r['refused']}")
                continue
            phases = ", ".join(f"{k.removeprefix('seconds_')} {v:.1f}s" for k, v in r["info"].items()
                               if k.startswith("seconds_"))
            print(f"  {solver:>6}: wall {r['wall_s']:7.1f} s | peak RSS {gib(r['peak_rss'])} | total {r['total']:.10g} | {phases}")
            if solver == "sparse":
                print(f"          {_rounds(r['info'])}")
        dense = results.get("dense")
        sparse = results.get("sparse")
        same = None
        if dense and sparse and "refused" not in dense and "refused" not in sparse:
            same = dense["total"] == sparse["total"] or abs(dense["total"] - sparse["total"]) <= 1e-9 * dense["total"]
            print(f"  sparse vs dense: identical optimal cost: {same} (difference {sparse['total'] - dense['total']:+.3g})")
        if sparse and "refused" not in sparse:
            table.append((level, sparse, dense if dense and "refused" not in dense else None, same))
    print(f"\nsummary at {args.size} (noise {args.noise}, threshold scale {args.threshold_scale}):")
    print(f"{'unmatched':>9} {'wall s':>7} {'survey':>7} {'assign':>7} {'check':>7} {'rounds':>6} {'rescored':>9} {'RSS GiB':>7} {'sparse total':>16} {'dense total':>16}")
    for level, s, d, same in table:
        info = s["info"]
        print(f"{level:>9.2f} {s['wall_s']:>7.1f} {info['seconds_survey']:>7.1f} {info['seconds_assignment']:>7.1f} "
              f"{info['seconds_optimality_check']:>7.1f} {info['rounds']:>6} {sum(info['rescored_pairs']):>9.3g} {s['peak_rss'] / 2**30:>7.2f} "
              f"{s['total']:>16.10g} {'' if d is None else format(d['total'], '>16.10g')}{'' if same is None else ('  equal' if same else '  DIFFERENT')}")


# ----- regime -----------------------------------------------------------------------------


def _permute_inputs(rows: torch.Tensor, d_in: int, seed: int) -> torch.Tensor:
    """B's rows with one random permutation of the input coordinates applied to the decoder
    and encoder parts alike: the same statistics, but nothing left that matches A."""
    perm = torch.randperm(d_in, generator=torch.Generator().manual_seed(seed))
    out = rows.clone()
    for start in range(0, rows.shape[1] - d_in + 1, d_in):
        out[:, start : start + d_in] = rows[:, start : start + d_in][:, perm]
    return out


def regime_stats(a: torch.Tensor, b: torch.Tensor, d_in: int, seed: int = 0) -> dict[str, float]:
    """Margins of A's features over B's (``a [n_a, D]``, ``b [n_b, D]``, D = k d_in + extra).

    Returns the median best cosine, the median relative margin (best - second) / best, the
    fraction of features whose best cosine is no better than the 99th percentile of the best
    cosines against the null B (:func:`_permute_inputs`), and the fraction the sparse solver's
    survey would call weak (best cosine below twice the 9th best: no clear counterpart).
    """
    unit = lambda x: x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)  # noqa: E731
    ua, ub = unit(a.double()), unit(b.double())
    top = (ua @ ub.T).topk(9, dim=1).values
    null = (ua @ unit(_permute_inputs(b, d_in, seed).double()).T).amax(1)
    bar = torch.quantile(null, 0.99)
    return {
        "best_cos": float(top[:, 0].median()),
        "null_cos_q99": float(bar),
        "margin": float(((top[:, 0] - top[:, 1]) / top[:, 0].abs()).median()),
        "no_better_than_null": float((top[:, 0] <= bar).double().mean()),
        "weak": float((top[:, 0] < 2 * top[:, 8]).double().mean()),
    }


def _seed_pair(hook: str, world_seed: int) -> tuple:
    """Two world-size SAEs trained with seeds 1 and 2 on the same activations of ``hook``."""
    import tempfile

    from sae_lens_match import world
    from sae_lens_match.sources.activations import collect_activations
    from sae_lens_match.sources.tokens import TokenSet
    from sae_lens_match.world.build import WorldConfig
    from sae_lens_match.world.saes import train_world_sae

    cfg = WorldConfig()
    n_rows = -(-cfg.sae_train_tokens // (cfg.n_ctx - 1))
    rows = world.tokens("train", cfg.train_reviews, seed=world_seed)[:n_rows]
    model = world.load_model("hooked", seed=world_seed)
    acts = collect_activations(TokenSet(model, rows, batch_size=32, progress=False), [hook])[hook]
    with tempfile.TemporaryDirectory() as tmp:
        return tuple(train_world_sae(acts, hook, cfg.sae, s, {"model_name": "world"}, Path(tmp) / f"s{s}") for s in (1, 2))


def regime(args: argparse.Namespace) -> None:
    import time

    from sae_lens_match import world
    from sae_lens_match.matching import Hardness, feature_rows, make_pair

    saes = world.load_saes(hook="resid_post", seed=args.seed)
    d_in, d_sae = saes[0].cfg.d_in, saes[0].cfg.d_sae
    print(f"feature rows W_dec + W_enc + b_enc, folded; d_in {d_in}, d_sae {d_sae}")
    print(f"{'pair':<44} {'best cos':>8} {'null q99':>8} {'margin':>8} {'no better than null':>20} {'weak':>6}")

    def show(name: str, a, b) -> None:
        st = regime_stats(feature_rows(a), feature_rows(b), d_in, args.seed)
        print(f"{name:<44} {st['best_cos']:>8.3f} {st['null_cos_q99']:>8.3f} {st['margin']:>8.3f} "
              f"{st['no_better_than_null']:>20.3f} {st['weak']:>6.3f}", flush=True)

    for t in range(len(saes) - 1):
        show(f"world resid_post {t} -> {t + 1}", saes[t], saes[t + 1])
    if not args.skip_seeds:
        start = time.perf_counter()
        a, b = _seed_pair("blocks.1.hook_resid_post", args.seed)
        show(f"world layer 1, seeds 1 vs 2 ({time.perf_counter() - start:.0f} s)", a, b)
    for noise in (args.noise, 1.0):
        for level in LEVELS:
            pair = make_pair(d_in, d_sae, Hardness(level, noise, args.threshold_scale), seed=args.seed)
            show(f"planted, {level:.0%} without counterpart, noise {noise:g}", *pair.saes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--d-in", type=int, default=2304)
    parser.add_argument("--levels", type=float, nargs="+", default=list(LEVELS), help="fractions of B's features without a counterpart")
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--threshold-scale", type=float, default=1.2)
    parser.add_argument("--solvers", nargs="+", default=["sparse"])
    parser.add_argument("--dense-max", type=int, default=8192, help="also run dense up to this width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.scale_cache"))
    parser.add_argument("--reuse", nargs="*", default=[], metavar="SOLVER", help="figures from an earlier run in --work")
    parser.add_argument("--regime", action="store_true", help="measure which regime real SAEs resemble instead")
    parser.add_argument("--skip-seeds", action="store_true", help="--regime without training the two-seed pair (minutes)")
    args = parser.parse_args()
    regime(args) if args.regime else sweep(args)


if __name__ == "__main__":
    main()
