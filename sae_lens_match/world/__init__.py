"""The embedded default world: a tiny Pythia-architecture LM with JumpReLU SAEs, offline.

Everything is made by this package from a seed, on first use, into a cache directory
(``$SAE_LENS_MATCH_CACHE/world``, default ``~/.cache/sae_lens_match/world``):

- a movie-review corpus whose sentiment words, negations and intensifiers come from the
  VADER lexicon (``corpus``, ``reviews``, ``review_prefixes``, ``render_template``),
- a byte-level BPE tokenizer and a 4-layer GPT-NeoX (Pythia architecture) trained on it,
  loadable as Hugging Face model, HookedTransformer, HookedSAETransformer or
  TransformerBridge (``load_model``),
- JumpReLU SAEs on ``hook_resid_post`` and ``hook_mlp_out`` of every layer, trained with
  SAELens and saved in its format (``load_saes``).

``build_world(force=True)`` / ``rebuild()`` rebuild it. The same loaders take hub names
(``load_model("pythia-70m-deduped")``, ``load_saes(release="pythia-70m-deduped-res-sm")``,
``corpus(dataset="imdb")``) and raise ``HubUnavailableError`` offline.
"""

from sae_lens_match.world.build import (
    WORLD_FORMAT,
    WorldConfig,
    build_world,
    default_cache_dir,
    is_built,
    rebuild,
    weights_hash,
    world_dir,
)
from sae_lens_match.world.corpus import Review, corpus, make_review, review_prefixes, reviews
from sae_lens_match.hub import HubUnavailableError
from sae_lens_match.world.lexicon import SentimentWord, vader_lexicon, vocabulary
from sae_lens_match.world.load import (
    MODEL_KINDS,
    load_model,
    load_saes,
    load_tokenizer,
    manifest,
    token_dataset,
)
from sae_lens_match.world.model import WORLD_MODEL_NAME
from sae_lens_match.world.saes import SAETrainingConfig, hook_name
from sae_lens_match.world.templates import WordSpan, render_template

__all__ = [
    "MODEL_KINDS",
    "WORLD_FORMAT",
    "WORLD_MODEL_NAME",
    "HubUnavailableError",
    "Review",
    "SAETrainingConfig",
    "SentimentWord",
    "WordSpan",
    "WorldConfig",
    "build_world",
    "corpus",
    "default_cache_dir",
    "hook_name",
    "is_built",
    "load_model",
    "load_saes",
    "load_tokenizer",
    "make_review",
    "manifest",
    "rebuild",
    "render_template",
    "review_prefixes",
    "reviews",
    "token_dataset",
    "vader_lexicon",
    "vocabulary",
    "weights_hash",
    "world_dir",
]
