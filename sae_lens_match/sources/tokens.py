"""Token rows and the model they run through: one packer, one token set.

:func:`pack_texts` turns texts into equal rows that each begin with BOS, the layout SAELens
and TransformerLens feed a model; every data-based step of the package uses it.
:class:`TokenSet` pairs those rows with a TransformerLens model (``HookedTransformer``,
SAELens's ``HookedSAETransformer`` or ``TransformerBridge``) and says which positions count.
The BOS position carries a hidden state of a very different scale (an attention sink) that
SAEs reconstruct badly; the SAE Match paper excludes it. :attr:`TokenSet.bos_token_id` says
which token is BOS, and every position holding it is left out (packed rows with several
documents have one BOS per document).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, Union

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.fingerprints import sha256_json, sha256_tensors
from sae_lens_match.sources.hooks import check_hooks

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
        device = model_device(self.model)
        starts = range(0, self.n_rows, self.batch_size)
        for start in tqdm(starts, desc=desc, disable=not self.progress or desc is None, leave=False):
            yield self.tokens[start : start + self.batch_size].to(device)

    def sae_hook(self, sae: SAE, what: str = "SAE") -> str:
        """The model hook ``sae`` reads, checked to exist (and the SAE to sit on the model's device)."""
        label = f"{what} ({type(sae).__name__}, d_sae={sae.cfg.d_sae})"
        hook = check_hooks(self.model, [sae.cfg.metadata.hook_name], label)[0]
        device = model_device(self.model)
        if torch.device(sae.device).type != device.type:
            raise ValueError(f"{label} is on {sae.device} but the model is on {device}; move one of them (sae.to(device)).")
        return hook

    def subset(self, rows: slice) -> "TokenSet":
        """The same model and settings on ``tokens[rows]``."""
        return replace(self, tokens=self.tokens[rows])

    def fingerprint(self) -> str:
        """SHA-256 of the token rows and the BOS setting: what a result computed on them depends on."""
        return sha256_json([sha256_tensors({"tokens": self.tokens}), self.bos_token_id])


def model_device(model: Any) -> torch.device:
    """The device a TransformerLens model runs on."""
    device = getattr(getattr(model, "cfg", None), "device", None)
    if device is not None:
        return torch.device(device)
    return next(model.parameters()).device


def bos_id(tokenizer: Any) -> int:
    """The token that starts every row: the tokenizer's BOS, else its EOS (GPT-2, Pythia: the same token)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    bos = bos if bos is not None else getattr(tokenizer, "eos_token_id", None)
    if bos is None:
        raise ValueError("The tokenizer has neither a BOS nor an EOS token to start rows with; pass bos_token_id.")
    return int(bos)


def pack_texts(tokenizer: Any, texts: Sequence[str], seq_len: int, bos_token_id: int | None = None) -> torch.Tensor:
    """Tokenize ``texts`` into equal rows that each start with BOS (SAELens-style packing).

    Each text becomes ``[BOS, *ids]`` (BOS doubles as the end-of-text separator, as in
    Pythia); the texts are concatenated and cut into chunks of ``seq_len - 1`` tokens, and
    every chunk gets a BOS in front (the last partial chunk is dropped). Rows may hold
    several texts, separated by their BOS, which :class:`TokenSet` excludes like the first.

    Args:
        tokenizer: a Hugging Face tokenizer.
        texts: the texts, in order.
        seq_len: tokens per row, BOS included.
        bos_token_id: default: the tokenizer's BOS, else its EOS.

    Returns:
        ``[n_rows, seq_len]`` int64.
    """
    bos = bos_token_id if bos_token_id is not None else bos_id(tokenizer)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}.")
    if isinstance(texts, str) or not len(texts):
        raise ValueError(f"pack_texts needs a non-empty sequence of texts, got {texts!r:.60}.")
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream += [bos, *ids]
    n_rows = len(stream) // (seq_len - 1)
    if n_rows == 0:
        raise ValueError(f"{len(texts)} texts give {len(stream)} tokens, fewer than one row of {seq_len}; give more text.")
    body = torch.tensor(stream[: n_rows * (seq_len - 1)], dtype=torch.long).view(n_rows, seq_len - 1)
    return torch.cat([torch.full((n_rows, 1), bos, dtype=torch.long), body], dim=1)


def token_dataset(tokens: torch.Tensor) -> Any:
    """Token rows ``[n_rows, seq_len]`` as a ``datasets.Dataset`` with a ``tokens`` column, the form
    SAELens's ``LanguageModelSAETrainingRunner(override_dataset=...)`` reads (with
    ``is_dataset_tokenized=True, prepend_bos=False``: the rows begin with BOS already)."""
    import datasets

    return datasets.Dataset.from_dict({"tokens": torch.as_tensor(tokens).tolist()})


def load_tokens(path: str | Path) -> torch.Tensor:
    """A ``[n_rows, seq_len]`` token tensor from a ``.pt`` or ``.safetensors`` (key ``tokens``) file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Token file {path} does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if "tokens" not in tensors:
                raise ValueError(f"{path} holds {sorted(tensors)}, not 'tokens'.")
            value = tensors["tokens"]
        else:
            value = torch.load(path, weights_only=True)
    except ValueError:
        raise
    except Exception as error:  # torch.load and safetensors raise many types for a damaged file
        raise ValueError(f"Cannot read tokens from {path} ({type(error).__name__}: {error}); is it a .pt or .safetensors token file?") from None
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.dtype.is_floating_point or value.dtype == torch.bool:
        what = f"a {value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
        raise ValueError(f"{path} holds {what}, not token ids [n_rows, seq_len] (integers).")
    return value.long()
