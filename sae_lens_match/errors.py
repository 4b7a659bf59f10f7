"""Errors users can catch by name."""


class HubUnavailableError(RuntimeError):
    """A model, SAE release or dataset had to come from a hub that cannot be reached."""
