"""A tiny random HookedSAETransformer with SAEs planted so that the right matching is known.

SAE t (at ``blocks.t.hook_resid_post``) is an exact autoencoder: ``d_sae = 2 d_model``
features ``+u_k`` and ``-u_k`` for an orthonormal basis ``U``, ReLU codes
``relu(+-(x - mu) . u_k)``, so ``decode(encode(x)) = x``.

SAE t+1 is SAE t pushed through the least-squares affine fit ``x(t+1) ~ x(t) A + c`` of the
real (nonlinear) block, with its features shuffled by a known permutation: its decoder
rows are ``+-u_k A`` (in shuffled order), ``b_dec = mu A + c``, and its encoder inverts
that decoder, so it is an exact autoencoder of layer t+1 as well.

So ``decode_{t+1}(P encode_t(x(t))) = x(t) A + c`` exactly when ``P`` is the planted
matching: its explained variance is the fit's R^2, which beats layer drop (the identity is
one of the affine maps) and any wrong permutation (which scrambles the codes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens import HookedSAETransformer, StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformer_lens import HookedTransformerConfig

from sae_lens_match import permute

D_MODEL = 16
N_LAYERS = 3
VOCAB = 50
BOS = 0


def tiny_model(seed: int = 0) -> HookedSAETransformer:
    """A random 3-layer transformer (no tokenizer, offline), with sharpened logits so that
    its next-token distributions are far from uniform."""
    cfg = HookedTransformerConfig(
        d_model=D_MODEL, d_head=4, n_heads=4, n_layers=N_LAYERS, n_ctx=32, d_mlp=32, d_vocab=VOCAB,
        act_fn="gelu", device="cpu", seed=seed,
    )
    model = HookedSAETransformer(cfg).eval()
    with torch.no_grad():
        model.W_U.mul_(4.0)
    return model


def sampled_tokens(model: HookedSAETransformer, n_rows: int = 24, seq_len: int = 12, seed: int = 0) -> torch.Tensor:
    """Rows ``[BOS, t_1, ...]`` sampled from ``model`` itself (no other BOS).

    On its own samples the clean model minimises the expected loss (Gibbs' inequality), so
    any replacement of a hidden state raises the loss in expectation: delta loss measures
    how far the replacement moves the model, not noise around a random model's flat loss.
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.full((n_rows, 1), BOS)
    with torch.no_grad():
        for _ in range(seq_len - 1):
            logits = model(t)[:, -1].double()
            logits[:, BOS] = float("-inf")
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
            t = torch.cat([t, nxt], 1)
    return t


def exact_sae(decoder: torch.Tensor, b_dec: torch.Tensor, hook: str) -> StandardSAE:
    """A ReLU SAE with features ``+decoder[k]`` and ``-decoder[k]`` that reconstructs exactly.

    ``decoder`` is ``[d, d]`` invertible; codes are ``relu(+-(x - b_dec) decoder^-1)``.
    """
    d = decoder.shape[0]
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=2 * d, apply_b_dec_to_input=True, metadata=SAEMetadata(hook_name=hook)))
    inverse = torch.linalg.inv(decoder.double()).float()
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([decoder, -decoder]))
        sae.W_enc.copy_(torch.cat([inverse, -inverse], dim=1))
        sae.b_enc.zero_()
        sae.b_dec.copy_(b_dec)
    return sae


@dataclass
class Planted:
    model: HookedSAETransformer
    tokens: torch.Tensor  # [24, 12], sampled from the model
    sae_a: StandardSAE
    sae_b: StandardSAE
    truth: torch.Tensor  # [2 d_model]: A feature i <-> B feature truth[i]
    fit_r2: float  # explained variance of the affine fit on the non-BOS positions
    drop_r2: float  # explained variance of x_hat(t+1) = x(t)


def planted(layer: int = 0, seed: int = 0) -> Planted:
    """SAEs at ``blocks.{layer}`` and ``blocks.{layer+1}.hook_resid_post`` with a planted matching."""
    model = tiny_model(seed)
    toks = sampled_tokens(model, seed=seed)
    hook_a, hook_b = f"blocks.{layer}.hook_resid_post", f"blocks.{layer + 1}.hook_resid_post"
    _, cache = model.run_with_cache(toks, names_filter=[hook_a, hook_b])
    keep = toks != BOS
    xa, xb = cache[hook_a][keep].double(), cache[hook_b][keep].double()
    fit = torch.linalg.lstsq(torch.cat([xa, torch.ones(len(xa), 1, dtype=xa.dtype)], 1), xb).solution
    A, c = fit[:-1], fit[-1]
    g = torch.Generator().manual_seed(seed + 1)
    U = torch.linalg.qr(torch.randn(D_MODEL, D_MODEL, generator=g, dtype=torch.float64)).Q
    mu = xa.mean(0)
    sae_a = exact_sae(U.float(), mu.float(), hook_a)
    unshuffled = exact_sae((U @ A).float(), (mu @ A + c).float(), hook_b)
    shuffle = torch.randperm(2 * D_MODEL, generator=g)  # B feature k is unshuffled feature shuffle[k]
    sae_b = permute(unshuffled, shuffle)
    truth = torch.empty_like(shuffle)
    truth[shuffle] = torch.arange(2 * D_MODEL)  # A feature i = unshuffled feature i -> B feature shuffle^-1[i]

    def ev(pred: torch.Tensor) -> float:
        r = pred - xb
        return float(1 - (r - r.mean(0)).pow(2).sum() / (xb - xb.mean(0)).pow(2).sum())

    pred = xa @ A + c
    return Planted(model, toks, sae_a, sae_b, truth, ev(pred), ev(xa))
