"""A model and the tokens to run it on: what every data-based evaluation and matcher needs.

All evaluations go through TransformerLens hooks (``run_with_hooks`` / ``run_with_cache``),
so they work on ``HookedTransformer``, SAELens's ``HookedSAETransformer`` and
``TransformerBridge`` alike. Two gotchas handled here:

- A ``TransformerBridge`` exposes ``blocks.L.hook_resid_post`` as an alias of its own
  ``blocks.L.hook_out``; the ``hook.name`` a hook function receives is the bridge's name,
  so nothing here keys on ``hook.name``.
- The BOS position carries a hidden state of a very different scale (an attention sink)
  that SAEs reconstruct badly; the paper excludes it. :attr:`TokenSet.bos_token_id` says
  which token is BOS, and every position holding it is left out (packed rows with several
  documents have one BOS per document).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence, Union

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

BosSpec = Union[int, None, Literal["auto"]]


@dataclass
class TokenSet:
    """A language model and a fixed set of token rows to evaluate it on.

    Attributes:
        model: a ``HookedTransformer``, ``HookedSAETransformer`` (without SAEs attached) or
            ``TransformerBridge``; anything with ``run_with_hooks``, ``run_with_cache`` and
            ``hook_dict``.
        tokens: ``[n_rows, seq_len]`` int64 token ids, unpadded rows of equal length.
        bos_token_id: the BOS id; positions holding it are excluded from every statistic and
            never replaced. ``"auto"`` takes ``model.tokenizer.bos_token_id`` and fails if the
            model has no tokenizer. ``None`` evaluates every position (no BOS handling).
        batch_size: rows per forward pass.
        progress: show tqdm progress bars.

    Raises:
        ValueError: bad token shapes, ``"auto"`` without a tokenizer, or rows that do not
            start with the BOS token (the paper's setting: every row starts with BOS).
    """

    model: Any
    tokens: torch.Tensor
    bos_token_id: BosSpec = "auto"
    batch_size: int = 8
    progress: bool = True

    def __post_init__(self) -> None:
        tokens = torch.as_tensor(self.tokens)
        if tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.shape[1] < 2:
            raise ValueError(f"tokens must be an integer tensor [n_rows, seq_len >= 2], got {tokens.dtype} {tuple(tokens.shape)}.")
        self.tokens = tokens.long()
        for method in ("run_with_hooks", "run_with_cache"):
            if not hasattr(self.model, method):
                raise TypeError(f"model must be a TransformerLens model (HookedTransformer or TransformerBridge); {type(self.model).__name__} has no {method}.")
        if getattr(self.model, "acts_to_saes", None):
            raise ValueError(
                f"The model has SAEs attached at {sorted(self.model.acts_to_saes)}; evaluations splice SAEs "
                "themselves and need the clean model. Call model.reset_saes() first."
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.bos_token_id == "auto":
            tokenizer = getattr(self.model, "tokenizer", None)
            bos = getattr(tokenizer, "bos_token_id", None)
            if bos is None:
                raise ValueError(
                    "bos_token_id='auto' needs a model with a tokenizer that has a BOS token; pass "
                    "bos_token_id=<id> explicitly, or bos_token_id=None to evaluate every position."
                )
            self.bos_token_id = int(bos)
        if self.bos_token_id is not None:
            starts = self.tokens[:, 0] == self.bos_token_id
            if not starts.all():
                row = int((~starts).nonzero()[0])
                raise ValueError(
                    f"Row {row} starts with token {int(self.tokens[row, 0])}, not BOS ({self.bos_token_id}). "
                    "Prepend BOS to every row (as SAELens/TransformerLens do), or pass bos_token_id=None "
                    "to evaluate every position."
                )

    @property
    def n_rows(self) -> int:
        return self.tokens.shape[0]

    def position_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[batch, seq]`` bool: the positions that are evaluated (every non-BOS position)."""
        if self.bos_token_id is None:
            return torch.ones_like(tokens, dtype=torch.bool)
        return tokens != self.bos_token_id

    def n_positions(self) -> int:
        """How many positions the statistics run over."""
        return int(self.position_mask(self.tokens).sum())

    def batches(self, desc: str | None = None) -> Iterator[torch.Tensor]:
        """Yield ``[<= batch_size, seq_len]`` token batches (on the model's device), in order."""
        device = _model_device(self.model)
        starts = range(0, self.n_rows, self.batch_size)
        for start in tqdm(starts, desc=desc, disable=not self.progress or desc is None, leave=False):
            yield self.tokens[start : start + self.batch_size].to(device)

    def check_hook(self, name: str | None, what: str = "SAE") -> str:
        """Return ``name`` if the model has a hook point of that name; else raise ``ValueError``."""
        if not name:
            raise ValueError(
                f"{what} has no hook_name (sae.cfg.metadata.hook_name), so it is unknown where it reads "
                "the model; set it, e.g. sae.cfg.metadata.hook_name = 'blocks.3.hook_resid_post'."
            )
        hooks = self.model.hook_dict
        if name not in hooks:
            close = [h for h in hooks if h.split(".")[-1] == name.split(".")[-1]][:5]
            raise ValueError(f"{what} reads hook {name!r}, which the model does not have (similar: {close}).")
        return name

    def sae_hook(self, sae: SAE, what: str = "SAE") -> str:
        """The model hook ``sae`` reads, checked to exist (and the SAE to sit on the model's device)."""
        label = f"{what} ({type(sae).__name__}, d_sae={sae.cfg.d_sae})"
        hook = self.check_hook(sae.cfg.metadata.hook_name, label)
        device = _model_device(self.model)
        if torch.device(sae.device).type != device.type:
            raise ValueError(f"{label} is on {sae.device} but the model is on {device}; move one of them (sae.to(device)).")
        return hook

    def hidden_states(self, hook_names: Sequence[str], desc: str | None = None) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Yield, per batch, the activations at ``hook_names`` on evaluated positions.

        Yields:
            ``(acts, mask)``: ``acts[name]`` is ``[n_positions_in_batch, d]`` (BOS positions
            removed, rows in (row, position) order); ``mask`` is the ``[batch, seq]`` position mask.
        """
        names = [self.check_hook(n, "hook") for n in dict.fromkeys(hook_names)]
        store: dict[str, torch.Tensor] = {}

        def make_hook(name: str):
            # closures, not hook.name: a TransformerBridge reports its own name for aliases
            def hook(act: torch.Tensor, hook: Any) -> None:
                store[name] = act.detach()

            return hook

        fwd_hooks = [(n, make_hook(n)) for n in names]
        with torch.inference_mode():
            for tokens in self.batches(desc):
                store.clear()
                self.model.run_with_hooks(tokens, return_type=None, fwd_hooks=fwd_hooks)
                mask = self.position_mask(tokens)
                yield {n: _flat(store[n], mask, n) for n in names}, mask


def _flat(act: torch.Tensor, mask: torch.Tensor, name: str) -> torch.Tensor:
    if act.ndim != 3 or act.shape[:2] != mask.shape:
        raise ValueError(f"Hook {name!r} gives activations of shape {tuple(act.shape)}; evaluations need [batch, seq, d] (e.g. hook_resid_post, hook_mlp_out).")
    return act[mask]


def _model_device(model: Any) -> torch.device:
    cfg = getattr(model, "cfg", None)
    device = getattr(cfg, "device", None)
    if device is not None:
        return torch.device(device)
    return next(model.parameters()).device


def check_sae_fits(sae: SAE, d_model: int, hook: str, what: str = "SAE") -> None:
    """Raise ``ValueError`` unless ``sae`` reads vectors of width ``d_model``."""
    if sae.cfg.d_in != d_model:
        raise ValueError(f"{what} has d_in={sae.cfg.d_in} but hook {hook!r} gives vectors of width {d_model}.")


def feature_activations(data: TokenSet, saes: Sequence[SAE], desc: str | None = None) -> Iterator[list[torch.Tensor]]:
    """Yield, per batch, each SAE's feature activations on the evaluated (non-BOS) positions.

    Each SAE encodes the activations at its own ``cfg.metadata.hook_name``, all from the same
    clean forward pass, so row ``k`` of every tensor is the same token.

    Yields:
        one ``[n_positions_in_batch, d_sae]`` tensor per SAE.
    """
    hooks = [data.sae_hook(sae, f"SAE {k}") for k, sae in enumerate(saes)]
    for acts, _ in data.hidden_states(hooks, desc=desc):
        out = []
        for sae, hook in zip(saes, hooks):
            x = acts[hook]
            check_sae_fits(sae, x.shape[-1], hook)
            out.append(sae.encode(x))
        yield out


def pack_texts(tokenizer: Any, texts: Sequence[str], seq_len: int, bos_token_id: int | None = None) -> torch.Tensor:
    """Tokenize ``texts`` into equal rows that each start with BOS (SAELens-style packing).

    Each text becomes ``[BOS, *ids]``; the texts are concatenated and cut into chunks of
    ``seq_len - 1`` tokens, and every chunk gets a BOS in front (the last partial chunk is
    dropped). Rows may hold several texts, separated by their BOS, which
    :class:`TokenSet` excludes like the first one.

    Returns:
        ``[n_rows, seq_len]`` int64.
    """
    bos = bos_token_id if bos_token_id is not None else getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise ValueError("pack_texts needs a BOS id: the tokenizer has none, pass bos_token_id.")
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}.")
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream += [bos, *ids]
    n_rows = len(stream) // (seq_len - 1)
    if n_rows == 0:
        raise ValueError(f"{len(texts)} texts give {len(stream)} tokens, fewer than one row of {seq_len}.")
    body = torch.tensor(stream[: n_rows * (seq_len - 1)], dtype=torch.long).view(n_rows, seq_len - 1)
    return torch.cat([torch.full((n_rows, 1), bos, dtype=torch.long), body], dim=1)
