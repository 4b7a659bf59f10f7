"""Everything the package loads or reads, in one layer: the only code that knows the hub,
Hugging Face and TransformerLens loading.

- ``hub.py``: :class:`HubUnavailableError` and :func:`hub_call`, the one hub error path;
- ``saes.py``: SAELens releases and SAE directories;
- ``models.py``: model references and loading (one HF -> HookedTransformer path, one bridge path);
- ``hooks.py``: hook names (TransformerLens's spelling) and hook checks;
- ``tokens.py``: the one token packer and :class:`TokenSet` (a model and its token rows);
- ``activations.py``: hidden states and SAE features, streamed, in memory or on disk;
- ``texts.py``: text and preference datasets from the hub;
- ``vader.py``: the VADER lexicon;
- ``training.py``: the one helper that trains SAEs with SAELens.
"""

from sae_lens_match.sources.activations import collect_activations, feature_activations, hidden_states, load_activations, save_activations
from sae_lens_match.sources.hooks import check_hooks, hook_name, hook_width, is_residual
from sae_lens_match.sources.hub import HubUnavailableError, hub_call
from sae_lens_match.sources.models import MODEL_KINDS, ModelRef, hooked_from_hf, load_bridge, load_causal_lm, load_model, load_tokenizer, resolve_model
from sae_lens_match.sources.saes import default_device, load_pretrained, load_sae, release_stack
from sae_lens_match.sources.texts import load_preference_dataset, load_texts
from sae_lens_match.sources.tokens import TokenSet, load_tokens, pack_texts, token_dataset
from sae_lens_match.sources.training import save_inference_sae, seeded, train_sae, train_sae_on_model
from sae_lens_match.sources.vader import vader_lexicon

__all__ = [
    "MODEL_KINDS",
    "HubUnavailableError",
    "ModelRef",
    "TokenSet",
    "check_hooks",
    "collect_activations",
    "default_device",
    "feature_activations",
    "hidden_states",
    "hook_name",
    "hook_width",
    "hooked_from_hf",
    "hub_call",
    "is_residual",
    "load_activations",
    "load_bridge",
    "load_causal_lm",
    "load_model",
    "load_preference_dataset",
    "load_pretrained",
    "load_sae",
    "load_texts",
    "load_tokenizer",
    "load_tokens",
    "pack_texts",
    "release_stack",
    "resolve_model",
    "save_activations",
    "save_inference_sae",
    "seeded",
    "token_dataset",
    "train_sae",
    "train_sae_on_model",
    "vader_lexicon",
]
