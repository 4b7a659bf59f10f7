"""The embedded default world: a tiny Pythia-architecture LM with JumpReLU SAEs, offline.

A data source that only the command line picks (and tests, benchmarks and tutorials); the
library never imports it. Everything is made by this package from a seed, on first use, into a
cache directory (``$SAE_LENS_MATCH_CACHE/world``, default ``~/.cache/sae_lens_match/world``):

- a movie-review corpus whose sentiment words, negations and intensifiers come from the
  VADER lexicon (``corpus``, ``reviews``, ``review_prefixes``, ``render_template``), and
  minimal preference pairs for DPO (``preference_pairs``);
- a byte-level BPE tokenizer and a 4-layer GPT-NeoX (Pythia architecture) trained on it
  (``load_model``: Hugging Face model, HookedTransformer, HookedSAETransformer or
  TransformerBridge);
- JumpReLU SAEs on ``hook_resid_post``, ``hook_mlp_out`` and ``hook_attn_out`` of every layer, trained with
  SAELens and saved in its format (``load_saes``, ``sae_dirs``).

``build_world(force=True)`` / ``rebuild()`` rebuild it.
"""

from sae_lens_match.world.build import (
    WORLD_FORMAT,
    WorldConfig,
    build_world,
    default_cache_dir,
    is_built,
    rebuild,
    world_dir,
)
from sae_lens_match.world.corpus import Review, corpus, make_review, review_prefixes, reviews
from sae_lens_match.world.lexicon import SentimentWord, vocabulary
from sae_lens_match.world.load import (
    load_model,
    load_saes,
    load_tokenizer,
    manifest,
    model_dir,
    sae_dirs,
    token_dataset,
    tokens,
    world_root,
)
from sae_lens_match.world.model import WORLD_MODEL_NAME
from sae_lens_match.world.preferences import preference_pairs
from sae_lens_match.world.saes import HOOK_KINDS, SAETrainingConfig
from sae_lens_match.world.templates import WordSpan, render_template

__all__ = [
    "HOOK_KINDS",
    "WORLD_FORMAT",
    "WORLD_MODEL_NAME",
    "Review",
    "SAETrainingConfig",
    "SentimentWord",
    "WordSpan",
    "WorldConfig",
    "build_world",
    "corpus",
    "default_cache_dir",
    "is_built",
    "load_model",
    "load_saes",
    "load_tokenizer",
    "make_review",
    "manifest",
    "model_dir",
    "preference_pairs",
    "rebuild",
    "render_template",
    "review_prefixes",
    "reviews",
    "sae_dirs",
    "token_dataset",
    "tokens",
    "vocabulary",
    "world_dir",
    "world_root",
]
