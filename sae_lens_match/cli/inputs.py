"""Where the commands' data comes from: the embedded world by default, or what the user names.

This is the only place the library's functions meet the world: each command asks for SAEs,
tokens or feedback data, and gets the world's unless the user named a model, SAEs or files.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from sae_lens import SAE

from sae_lens_match import world
from sae_lens_match.cli.options import bos_token, positive_int
from sae_lens_match.lfp.contrastive import SwapWords, contrastive_triples, preference_triples
from sae_lens_match.lfp.pipeline import FeedbackData, LFPConfig, text_prefixes
from sae_lens_match.sources.models import load_model, processing_for
from sae_lens_match.sources.saes import load_sae
from sae_lens_match.sources.texts import load_preference_dataset, load_texts
from sae_lens_match.sources.tokens import TokenSet, load_tokens


@dataclass
class EvalInputs:
    """SAEs, evaluation tokens, and separate tokens for data-based matchers (never the same)."""

    saes: list[SAE]
    data: TokenSet | None
    fit_data: TokenSet | None


def add_eval_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("saes", nargs="*", help="SAE directories or release:sae_id, shallowest first (default with --world: the world's SAEs)")
    p.add_argument("--world", action="store_true", help="use the embedded world model, SAEs and corpus (offline)")
    p.add_argument("--model", default=None, help="TransformerLens model name for data (loaded from the hub)")
    p.add_argument("--tokens", type=Path, default=None, help="evaluation tokens: .pt or .safetensors [n_rows, seq_len]")
    p.add_argument("--match-tokens", type=Path, default=None, help="tokens for data-based matchers (default: the first half of --tokens rows; the second half is evaluated)")
    p.add_argument("--n-texts", type=positive_int, default=64, help="--world: reviews per split (test split evaluated, train split fitted)")
    p.add_argument("--world-hook", choices=list(world.HOOK_KINDS), default="resid_post", help="--world: which SAEs")
    p.add_argument("--bos-token-id", type=bos_token, default="auto", help="'auto' (the tokenizer's), an id, or 'none' (evaluate every position)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="token rows per forward pass (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="world seed, and the seed of random pairings and judged samples (default: 0)")


def eval_inputs(args: argparse.Namespace) -> EvalInputs:
    """The SAEs and token sets a ``compare`` / ``evaluate`` run works on."""
    bos = args.bos_token_id
    if args.world:
        if args.model or args.tokens:
            raise ValueError("--world brings its own model and tokens; drop --model/--tokens.")
        model = world.load_model("hooked_sae", seed=args.seed)
        saes = [load_sae(s) for s in args.saes] if args.saes else world.load_saes(args.world_hook, seed=args.seed)
        held_out, fit = world.tokens("test", args.n_texts, seed=args.seed), world.tokens("train", args.n_texts, seed=args.seed)
        return EvalInputs(saes, TokenSet(model, held_out, bos, args.batch_size), TokenSet(model, fit, bos, args.batch_size))
    if len(args.saes) < 2:
        raise ValueError("Name at least two SAEs (or use --world).")
    saes = [load_sae(s) for s in args.saes]
    if (args.model is None) != (args.tokens is None):
        raise ValueError("Data needs both --model and --tokens (or --world).")
    if args.model is None:
        return EvalInputs(saes, None, None)
    model = load_model(args.model, "hooked_sae", device=str(saes[0].device), processing=processing_for(saes[0]))
    tokens = load_tokens(args.tokens)
    if args.match_tokens is not None:
        fit = load_tokens(args.match_tokens)
    else:  # never fit a data-based matcher on the tokens it is judged on
        if len(tokens) < 2:
            raise ValueError(f"--tokens has {len(tokens)} row(s): too few to split into fitting and evaluation halves; give --match-tokens.")
        fit, tokens = tokens[: len(tokens) // 2], tokens[len(tokens) // 2 :]
    return EvalInputs(saes, TokenSet(model, tokens, bos, args.batch_size), TokenSet(model, fit, bos, args.batch_size))


def swap_words() -> dict[str, SwapWords]:
    """Part 2's replacement words: the world vocabulary's VADER adjectives and its neutral ones
    (they fit IMDb reviews as well as the world's)."""
    vocab = world.vocabulary()
    return {"adj": SwapWords(tuple(w.word for w in vocab.adjectives[1]), tuple(w.word for w in vocab.adjectives[-1]), vocab.neutral_adjectives)}


def feedback_data(data: str, cfg: LFPConfig, n_texts: int, seed: int, preferences: str = "hh", n_triples: int = 600) -> FeedbackData:
    """LFP data: ``"world"`` (offline: review prefixes, minimal preference pairs, reviews, and
    contrastive triples from test reviews, and for DPO / TR-DPO preference triples from held-out
    pairs) or ``"hub"`` (the paper's tasks, from the hub: IMDb prefixes, reviews and test-review
    triples for the VADER RL run; ``preferences`` (``"hh"``: Anthropic HH, ``"toxic"``:
    toxic-dpo) for DPO / TR-DPO, whose prompts with their chosen answers are also the
    dictionaries' texts, and whose held-out pairs give the preference triples)."""
    n_pairs = cfg.finetune_steps * cfg.finetune_batch_size
    neutral = swap_words()["adj"].neutral
    if data == "world":
        dpo = cfg.recipe != "rl"
        return FeedbackData(
            "world",
            prompts=world.review_prefixes(256, seed=seed, split="train"),
            preferences=world.preference_pairs(n_pairs, seed=seed) if dpo else None,
            texts=world.corpus("train", n_texts, seed),
            triples=contrastive_triples(world.corpus("test", n_triples, seed), swap_words(), seed=seed),
            preference_triples=preference_triples(world.preference_pairs(n_triples // 2, seed=seed, split="test"), neutral, seed=seed) if dpo else (),
        )
    if data == "hub" and cfg.recipe == "rl":
        texts = load_texts("imdb", n=max(n_texts, 256))
        triples = contrastive_triples(load_texts("imdb", split="test", n=n_triples), swap_words(), seed=seed)
        return FeedbackData("imdb", prompts=text_prefixes(texts[:256], seed=seed), preferences=None, texts=texts[:n_texts], triples=triples)
    if data == "hub":
        n_held = n_triples // 2
        pairs = load_preference_dataset(preferences, n=max(n_pairs, n_texts) + n_held)
        texts = [p + c for p, c in zip(pairs["prompt"][:n_texts], pairs["chosen"][:n_texts])]
        n_tune = min(n_pairs, len(pairs) - n_held)  # toxic-dpo has one split: its last pairs are held out
        held = pairs.select(range(len(pairs) - n_held, len(pairs)))
        return FeedbackData(
            preferences, prompts=[], preferences=pairs.select(range(n_tune)), texts=texts,
            preference_triples=preference_triples(held, neutral, seed=seed),
        )
    raise ValueError(f"Unknown LFP data {data!r}; choose 'world' or 'hub'.")
