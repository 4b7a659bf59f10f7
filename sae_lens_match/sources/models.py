"""Language models: one way to name them, one way to load each kind.

A model reference is either a local checkpoint directory (anything ``save_pretrained``
wrote: it loads offline) or a TransformerLens model name or alias (``"pythia-70m-deduped"``,
``"EleutherAI/pythia-160m"``, ``"gpt-neo-125M"``, ``"gpt2"``: from the hub). From it:

- :func:`load_causal_lm`: the Hugging Face model (float32, eager attention) and its
  tokenizer, what TRL fine-tunes;
- :func:`hooked_from_hf`: a TransformerLens ``HookedTransformer`` / ``HookedSAETransformer``
  holding the weights of a Hugging Face model in hand (e.g. a fine-tuned copy), converted by
  TransformerLens's own config and weight converters: offline for a directory, with only the
  config from the hub for a name;
- :func:`load_bridge`: a ``TransformerBridge`` around the Hugging Face model;
- :func:`load_model`: any of the four kinds from a reference.

Hooked models are built without LayerNorm folding or weight centring unless asked, so their
activations and logits are the Hugging Face model's. Offline, a hub name raises
``HubUnavailableError`` naming the model; an unknown name raises ``ValueError`` with close names.
"""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, TypeVar

import torch
from transformer_lens import HookedTransformer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sae_lens_match.fingerprints import sha256_files
from sae_lens_match.sources.hub import hub_call

if TYPE_CHECKING:  # the bridge pulls in its whole architecture registry: import lazily
    from transformer_lens.model_bridge import TransformerBridge

T_Hooked = TypeVar("T_Hooked", bound=HookedTransformer)
ModelKind = Literal["hf", "hooked", "hooked_sae", "bridge"]
MODEL_KINDS: tuple[str, ...] = ("hf", "hooked", "hooked_sae", "bridge")
NO_PROCESSING: dict[str, bool] = dict(
    fold_ln=False,
    center_writing_weights=False,
    center_unembed=False,
    fold_value_biases=False,
    refactor_factored_attn_matrices=False,
)
"""TransformerLens weight processing that is turned off: the residual stream stays the HF model's."""


def processing_for(sae: Any) -> dict[str, Any]:
    """The weight processing under which ``sae`` was trained: TransformerLens's ``from_pretrained``
    defaults, overridden by the SAE's ``metadata.model_from_pretrained_kwargs`` (as SAELens loads it)."""
    defaults = {name: name != "refactor_factored_attn_matrices" for name in NO_PROCESSING}
    return {**defaults, **(getattr(sae.cfg.metadata, "model_from_pretrained_kwargs", None) or {})}


@dataclass(frozen=True)
class ModelRef:
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

    def fingerprint(self) -> dict[str, str]:
        """What identifies the weights: a checkpoint directory by its files' contents, a hub
        model by its id (a rerun loads the same cached snapshot)."""
        if self.kind == "local":
            return {"local_sha256": sha256_files(self.name)}
        return {"hub": self.name}

    @property
    def short_name(self) -> str:
        """What SAELens metadata calls the model: the directory's or the hub id's last part."""
        return Path(self.name).name if self.kind == "local" else self.name.split("/")[-1]


def resolve_model(model: str | Path | ModelRef) -> ModelRef:
    """Decide whether ``model`` is a local checkpoint directory or a TransformerLens hub model.

    Raises:
        ValueError: a ``Path`` without ``config.json``, or a name TransformerLens does not
            know (the message lists close names).
    """
    if isinstance(model, ModelRef):
        return model
    if (Path(model) / "config.json").is_file():
        return ModelRef("local", str(Path(model)), str(model))
    not_a_checkpoint = f"{str(model)!r} is not a checkpoint directory: it has no config.json (write one with save_pretrained)."
    if isinstance(model, Path):
        raise ValueError(not_a_checkpoint)
    from transformer_lens.loading_from_pretrained import OFFICIAL_MODEL_NAMES, get_official_model_name, make_model_alias_map

    try:
        return ModelRef("hub", get_official_model_name(model), model)
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


def _hub_kwargs(ref: ModelRef, cache_dir: str | Path | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"local_files_only": True} if ref.kind == "local" else {}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    return kwargs


def load_tokenizer(model: str | Path | ModelRef, *, cache_dir: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer, padding on the left (batched generation) with EOS where it has no pad token.

    ``model`` may also be a directory holding only a saved tokenizer.

    Raises:
        HubUnavailableError: a hub tokenizer that cannot be downloaded.
    """
    from transformers import AutoTokenizer

    is_dir = not isinstance(model, ModelRef) and Path(model).is_dir()
    ref = ModelRef("local", str(model), str(model)) if is_dir else resolve_model(model)
    with hub_call("tokenizer", ref.requested):
        tokenizer = AutoTokenizer.from_pretrained(ref.name, **_hub_kwargs(ref, cache_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(
    model: str | Path | ModelRef, *, device: str = "cpu", cache_dir: str | Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The Hugging Face causal LM (float32) and its tokenizer (what TRL fine-tunes), in eval mode.

    float32 because hub configs such as Pythia's say float16, which transformers 5 would keep;
    eager attention, so logits agree with TransformerLens (and the bridge, which forces eager)
    to float precision rather than to SDPA's reordering noise.

    Raises:
        HubUnavailableError: a hub model that cannot be downloaded (e.g. offline).
    """
    from transformers import AutoModelForCausalLM

    ref = resolve_model(model)
    with hub_call("model", ref.requested):
        hf_model = AutoModelForCausalLM.from_pretrained(
            ref.name, dtype=torch.float32, attn_implementation="eager", **_hub_kwargs(ref, cache_dir)
        )
    return hf_model.to(device).eval(), load_tokenizer(ref, cache_dir=cache_dir)


def hooked_from_hf(
    model: str | Path | ModelRef,
    hf_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    cls: type[T_Hooked] = HookedTransformer,  # type: ignore[assignment]
    device: str = "cpu",
    model_name: str | None = None,
    default_prepend_bos: bool | None = None,
    processing: Mapping[str, bool] | None = None,
    cache_dir: str | Path | None = None,
) -> T_Hooked:
    """A TransformerLens ``cls`` (``HookedTransformer`` / ``HookedSAETransformer``) holding
    ``hf_model``'s weights.

    Args:
        model: what ``hf_model`` is a version of: a checkpoint directory or a TransformerLens
            model name. It fixes the architecture and config; the weights are ``hf_model``'s.
        hf_model: the Hugging Face model whose weights to convert (float32 is safest).
        tokenizer: its tokenizer. TransformerLens may reload it by ``name_or_path``, so a hub
            tokenizer should be cached or saved locally.
        device: where the hooked model lives.
        model_name: ``cfg.model_name`` (what SAELens metadata records); default
            :attr:`ModelRef.short_name`.
        default_prepend_bos: override TransformerLens's per-architecture default.
        processing: TransformerLens weight processing (``fold_ln``, ...); default none, so the
            logits equal ``hf_model``'s up to float error.
        cache_dir: Hugging Face cache for the hub config.

    Raises:
        HubUnavailableError: ``model`` is a hub name and its config cannot be fetched.
        ValueError: unknown model name.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config, get_pretrained_state_dict

    ref = resolve_model(model)
    options = {**NO_PROCESSING, **(processing or {})}
    with warnings.catch_warnings():
        # HookedTransformer announces its removal in TransformerLens 4; sae-lens pins < 4.
        warnings.simplefilter("ignore", DeprecationWarning)
        if ref.kind == "local":
            # TransformerLens's converters accept a directory and read only it.
            cfg = get_pretrained_model_config(
                ref.name, hf_cfg=hf_model.config.to_dict(), fold_ln=options["fold_ln"], device=device,
                dtype=torch.float32, default_prepend_bos=default_prepend_bos,
            )
            state_dict = get_pretrained_state_dict(ref.name, cfg, hf_model, dtype=torch.float32)
            hooked = cls(cfg, tokenizer, move_to_device=False)
            hooked.load_and_process_state_dict(state_dict, **options)
            hooked.move_model_modules_to_device()
        else:
            kwargs: dict[str, Any] = {} if cache_dir is None else {"cache_dir": str(cache_dir)}
            if default_prepend_bos is not None:
                kwargs["default_prepend_bos"] = default_prepend_bos
            with hub_call("model", ref.requested):
                hooked = cls.from_pretrained(
                    ref.name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=torch.float32, **options, **kwargs
                )
    hooked.cfg.model_name = model_name or ref.short_name
    return hooked.eval()


def load_bridge(
    model: str | Path | ModelRef,
    *,
    hf_model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    device: str = "cpu",
) -> "TransformerBridge":
    """Wrap the Hugging Face model in a ``TransformerBridge``.

    ``boot_transformers`` gets both the model and the tokenizer, so it never asks the hub for
    them; for a directory it reads only the directory's ``config.json``.
    """
    from transformer_lens.model_bridge import TransformerBridge

    ref = resolve_model(model)
    if hf_model is None or tokenizer is None:
        loaded, loaded_tokenizer = load_causal_lm(ref, device=device)
        hf_model = loaded if hf_model is None else hf_model
        tokenizer = loaded_tokenizer if tokenizer is None else tokenizer
    with hub_call("model", ref.requested):
        bridge = TransformerBridge.boot_transformers(ref.name, device=device, hf_model=hf_model, tokenizer=tokenizer)
    return bridge.eval()


def load_model(model: str | Path | ModelRef, kind: ModelKind = "hooked", *, device: str = "cpu", **hooked_options: Any) -> Any:
    """Load ``model`` as one of four kinds.

    Args:
        model: a checkpoint directory or a TransformerLens model name.
        kind: ``"hf"`` (``AutoModelForCausalLM``, what TRL fine-tunes), ``"hooked"``
            (``HookedTransformer``), ``"hooked_sae"`` (``HookedSAETransformer``) or
            ``"bridge"`` (``TransformerBridge``).
        device: torch device.
        hooked_options: for the hooked kinds, options of :func:`hooked_from_hf`
            (``model_name``, ``default_prepend_bos``, ``processing``).

    Raises:
        ValueError: unknown ``kind`` or model name.
        HubUnavailableError: a hub model that cannot be downloaded.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    ref = resolve_model(model)
    hf_model, tokenizer = load_causal_lm(ref, device=device)
    if kind == "hf":
        return hf_model
    if kind == "bridge":
        return load_bridge(ref, hf_model=hf_model, tokenizer=tokenizer, device=device)
    if kind == "hooked_sae":
        from sae_lens import HookedSAETransformer

        return hooked_from_hf(ref, hf_model, tokenizer, cls=HookedSAETransformer, device=device, **hooked_options)
    return hooked_from_hf(ref, hf_model, tokenizer, device=device, **hooked_options)
