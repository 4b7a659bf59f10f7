"""One registry type for every extension point of the package.

Fold rules (keyed by SAE class), assignment solvers, matchers and rewards are each a
:class:`Registry`. All behave alike, in the spirit of SAELens's ``sae_lens.registry``:

- registering a key again with the *same* value is a no-op (so importing a plugin twice is
  harmless); with a *different* value it raises ``ValueError``;
- looking up an unknown key raises ``ValueError`` that lists the registered keys.
"""

from __future__ import annotations

from typing import Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _label(key: Hashable) -> str:
    return key.__name__ if isinstance(key, type) else str(key)


class Registry(Generic[K, V]):
    """A named mapping from keys to registered values.

    Args:
        what: what the values are, for messages ("matcher", "assignment solver", ...).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[K, V] = {}

    def register(self, key: K, value: V) -> V:
        """Register ``value`` under ``key`` and return what is registered there.

        Raises:
            ValueError: ``key`` is already registered with a different value.
        """
        if key in self._entries:
            if self._entries[key] is not value and self._entries[key] != value:
                raise ValueError(f"A {self.what} is already registered under {_label(key)!r}; choose another name.")
            return self._entries[key]
        self._entries[key] = value
        return value

    def get(self, key: K) -> V:
        """The value registered under ``key``.

        Raises:
            ValueError: nothing is registered under ``key``; the message lists what is.
        """
        try:
            return self._entries[key]
        except KeyError:
            raise ValueError(f"Unknown {self.what} {_label(key)!r}; registered: {self.names()}.") from None

    def remove(self, key: K) -> V:
        """Unregister ``key`` and return its value (``ValueError`` if it is not registered)."""
        value = self.get(key)
        del self._entries[key]
        return value

    def find(self, key: K) -> V | None:
        """The value registered under ``key``, or ``None``."""
        return self._entries.get(key)

    def names(self) -> list[str]:
        """The registered keys, as sorted labels."""
        return sorted(_label(k) for k in self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {self.names()})"
