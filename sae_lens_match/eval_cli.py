"""Command-line subcommands ``compare`` and ``evaluate`` (registered by :mod:`sae_lens_match.cli`).

- ``sae-lens-match compare``: every matcher on the same SAEs (and data), side by side:
  parameter MSE, agreement, co-activation on tokens, delta loss / explained variance of
  the hidden-state approximation, and optionally SAME/MAYBE/DIFFERENT judgements.
- ``sae-lens-match evaluate``: the paper's evaluations: layer pruning with the three
  baselines and the chosen matchers, and the parameter MSE curves (Fig. 3).

Data: ``--world`` uses the embedded world (its model, its SAEs when no SAE is named, its
corpus: evaluation tokens from the test split, tokens for data-based matchers from the
train split); otherwise ``--model NAME`` (a TransformerLens name, from the hub) with
``--tokens FILE`` (a ``[n_rows, seq_len]`` int tensor in a ``.pt`` or ``.safetensors`` file,
key ``tokens``). Without data, only the data-free parts run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE

from sae_lens_match.evaluation import TokenSet, compare_matchers, compute_matchings, layer_pruning, parameter_mse_curves
from sae_lens_match.evaluation.approximation import BASELINES
from sae_lens_match.evaluation.compare import DEFAULT_MATCHERS
from sae_lens_match.evaluation.data import pack_texts
from sae_lens_match.evaluation.tables import format_table, write_line_plots, write_rows


@dataclass
class Inputs:
    saes: list[SAE]
    data: TokenSet | None  # evaluation tokens
    match_data: TokenSet | None  # tokens for data-based matchers


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``compare`` and ``evaluate`` to the ``sae-lens-match`` parser."""
    p = sub.add_parser("compare", help="all matchers side by side on the same SAEs and data")
    _add_inputs(p, Path("results/compare"))
    p.add_argument("--judge", choices=["none", "heuristic", "llm"], default="none", help="judge matched pairs (heuristic: offline, not an LLM)")
    p.add_argument("--judge-features", type=int, default=20, help="pairs judged per layer pair and matcher")
    p.add_argument("--llm-base-url", default=None, help="OpenAI-compatible base URL (default: SAE_LENS_MATCH_LLM_BASE_URL / OPENAI_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="model name (default: SAE_LENS_MATCH_LLM_MODEL / OPENAI_MODEL)")
    p.set_defaults(run=run_compare)

    p = sub.add_parser("evaluate", help="layer pruning (delta loss, explained variance) with baselines, and parameter MSE curves")
    _add_inputs(p, Path("results/evaluate"))
    p.add_argument("--error-term", action="store_true", help="add SAE t+1's reconstruction error (use_error_term-style)")
    p.set_defaults(run=run_evaluate)


def _add_inputs(p: argparse.ArgumentParser, out: Path) -> None:
    p.add_argument("saes", nargs="*", help="SAE directories or release:sae_id, shallowest first (default with --world: the world's SAEs)")
    p.add_argument("--world", action="store_true", help="use the embedded world model, SAEs and corpus (offline)")
    p.add_argument("--model", default=None, help="TransformerLens model name for data (loaded from the hub)")
    p.add_argument("--tokens", type=Path, default=None, help="evaluation tokens: .pt or .safetensors [n_rows, seq_len]")
    p.add_argument("--match-tokens", type=Path, default=None, help="tokens for data-based matchers (default: --tokens)")
    p.add_argument("--n-texts", type=int, default=64, help="--world: reviews per split")
    p.add_argument("--world-hook", choices=["resid_post", "mlp_out"], default="resid_post", help="--world: which SAEs")
    p.add_argument("--bos-token-id", default="auto", help="'auto' (the tokenizer's), an id, or 'none' (evaluate every position)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--matchers", default=",".join(DEFAULT_MATCHERS), help="comma-separated registered matchers")
    p.add_argument("--no-fold", action="store_true", help="unfolded inference for the approximation")
    p.add_argument("--quantile", type=float, default=None, help="MSE-quantile rule: pairs above it keep their own decoder")
    p.add_argument("--out", type=Path, default=out)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 avoids contention on shared machines)")


def _bos(text: str) -> Any:
    if text == "auto":
        return "auto"
    if text.lower() == "none":
        return None
    return int(text)


def load_tokens(path: Path) -> torch.Tensor:
    """A ``[n_rows, seq_len]`` token tensor from a ``.pt`` or ``.safetensors`` (key ``tokens``) file."""
    if not path.exists():
        raise ValueError(f"Token file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if "tokens" not in tensors:
            raise ValueError(f"{path} holds {sorted(tensors)}, not 'tokens'.")
        return tensors["tokens"]
    value = torch.load(path, weights_only=True)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{path} holds a {type(value).__name__}, not a token tensor.")
    return value


def _inputs(args: argparse.Namespace) -> Inputs:
    from sae_lens_match.loading import load_sae

    if args.threads:
        torch.set_num_threads(args.threads)
    bos = _bos(args.bos_token_id)
    if args.world:
        if args.model or args.tokens:
            raise ValueError("--world brings its own model and tokens; drop --model/--tokens.")
        model, world_saes, eval_tokens, fit_tokens = world_inputs(args.n_texts, args.seed, hook=args.world_hook)
        saes = [load_sae(s) for s in args.saes] if args.saes else world_saes
        data = TokenSet(model, eval_tokens, bos_token_id=bos, batch_size=args.batch_size)
        match_data = TokenSet(model, fit_tokens, bos_token_id=bos, batch_size=args.batch_size)
        return Inputs(saes, data, match_data)
    if len(args.saes) < 2:
        raise ValueError("Name at least two SAEs (or use --world).")
    saes = [load_sae(s) for s in args.saes]
    if (args.model is None) != (args.tokens is None):
        raise ValueError("Data needs both --model and --tokens (or --world).")
    if args.model is None:
        return Inputs(saes, None, None)
    from sae_lens import HookedSAETransformer

    from sae_lens_match.errors import HubUnavailableError

    try:
        model = HookedSAETransformer.from_pretrained(args.model, device=str(saes[0].device))
    except OSError as err:
        raise HubUnavailableError(f"Could not load model {args.model!r} from the Hugging Face Hub: {err}. Use --world offline.") from err
    data = TokenSet(model, load_tokens(args.tokens), bos_token_id=bos, batch_size=args.batch_size)
    match_data = TokenSet(model, load_tokens(args.match_tokens), bos_token_id=bos, batch_size=args.batch_size) if args.match_tokens else data
    return Inputs(saes, data, match_data)


def world_inputs(
    n_texts: int, seed: int = 0, n_fit_texts: int | None = None, hook: str = "resid_post"
) -> tuple[Any, list[SAE], torch.Tensor, torch.Tensor]:
    """The embedded world: ``(model, saes, eval_tokens, fit_tokens)``.

    The model is the world's ``HookedSAETransformer``, the SAEs its JumpReLU SAEs at
    ``blocks.L.hook_<hook>`` of every layer. ``eval_tokens`` are ``n_texts`` test-split
    reviews, ``fit_tokens`` (for data-based matchers) ``n_fit_texts`` (default ``n_texts``)
    train-split reviews, packed into BOS-led rows of the model's context length. The world
    is built on first use (``sae_lens_match.world.build_world``).
    """
    try:
        from sae_lens_match import world
    except ImportError as err:  # pragma: no cover - depends on the world package being present
        raise RuntimeError(f"The embedded world is not available: {err}") from err
    model = world.load_model(kind="hooked_sae", seed=seed)
    saes = list(world.load_saes(hook=hook, seed=seed))
    eval_tokens = _tokenize(model, world.corpus(split="test", n=n_texts, seed=seed))
    fit_tokens = _tokenize(model, world.corpus(split="train", n=n_fit_texts or n_texts, seed=seed))
    return model, saes, eval_tokens, fit_tokens


def _tokenize(model: Any, texts: list[str]) -> torch.Tensor:
    """Pack texts into rows of the model's context length, each starting with BOS."""
    return pack_texts(model.tokenizer, texts, int(model.cfg.n_ctx))


def _matcher_names(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def run_compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``sae-lens-match compare``: print and write the side-by-side table."""
    inputs = _inputs(args)
    matchings = compute_matchings(inputs.saes, _matcher_names(args.matchers), data=inputs.match_data, skip_data_matchers=True)
    skipped = [m for m in _matcher_names(args.matchers) if m not in matchings]
    rows = compare_matchers(inputs.saes, matchings, data=inputs.data, fold=not args.no_fold, quantile=args.quantile, seed=args.seed)
    if args.judge != "none":
        if inputs.data is None:
            raise ValueError("--judge needs data (--world, or --model with --tokens).")
        _add_judgements(rows, inputs, matchings, args)
    columns = ["pair", "method", "mean_cost", "n_distinct_targets", "agreement", "matching_score", "random_matching_score", "correlation", "delta_loss", "explained_variance"]
    if args.judge != "none":
        columns += ["frac_same", "frac_maybe", "frac_different"]
    columns = [c for c in columns if any(c in r for r in rows)]
    print(format_table(rows, columns))
    if skipped:
        print(f"skipped data-based matchers without data: {skipped}")
    if args.judge == "heuristic":
        print("judgements are the offline context-overlap heuristic, not an LLM's labels")
    write_rows(args.out, "compare", rows)
    panels = [c for c in ("mean_cost", "matching_score", "delta_loss", "explained_variance") if any(c in r for r in rows)]
    write_line_plots(args.out / "compare.html", rows, x="pair", series="method", panels=panels, title="Matchers side by side")
    print(f"wrote {args.out}/compare.json, compare.csv, compare.html, compare.png")
    return rows


def _add_judgements(rows: list[dict[str, Any]], inputs: Inputs, matchings: dict, args: argparse.Namespace) -> None:
    from sae_lens_match.explain import ChatClient, ContextOverlapJudge, LLMExplainer, LLMJudge, TopTokensExplainer, judge_matching, summarize_verdicts

    if args.judge == "llm":
        client = ChatClient(args.llm_base_url, args.llm_model, cache_dir=args.out / "llm_cache")
        judge, explainer = LLMJudge(client), LLMExplainer(client)
    else:
        judge, explainer = ContextOverlapJudge(), TopTokensExplainer()
    by_key = {(r["pair"], r["method"]): r for r in rows}
    judged = []
    for name, ms in matchings.items():
        for i, m in enumerate(ms):
            verdicts = judge_matching(inputs.data, inputs.saes[i], inputs.saes[i + 1], m, judge, explainer=explainer, n_features=args.judge_features, seed=args.seed)
            judged += [{"pair": i, "method": name, **v} for v in verdicts]
            by_key[(i, name)].update(summarize_verdicts(verdicts))
    write_rows(args.out, "judgements", judged)


def run_evaluate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``sae-lens-match evaluate``: layer pruning table and parameter MSE curves."""
    inputs = _inputs(args)
    curves = parameter_mse_curves(inputs.saes)
    write_rows(args.out, "parameter_curves", curves)
    write_line_plots(args.out / "parameter_curves.html", curves, x="pair", series="variant", panels=["mean_mse"], facet="term", title="Folded parameter MSE per layer pair (paper Fig. 3)", log_y=["mean_mse"])
    print(format_table([r for r in curves if r["variant"] in ("vanilla", "matched", "folded+matched")], ["pair", "variant", "term", "mean_mse"]))
    if inputs.data is None:
        print("no data given (--world, or --model with --tokens): layer pruning skipped")
        print(f"wrote {args.out}/parameter_curves.json, .csv, .html, .png")
        return curves
    matchings = compute_matchings(inputs.saes, _matcher_names(args.matchers), data=inputs.match_data)
    rows = layer_pruning(inputs.data, inputs.saes, matchings, baselines=BASELINES, fold=not args.no_fold, quantile=args.quantile, error_term=args.error_term)
    write_rows(args.out, "layer_pruning", rows)
    write_line_plots(args.out / "layer_pruning.html", rows, x="pair", series="method", panels=["delta_loss", "explained_variance"], title="Hidden-state approximation per layer pair")
    print(format_table(rows, ["pair", "method", "delta_loss", "explained_variance", "clean_loss"]))
    print(f"wrote {args.out}/layer_pruning.{{json,csv,html,png}} and parameter_curves.{{json,csv,html,png}}")
    return rows
