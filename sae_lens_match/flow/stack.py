""":class:`FlowStack`: the SAEs of a model by layer and module, any of the side modules missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from sae_lens import SAE

from sae_lens_match.sources.saes import require_sae

Module = Literal["residual", "attention", "mlp"]
MODULES: tuple[Module, ...] = ("residual", "attention", "mlp")


@dataclass(frozen=True)
class FlowStack:
    """SAEs of consecutive layers: a residual SAE per layer, and optionally the attention-output
    and MLP-output SAEs of each layer.

    The residual SAE of layer ``L`` reads the stream after block ``L`` (e.g.
    ``blocks.L.hook_resid_post``); its candidate predecessors are the residual SAE of layer
    ``L-1``, the attention SAE of layer ``L`` and the MLP SAE of layer ``L``. A missing module
    (``None`` for the whole stack, or for one layer) is simply not a candidate.

    Attributes:
        residual: ``[n_layers]`` SAEs, shallowest first.
        attention, mlp: ``[n_layers]`` SAEs or ``None`` entries, or ``None``.

    Raises:
        ValueError: lengths differ from ``residual``, or the SAEs read different widths.
    """

    residual: Sequence[SAE]
    attention: Sequence[SAE | None] | None = None
    mlp: Sequence[SAE | None] | None = None

    def __post_init__(self) -> None:
        if not self.residual:
            raise ValueError("A flow stack needs at least one residual SAE.")
        n = len(self.residual)
        for name in ("attention", "mlp"):
            side = getattr(self, name)
            if side is not None and len(side) != n:
                raise ValueError(f"{name} has {len(side)} SAEs (or None entries) but residual has {n}; give one per layer.")
        widths = {}
        for module, layer, sae in self.items():
            require_sae(sae, f"{module} SAE of layer {layer}")
            widths[(module, layer)] = sae.cfg.d_in
        if len(set(widths.values())) > 1:
            raise ValueError(f"The stack's SAEs read different widths (d_in): {sorted(set(widths.values()))}, e.g. {dict(list(widths.items())[:4])}.")

    @property
    def n_layers(self) -> int:
        return len(self.residual)

    def sae(self, module: Module, layer: int) -> SAE | None:
        """The SAE of ``module`` at ``layer``, or ``None`` where there is none."""
        if module not in MODULES:
            raise ValueError(f"module must be one of {list(MODULES)}, got {module!r}.")
        if not 0 <= layer < self.n_layers:
            return None
        side = {"residual": self.residual, "attention": self.attention, "mlp": self.mlp}[module]
        return None if side is None else side[layer]

    def items(self) -> list[tuple[Module, int, SAE]]:
        """``(module, layer, sae)`` for every SAE present, by layer then module."""
        out = []
        for layer in range(self.n_layers):
            for module in MODULES:
                sae = self.sae(module, layer)
                if sae is not None:
                    out.append((module, layer, sae))
        return out

    def sources(self, layer: int) -> dict[Module, tuple[int, SAE]]:
        """The candidate predecessors of layer ``layer``'s residual features: module -> (its layer, SAE)."""
        out: dict[Module, tuple[int, SAE]] = {}
        for module, at in (("residual", layer - 1), ("attention", layer), ("mlp", layer)):
            sae = self.sae(module, at)
            if sae is not None:
                out[module] = (at, sae)
        return out

    def hook(self, module: Module, layer: int) -> str:
        """The hook name of an SAE of the stack (``ValueError`` where it is missing or has none)."""
        sae = self.sae(module, layer)
        if sae is None:
            raise ValueError(f"The stack has no {module} SAE at layer {layer}.")
        name = sae.cfg.metadata.hook_name
        if not name:
            raise ValueError(f"The {module} SAE of layer {layer} has no cfg.metadata.hook_name; set it to the hook it reads.")
        return name
