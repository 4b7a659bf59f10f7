"""Which language model LFP part 1 runs on: a local checkpoint or a hub model.

- A directory holding a ``config.json`` (written by ``save_pretrained``) is *local* and
  loads offline. GPT-NeoX checkpoints, such as the embedded world's, go through the
  world's loaders (:mod:`sae_lens_match.world.model`); other architectures through
  TransformerLens's generic converters, which accept a local directory.
- Any other name must be a TransformerLens model name or alias (``"pythia-70m-deduped"``,
  ``"EleutherAI/pythia-160m"``, ``"gpt-neo-125M"``, ``"gpt2"``). The Hugging Face model and
  tokenizer come from the hub, and the ``HookedTransformer`` is built by TransformerLens's
  own ``from_pretrained`` loader from the (fine-tuned) Hugging Face model in hand: the hub
  supplies only the config. Offline, or when the hub cannot be reached, this raises
  ``HubUnavailableError`` naming the model; an unknown name raises ``ValueError`` with
  close names.

Hooked models are built without LayerNorm folding or weight centring, so their
activations and logits are the Hugging Face model's.
"""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from transformer_lens import HookedTransformer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sae_lens_match.hub import hub_call

T_Hooked = TypeVar("T_Hooked", bound=HookedTransformer)
_NO_PROCESSING = dict(
    fold_ln=False,
    center_writing_weights=False,
    center_unembed=False,
    fold_value_biases=False,
    refactor_factored_attn_matrices=False,
)


@dataclass(frozen=True)
class ModelSource:
    """A resolved model reference.

    Attributes:
        kind: ``"local"`` (a checkpoint directory) or ``"hub"`` (a TransformerLens model).
        name: the directory, or TransformerLens's official hub id (``"EleutherAI/pythia-70m"``).
        requested: what the caller passed, for messages.
    """

    kind: Literal["local", "hub"]
    name: str
    requested: str

    @property
    def model_type(self) -> str | None:
        """``config.json``'s ``model_type`` for a local checkpoint (``"gpt_neox"``, ...)."""
        if self.kind != "local":
            return None
        return json.loads((Path(self.name) / "config.json").read_text()).get("model_type")


def resolve_model(model: str | Path | ModelSource) -> ModelSource:
    """Decide whether ``model`` is a local checkpoint directory or a TransformerLens hub model.

    Raises:
        ValueError: a ``Path`` without ``config.json``, or a name TransformerLens does not
            know (the message lists close names).
    """
    if isinstance(model, ModelSource):
        return model
    if (Path(model) / "config.json").is_file():
        return ModelSource("local", str(Path(model)), str(model))
    not_a_checkpoint = f"{str(model)!r} is not a checkpoint directory: it has no config.json (write one with save_pretrained)."
    if isinstance(model, Path):
        raise ValueError(not_a_checkpoint)
    from transformer_lens.loading_from_pretrained import OFFICIAL_MODEL_NAMES, get_official_model_name, make_model_alias_map

    try:
        return ModelSource("hub", get_official_model_name(model), model)
    except ValueError:
        if Path(model).exists():
            raise ValueError(not_a_checkpoint) from None
        known = list(OFFICIAL_MODEL_NAMES) + list(make_model_alias_map())
        close = difflib.get_close_matches(model, known, n=5, cutoff=0.5) or difflib.get_close_matches(model.lower(), known, n=5, cutoff=0.5)
        raise ValueError(
            f"Unknown model {model!r}: neither a checkpoint directory (with config.json) nor a "
            f"TransformerLens model name. Close names: {close or 'none'}. TransformerLens "
            f"{_tl_version()} loads only its official models by name; save any other Hugging Face "
            f"model with save_pretrained and pass the directory."
        ) from None


def _tl_version() -> str:
    from importlib.metadata import version

    return version("transformer-lens")


def load_causal_lm(
    model: str | Path | ModelSource, *, device: str = "cpu", cache_dir: str | Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The Hugging Face causal LM (float32) and its tokenizer (what TRL fine-tunes), in eval mode.

    Tokenizers without a pad token pad with EOS; padding is on the left (batched
    generation), as the world tokenizer's.

    Raises:
        HubUnavailableError: a hub model that cannot be downloaded (e.g. offline).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(model)
    if source.kind == "local" and source.model_type == "gpt_neox":
        from sae_lens_match.world.model import load_hf_model
        from sae_lens_match.world.tokenizer import load_tokenizer

        hf_model, tokenizer = load_hf_model(source.name, device), load_tokenizer(source.name)
    else:
        kwargs: dict[str, Any] = {"local_files_only": True} if source.kind == "local" else {}
        if cache_dir is not None:
            kwargs["cache_dir"] = str(cache_dir)
        with hub_call("model", source.requested):
            # float32 (hub configs such as Pythia's say float16, which transformers 5 would
            # keep); eager attention, so logits agree with TransformerLens to float precision.
            hf_model = AutoModelForCausalLM.from_pretrained(source.name, dtype=torch.float32, attn_implementation="eager", **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(source.name, **kwargs)
        hf_model = hf_model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return hf_model, tokenizer


def hooked_from_hf(
    model: str | Path | ModelSource,
    hf_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    cls: type[T_Hooked] = HookedTransformer,  # type: ignore[assignment]
    device: str = "cpu",
    cache_dir: str | Path | None = None,
) -> T_Hooked:
    """A TransformerLens ``cls`` (``HookedTransformer`` / ``HookedSAETransformer``) holding
    ``hf_model``'s weights, e.g. a fine-tuned copy of ``model``.

    Args:
        model: what ``hf_model`` is a version of: a checkpoint directory or a TransformerLens
            model name. It fixes the architecture and config; the weights are ``hf_model``'s.
        hf_model: the Hugging Face model whose weights to convert (float32 is safest).
        tokenizer: its tokenizer. TransformerLens may reload it by ``name_or_path`` with
            ``add_bos_token=True``, so a hub tokenizer should be saved locally or cached.
        device: where the hooked model lives.
        cache_dir: Hugging Face cache for the hub config (default: the usual cache).

    Returns:
        The hooked model in eval mode, unprocessed (no LayerNorm folding / centring): its
        logits equal ``hf_model``'s up to float error.

    Raises:
        HubUnavailableError: ``model`` is a hub name and its config cannot be fetched.
        ValueError: unknown model name.
    """
    source = resolve_model(model)
    with warnings.catch_warnings():
        # HookedTransformer announces its removal in TransformerLens 4; sae-lens pins < 4.
        warnings.simplefilter("ignore", DeprecationWarning)
        if source.kind == "local" and source.model_type == "gpt_neox":
            from sae_lens_match.world.model import load_hooked_model

            return load_hooked_model(source.name, cls, device, hf_model=hf_model, tokenizer=tokenizer)
        if source.kind == "local":
            return _hooked_from_local_dir(source.name, hf_model, tokenizer, cls, device)
        kwargs: dict[str, Any] = {} if cache_dir is None else {"cache_dir": str(cache_dir)}
        with hub_call("model", source.requested):
            hooked = cls.from_pretrained(
                source.name,
                hf_model=hf_model,
                tokenizer=tokenizer,
                device=device,
                dtype=torch.float32,
                **_NO_PROCESSING,
                **kwargs,
            )
    return hooked.eval()


def _hooked_from_local_dir(directory: str, hf_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cls: type[T_Hooked], device: str) -> T_Hooked:
    """TransformerLens's generic config and weight converters on a local checkpoint (offline)."""
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config, get_pretrained_state_dict

    cfg = get_pretrained_model_config(directory, hf_cfg=hf_model.config.to_dict(), fold_ln=False, device=device, dtype=torch.float32)
    state_dict = get_pretrained_state_dict(directory, cfg, hf_model, dtype=torch.float32)
    hooked = cls(cfg, tokenizer, move_to_device=False)
    hooked.load_and_process_state_dict(state_dict, **_NO_PROCESSING)
    hooked.move_model_modules_to_device()
    return hooked.eval()
