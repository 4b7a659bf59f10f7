"""The world language model: a tiny Pythia-architecture GPT-NeoX, loaded three ways.

The weights live once on disk as a Hugging Face checkpoint (``save_pretrained``) next to
the tokenizer. From there they load as

- the Hugging Face ``GPTNeoXForCausalLM`` (what TRL fine-tunes),
- a TransformerLens ``HookedTransformer`` / ``HookedSAETransformer``, through
  TransformerLens's own config and weight converters, without the hub,
- a TransformerLens ``TransformerBridge`` wrapping the Hugging Face model.

All three give the same logits (tested to 1e-4).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.loading_from_pretrained import convert_hf_model_config
from transformer_lens.pretrained.weight_conversions.neox import convert_neox_weights
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

from sae_lens_match.world.tokenizer import load_tokenizer

if TYPE_CHECKING:  # the bridge pulls in its whole architecture registry: import lazily
    from transformer_lens.model_bridge import TransformerBridge

WORLD_MODEL_NAME = "sae-lens-match-world"
T_Hooked = TypeVar("T_Hooked", bound=HookedTransformer)


def model_config(
    vocab_size: int,
    n_layers: int = 4,
    d_model: int = 128,
    n_heads: int = 4,
    d_mlp: int = 512,
    n_ctx: int = 128,
    bos_token_id: int = 0,
) -> GPTNeoXConfig:
    """A Pythia-style ``GPTNeoXConfig``: parallel attention+MLP, rotary on 25% of each
    head, GELU, untied embeddings, no dropout."""
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        intermediate_size=d_mlp,
        max_position_embeddings=n_ctx,
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        tie_word_embeddings=False,
        bos_token_id=bos_token_id,
        eos_token_id=bos_token_id,
    )


def load_hf_model(model_dir: str | Path, device: str = "cpu") -> GPTNeoXForCausalLM:
    """Load the saved checkpoint as a Hugging Face model in eval mode.

    Eager attention, so that its logits agree with the TransformerBridge (which forces
    eager) to float precision rather than to SDPA's ~1e-6 reordering noise.
    """
    model = GPTNeoXForCausalLM.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    )
    return model.to(device).eval()


def hooked_config(model_dir: str | Path, device: str = "cpu") -> HookedTransformerConfig:
    """TransformerLens's own conversion of the saved Hugging Face config (offline).

    ``default_prepend_bos`` is set to True (TransformerLens turns it off for GPT-NeoX)
    because the world model is trained on rows that begin with BOS.
    """
    cfg_dict = convert_hf_model_config(str(model_dir))
    cfg_dict.update(
        model_name=WORLD_MODEL_NAME,
        device=device,
        dtype=torch.float32,
        init_weights=False,
        default_prepend_bos=True,
    )
    return HookedTransformerConfig.from_dict(cfg_dict)


def load_hooked_model(
    model_dir: str | Path,
    cls: type[T_Hooked] = HookedTransformer,  # type: ignore[assignment]
    device: str = "cpu",
    hf_model: GPTNeoXForCausalLM | None = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> T_Hooked:
    """Load as ``cls`` (``HookedTransformer`` or ``HookedSAETransformer``) without the hub.

    Weights go through ``convert_neox_weights``, with no LayerNorm folding or weight
    centring, so the residual stream is exactly the Hugging Face model's and logits
    match it.
    """
    hf_model = hf_model if hf_model is not None else load_hf_model(model_dir)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_dir)
    cfg = hooked_config(model_dir, device)
    with warnings.catch_warnings():
        # HookedTransformer announces its removal in TransformerLens 4; sae-lens pins < 4.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = cls(cfg, tokenizer=tokenizer)
    state_dict = convert_neox_weights(hf_model, cfg)
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.eval()  # built on cfg.device already


def load_bridge_model(
    model_dir: str | Path,
    device: str = "cpu",
    hf_model: GPTNeoXForCausalLM | None = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> "TransformerBridge":
    """Wrap the Hugging Face model in a ``TransformerBridge``, offline.

    ``boot_transformers`` gets both ``hf_model`` and ``tokenizer`` so it never asks the
    hub; ``model_name`` is the local directory, whose ``config.json`` it reads.
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = hf_model if hf_model is not None else load_hf_model(model_dir, device)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_dir)
    bridge = TransformerBridge.boot_transformers(
        str(model_dir), device=device, hf_model=hf_model, tokenizer=tokenizer
    )
    return bridge.eval()
