"""Feature explanations and judgements: the types, the interfaces and top-activating contexts.

A feature is described by its top-activating contexts on a token set
(:func:`top_activating_contexts`). An :class:`Explainer` turns those into a text
:class:`Explanation`; a :class:`Judge` labels a matched pair of features ``SAME``, ``MAYBE``
or ``DIFFERENT`` (the paper's protocol). Every explanation and verdict names its ``source``:
``"llm:<model>"`` for a language model's answer, ``"heuristic:<rule>"`` for the offline
rules, so a heuristic label is never passed off as an LLM judgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import torch
from sae_lens import SAE

from sae_lens_match.sources.activations import check_sae_fits, hidden_states
from sae_lens_match.sources.tokens import TokenSet

Label = Literal["SAME", "MAYBE", "DIFFERENT"]
LABELS: tuple[Label, ...] = ("SAME", "MAYBE", "DIFFERENT")


@dataclass(frozen=True)
class Example:
    """One top-activating context of a feature.

    Attributes:
        row, position: where the maximum sits in the token set (``tokens[row, position]``).
        activation: the feature's activation there.
        tokens: the context window as strings; ``tokens[center]`` is the max-activating token.
        activations: the feature's activation on each window token (0 at BOS positions).
        token_ids: the window's token ids.
        center: index of the max-activating token in the window.
    """

    row: int
    position: int
    activation: float
    tokens: tuple[str, ...]
    activations: tuple[float, ...]
    token_ids: tuple[int, ...]
    center: int

    @property
    def token(self) -> str:
        """The max-activating token."""
        return self.tokens[self.center]

    def text(self, mark: tuple[str, str] = ("<<", ">>")) -> str:
        """The context as one string, the max-activating token between ``mark``s."""
        return "".join(f"{mark[0]}{t}{mark[1]}" if i == self.center else t for i, t in enumerate(self.tokens))


@dataclass(frozen=True)
class FeatureContexts:
    """A feature's top-activating contexts on a token set.

    Attributes:
        sae: which SAE (its hook name or a label).
        feature: the feature index.
        examples: up to ``k`` examples, highest activation first (empty if it never fired).
        frequency: fraction of evaluated positions where it fired.
        n_positions: number of evaluated positions.
    """

    sae: str
    feature: int
    examples: tuple[Example, ...]
    frequency: float
    n_positions: int

    @property
    def top_tokens(self) -> list[str]:
        """The max-activating token of each example."""
        return [e.token for e in self.examples]


@dataclass(frozen=True)
class Explanation:
    """A description of a feature and who made it (``"llm:<model>"`` or ``"heuristic:<rule>"``)."""

    text: str
    source: str


@dataclass(frozen=True)
class Verdict:
    """A judge's label for a pair of features.

    Attributes:
        label: ``SAME``, ``MAYBE``, ``DIFFERENT``, or ``None`` when no label could be had
            (unparseable answer, malformed response, no contexts); ``error`` then says why.
        source: ``"llm:<model>"`` or ``"heuristic:<rule>"``.
        reason: the judge's short justification.
        score: the heuristic's similarity score (``None`` for LLM judges).
        error: why there is no label.
        raw: the raw answer text, when there was one.
    """

    label: Label | None
    source: str
    reason: str = ""
    score: float | None = None
    error: str | None = None
    raw: str | None = None


@runtime_checkable
class Explainer(Protocol):
    """Turns a feature's contexts into an :class:`Explanation`."""

    name: str

    def explain(self, contexts: FeatureContexts) -> Explanation: ...


@runtime_checkable
class Judge(Protocol):
    """Labels two features ``SAME`` / ``MAYBE`` / ``DIFFERENT``."""

    name: str
    needs_explanations: bool

    def judge(
        self,
        a: FeatureContexts,
        b: FeatureContexts,
        explanation_a: Explanation | None = None,
        explanation_b: Explanation | None = None,
    ) -> Verdict: ...


def top_activating_contexts(
    data: TokenSet,
    sae: SAE,
    features: Sequence[int],
    *,
    k: int = 10,
    left: int = 8,
    right: int = 2,
    label: str | None = None,
) -> list[FeatureContexts]:
    """The ``k`` highest-activating positions of each feature on ``data``, with context windows.

    Streams over ``data`` once; BOS positions are never chosen (and show activation 0).

    Args:
        data: model and tokens; ``sae`` reads its ``cfg.metadata.hook_name``.
        sae: the SAE.
        features: feature indices to collect.
        k: examples per feature.
        left, right: context tokens before / after the max-activating token.
        label: name for the SAE in the result (default: its hook name).

    Returns:
        One :class:`FeatureContexts` per entry of ``features``, in that order.
    """
    feats = torch.as_tensor(list(features), dtype=torch.long)
    if feats.numel() and (feats.min() < 0 or feats.max() >= sae.cfg.d_sae):
        raise ValueError(f"feature indices must lie in [0, {sae.cfg.d_sae}).")
    if k < 1 or left < 0 or right < 0:
        raise ValueError("k must be >= 1 and left, right >= 0.")
    hook = data.sae_hook(sae)
    n_f = feats.numel()
    best_val = torch.full((0, n_f), float("-inf"))
    best_row = torch.zeros((0, n_f), dtype=torch.long)
    best_pos = torch.zeros((0, n_f), dtype=torch.long)
    best_win = torch.zeros((0, n_f, left + 1 + right))
    fired = torch.zeros(n_f, dtype=torch.float64)
    n_positions = 0
    row_offset = 0
    with torch.no_grad():
        for acts, mask in hidden_states(data, [hook], desc=f"top contexts {label or hook}"):
            x = acts[hook]
            check_sae_fits(sae, x.shape[-1], hook)
            f = sae.encode(x)[:, feats].float().cpu()  # [n, F]
            mask = mask.cpu()
            b, p = mask.shape
            full = torch.zeros(b, p, n_f)
            full[mask] = f
            fired += (f > 0).sum(0)
            n_positions += f.shape[0]
            score = full.masked_fill(~mask[..., None], float("-inf")).reshape(b * p, n_f)
            take = min(k, b * p)
            val, idx = score.topk(take, dim=0)  # [take, F]
            rows, pos = idx // p, idx % p
            padded = torch.nn.functional.pad(full, (0, 0, left, right))  # pad the position axis
            offsets = torch.arange(left + 1 + right)
            win = padded[rows[..., None], pos[..., None] + offsets, torch.arange(n_f)[None, :, None]]  # [take, F, W]
            best_val = torch.cat([best_val, val])
            best_row = torch.cat([best_row, rows + row_offset])
            best_pos = torch.cat([best_pos, pos])
            best_win = torch.cat([best_win, win])
            keep = best_val.topk(min(k, best_val.shape[0]), dim=0).indices
            gather = lambda t: t.gather(0, keep) if t.ndim == 2 else t.gather(0, keep[..., None].expand(-1, -1, t.shape[2]))  # noqa: E731
            best_val, best_row, best_pos, best_win = gather(best_val), gather(best_row), gather(best_pos), gather(best_win)
            row_offset += b
    decode = _token_decoder(data.model)
    out = []
    for j in range(n_f):
        examples = []
        for r in range(best_val.shape[0]):
            v = float(best_val[r, j])
            if not v > 0:
                continue  # never fired there (or BOS)
            row, pos = int(best_row[r, j]), int(best_pos[r, j])
            lo, hi = max(0, pos - left), min(data.tokens.shape[1], pos + right + 1)
            ids = tuple(int(t) for t in data.tokens[row, lo:hi])
            acts_w = tuple(float(a) for a in best_win[r, j, lo - (pos - left) : hi - (pos - left)])
            examples.append(Example(row, pos, v, tuple(decode(t) for t in ids), acts_w, ids, pos - lo))
        out.append(
            FeatureContexts(
                sae=label or hook, feature=int(feats[j]), examples=tuple(examples),
                frequency=float(fired[j] / max(n_positions, 1)), n_positions=n_positions,
            )
        )
    return out


def _token_decoder(model: Any):
    tokenizer = getattr(model, "tokenizer", None)
    cache: dict[int, str] = {}

    def decode(token_id: int) -> str:
        if token_id not in cache:
            cache[token_id] = tokenizer.decode([token_id]) if tokenizer is not None else f"<{token_id}>"
        return cache[token_id]

    return decode
