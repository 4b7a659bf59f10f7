"""Hook names, in TransformerLens's own spelling, and the checks every hook user shares.

Names come from ``transformer_lens.utils.get_act_name`` (``("resid_post", 2)`` ->
``"blocks.2.hook_resid_post"``, ``("post", 2)`` -> ``"blocks.2.mlp.hook_post"``), so a
name this package writes is one TransformerLens and SAELens read.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Sequence

import torch
from transformer_lens.utils import get_act_name

_RESIDUAL = re.compile(r"^blocks\.\d+\.hook_resid_(pre|mid|post)$")
# Widths TransformerLens's config states, by the end of the hook name.
_WIDTH_FIELDS = {
    "hook_resid_pre": "d_model",
    "hook_resid_mid": "d_model",
    "hook_resid_post": "d_model",
    "hook_mlp_out": "d_model",
    "hook_attn_out": "d_model",
    "mlp.hook_pre": "d_mlp",
    "mlp.hook_post": "d_mlp",
}


def hook_name(kind: str, layer: int) -> str:
    """TransformerLens hook name of ``kind`` at ``layer``, e.g. ``("mlp_out", 1)`` -> ``"blocks.1.hook_mlp_out"``.

    Raises:
        ValueError: ``kind`` is a whole hook name rather than a kind, or ``layer`` is negative.
    """
    if "." in kind or kind.startswith("hook_") or layer < 0:
        raise ValueError(f"hook_name takes a kind such as 'resid_post' and a layer >= 0, got {kind!r}, {layer}.")
    return get_act_name(kind, layer)


def is_residual(name: str) -> bool:
    """True for the residual stream hooks ``blocks.L.hook_resid_{pre,mid,post}``."""
    return bool(_RESIDUAL.match(name))


def check_hooks(model: Any, names: Sequence[str | None], what: str = "hook") -> list[str]:
    """Return ``names`` if ``model`` has a hook point of each; otherwise raise naming the missing ones.

    Works on ``HookedTransformer``, ``HookedSAETransformer`` and ``TransformerBridge`` (their
    ``hook_dict`` includes the bridge's TransformerLens-style aliases).

    Raises:
        ValueError: no names, an empty name (an SAE without ``cfg.metadata.hook_name``), or a
            name the model lacks (with close names).
    """
    if not names:
        raise ValueError(f"No {what} names given.")
    available = list(getattr(model, "hook_dict", {}))
    out = []
    for name in names:
        if not name:
            raise ValueError(
                f"{what} has no hook name (an SAE's cfg.metadata.hook_name), so it is unknown where it reads "
                "the model; set it, e.g. sae.cfg.metadata.hook_name = 'blocks.3.hook_resid_post'."
            )
        if name not in available:
            close = difflib.get_close_matches(name, available, n=5, cutoff=0.6)
            raise ValueError(f"{what} {name!r} is not a hook of this {type(model).__name__} (close: {close}).")
        out.append(name)
    return out


def hook_width(model: Any, name: str) -> int:
    """The last dimension of the activations at hook ``name`` (``d_model``, ``d_mlp``, ...).

    Read from the model's config for the residual, attention-output and MLP hooks; any
    other hook costs one forward pass over two tokens.
    """
    check_hooks(model, [name])
    for suffix, field in _WIDTH_FIELDS.items():
        width = getattr(getattr(model, "cfg", None), field, None)
        if name.endswith(suffix) and isinstance(width, int):
            return width
    seen: dict[str, int] = {}

    def record(act: torch.Tensor, hook: Any) -> None:
        seen["width"] = int(act.shape[-1])

    tokens = torch.zeros(1, 2, dtype=torch.long, device=next(model.parameters()).device)
    with torch.no_grad():
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=[(name, record)])
    return seen["width"]
