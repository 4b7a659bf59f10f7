"""The VADER sentiment lexicon, read offline from the installed ``vaderSentiment`` package."""

from __future__ import annotations

import functools
from importlib import resources


@functools.lru_cache(maxsize=1)
def vader_lexicon() -> dict[str, float]:
    """Token -> mean human valence in [-4, 4] (about 7.5k entries, including emoticons).

    Read from ``vader_lexicon.txt`` inside ``vaderSentiment``; NLTK's copy would need a download.
    """
    text = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text(encoding="utf-8")
    lexicon: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            lexicon[fields[0]] = float(fields[1])
    return lexicon
