"""Command line: ``sae-lens-match match|demo|world|lfp|compare|evaluate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sae_lens_match.match import match_layers
from sae_lens_match.report import summarize, write_summary


def _weights(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights look like 'W_dec=1,W_enc=1,b_enc=1', got {text!r}") from None


def _add_match_options(p: argparse.ArgumentParser, out_default: Path | None = None) -> None:
    p.add_argument(
        "--out", type=Path, required=out_default is None, default=out_default,
        help="output directory (resumes if it holds finished pairs)",
    )
    p.add_argument("--no-fold", action="store_true", help="match raw weights instead of threshold-folded ones")
    p.add_argument("--weights", type=_weights, default=None, help="term weights, e.g. W_dec=1,W_enc=1,b_enc=1")
    p.add_argument("--solver", default="auto", help="assignment solver: auto, dense, ...")
    p.add_argument("--nonpositive-threshold", choices=["error", "keep"], default="error")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--max-cost", type=float, help="pairs above this cost count as unmatched")
    group.add_argument("--quantile", type=float, help="pairs above this cost quantile count as unmatched")


def run_match(specs: list, args: argparse.Namespace) -> list[dict]:
    """Match consecutive SAEs, write pair files and the summary, return the summary rows."""
    matchings = match_layers(
        specs,
        out_dir=args.out,
        fold=not args.no_fold,
        weights=args.weights,
        solver=args.solver,
        nonpositive_threshold=args.nonpositive_threshold,
    )
    rows = summarize(matchings, max_cost=args.max_cost, quantile=args.quantile)
    write_summary(args.out, rows, matchings)
    for r in rows:
        print(
            f"pair {r['pair']}: {r['source']} -> {r['target']}  mean {r['mean_cost']:.4g}  "
            f"median {r['median_cost']:.4g}  matched {r['fraction_below_threshold']:.1%}"
        )
    print(f"wrote {args.out}/summary.json, summary.csv, report.html, report.png and pair_*.safetensors")
    return rows


def _demo(args: argparse.Namespace) -> None:
    """SAE Match across the layers of the embedded world (or a planted synthetic stack)."""
    if args.synthetic:
        return _synthetic_demo(args)
    from sae_lens_match.world import build_world, hook_name, manifest

    root = build_world(seed=args.seed)
    n_layers = manifest(seed=args.seed)["config"]["n_layers"]
    specs = [root / "saes" / hook_name(args.hook, layer) for layer in range(n_layers)]
    print(f"embedded world {root}: {n_layers} JumpReLU SAEs at blocks.L.hook_{args.hook}")
    run_match(specs, args)


def _synthetic_demo(args: argparse.Namespace) -> None:
    from sae_lens_match.matching import Matching
    from sae_lens_match.synthetic import make_stack

    stack = make_stack(n_layers=args.layers, d_in=args.d_in, d_sae=args.d_sae, seed=args.seed)
    specs = []
    for layer, sae in enumerate(stack.saes):
        path = args.out / "saes" / f"layer_{layer}"
        sae.save_model(path)
        specs.append(path)
    print(f"synthetic stack of {args.layers} JumpReLU SAEs (d_in={args.d_in}, d_sae={args.d_sae}) in {args.out}/saes")
    run_match(specs, args)
    for layer in range(args.layers - 1):
        m = Matching.load(args.out / f"pair_{layer:03d}.safetensors")
        print(f"pair {layer}: accuracy on persisting features vs planted truth {stack.accuracy(m, layer):.1%}")


def _world(args: argparse.Namespace) -> None:
    from sae_lens_match.world import build_world, world_dir

    if args.action == "path":
        print(world_dir(seed=args.seed, cache_dir=args.cache_dir))
    else:
        print(build_world(seed=args.seed, force=args.force, cache_dir=args.cache_dir))


def _lfp(args: argparse.Namespace) -> None:
    from sae_lens_match.lfp.pipeline import Part1Config, run_part1

    model = args.model or args.model_dir
    if model is None:
        from sae_lens_match.world import build_world

        model = build_world() / "model"
    cfg = Part1Config(recipe=args.recipe, finetune_steps=args.steps, top_k=args.top_k, seed=args.seed, dictionary_source=args.dictionary_source)
    summary = run_part1(model, args.out, cfg)
    for layer, d in summary["layers"].items():
        print(f"layer {layer} ({d['hook']}): mean max cosine {d['mean_max_cosine']:.3f}, assigned {d['mean_assigned_cosine']:.3f}")
    print(f"wrote {args.out}/summary.json, divergence.json, divergence.html, divergence.png, dictionaries/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sae-lens-match", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("match", help="match the features of consecutive SAEs")
    p.add_argument("saes", nargs="+", help="SAE directories (SAE.save_model) or release:sae_id")
    _add_match_options(p)

    p = sub.add_parser("demo", help="run SAE Match end to end on the embedded default (offline)")
    p.add_argument("--hook", choices=["resid_post", "mlp_out"], default="resid_post", help="which world SAEs to match")
    p.add_argument("--synthetic", action="store_true", help="use a planted synthetic stack instead, scored against its truth")
    p.add_argument("--layers", type=int, default=6, help="--synthetic: stack depth")
    p.add_argument("--d-in", type=int, default=64, help="--synthetic: SAE input width")
    p.add_argument("--d-sae", type=int, default=512, help="--synthetic: SAE width")
    p.add_argument("--seed", type=int, default=0, help="world or stack seed")
    _add_match_options(p, out_default=Path("results/demo"))

    p = sub.add_parser("world", help="the embedded default world (built on first use)")
    p.add_argument("action", choices=["build", "path"], help="build (or rebuild with --force) / print its directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if it is cached")
    p.add_argument("--cache-dir", type=Path, help="default: $SAE_LENS_MATCH_CACHE or ~/.cache/sae_lens_match")

    p = sub.add_parser("lfp", help="Learned Feedback Patterns part 1 on the embedded world (or --model-dir)")
    p.add_argument("--out", type=Path, default=Path("results/lfp"), help="output directory (resumes)")
    p.add_argument("--model-dir", type=Path, help="a Hugging Face checkpoint directory (default: the embedded world's)")
    p.add_argument("--model", help="a TransformerLens hub model instead, e.g. pythia-70m-deduped (needs the hub)")
    p.add_argument("--dictionary-source", choices=["activations", "model"], default="activations", help="train dictionaries on collected activations or on the model directly (SAELens runner)")
    p.add_argument("--recipe", choices=["rl", "dpo", "tr-dpo"], default="rl")
    p.add_argument("--steps", type=int, default=60, help="fine-tuning steps")
    p.add_argument("--top-k", type=int, default=2, help="how many most-changed MLP layers to study")
    p.add_argument("--seed", type=int, default=0)

    from sae_lens_match.eval_cli import add_eval_commands

    add_eval_commands(sub)  # compare, evaluate

    args = parser.parse_args(argv)
    try:
        if args.command == "match":
            run_match(args.saes, args)
        elif args.command == "demo":
            _demo(args)
        elif args.command == "lfp":
            _lfp(args)
        elif args.command == "world":
            _world(args)
        else:
            args.run(args)
    except (ValueError, RuntimeError) as error:
        print(f"sae-lens-match: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
