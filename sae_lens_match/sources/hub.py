"""Clear errors for the real-scale path (hub models, SAE releases, datasets).

Offline, Hugging Face libraries raise ``LocalEntryNotFoundError`` / ``OSError`` /
connection errors from deep inside their stacks. ``hub_call`` turns those into one
``HubUnavailableError`` that names what was being loaded and points at the embedded
world, which needs no network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["HubUnavailableError", "hub_call", "hub_offline"]


class HubUnavailableError(RuntimeError):
    """A model, SAE release or dataset had to come from a hub that cannot be reached."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE``) asks for no network."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    try:
        from huggingface_hub import errors as hf_errors

        errors += [hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled]
    except ImportError:  # older huggingface_hub: OSError covers its errors
        pass
    try:
        from datasets.exceptions import DatasetNotFoundError

        errors.append(DatasetNotFoundError)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def hub_call(kind: str, name: str) -> Iterator[None]:
    """Run a hub download, re-raising network failures as ``HubUnavailableError``.

    Args:
        kind: what is loaded, e.g. "model", "SAE release", "dataset".
        name: its hub name, e.g. "pythia-70m-deduped".
    """
    try:
        yield
    except _network_errors() as err:
        mode = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub could not be reached"
        detail = (str(err).strip().splitlines() or [""])[0].rstrip(".")  # full text stays in __cause__
        raise HubUnavailableError(
            f"Could not load {kind} {name!r} from the Hugging Face Hub ({mode}; "
            f"{type(err).__name__}: {detail}). The embedded default world "
            f"(sae-lens-match demo, or --world on the command line) needs no network."
        ) from err
