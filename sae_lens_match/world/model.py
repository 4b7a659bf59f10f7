"""The world language model's architecture: a tiny Pythia-style GPT-NeoX.

Its weights live on disk as a Hugging Face checkpoint (``save_pretrained``) next to the
tokenizer; :mod:`sae_lens_match.sources.models` loads it like any checkpoint (Hugging Face,
HookedTransformer, HookedSAETransformer, TransformerBridge: the same logits).
"""

from __future__ import annotations

from transformers import GPTNeoXConfig

WORLD_MODEL_NAME = "sae-lens-match-world"


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
