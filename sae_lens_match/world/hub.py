"""Re-export of :mod:`sae_lens_match.hub` (``hub_call`` lived here first)."""

from __future__ import annotations

from sae_lens_match.hub import HubUnavailableError, hub_call, hub_offline

__all__ = ["HubUnavailableError", "hub_call", "hub_offline"]
