"""LFP part 2 (paper §3.3): activation deltas of contrastive triples, probes on them, and how
far the probe's feedback is from the true (VADER) feedback.

For a triple (x+, x0, x-) the *codes* ``A(x)`` are the concatenated feature activations of the
chosen layers' dictionaries at the swapped word's tokens (averaged over them). The probe's
data are ``(A(x+), +||A(x+) - A(x0)||)`` and ``(A(x-), -||A(x-) - A(x0)||)``; a linear probe
fitted on them predicts a word's implicit feedback from its codes, and its predictions per
word are compared with VADER's values: Kendall tau over *values per word* (the reference code
correlated sorted lists of strings, i.e. alphabetical ranks), and the share of positive and of
negative words given the right sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from sae_lens import SAE
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from sae_lens_match.lfp.contrastive import Triple
from sae_lens_match.sources.tokens import bos_id


def word_codes(model: Any, saes: Sequence[SAE], triples: Sequence[Triple], *, batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """``[n_triples, 3, sum d_sae]``: each version's codes at its swapped word.

    Args:
        model: a TransformerLens model with a fast tokenizer (character offsets); BOS is
            prepended to every text, as the pipeline's token rows begin with it.
        saes: one dictionary per chosen layer, each reading its ``cfg.metadata.hook_name``.
        batch_size: texts per forward pass (the results do not depend on it).
    """
    if not triples:
        raise ValueError("word_codes needs at least one triple.")
    tokenizer = model.tokenizer
    bos = bos_id(tokenizer)
    rows, positions = [], []
    for triple in triples:
        for k, text in enumerate(triple.texts):
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            start, end = triple.span(k)
            at_word = [1 + j for j, (s, e) in enumerate(encoded["offset_mapping"]) if s < end and start < e]
            if not at_word:
                raise ValueError(f"No token of {text!r} covers the swapped word {triple.words[k]!r}.")
            rows.append([bos, *encoded["input_ids"]])
            positions.append(at_word)
    codes = _mean_codes(model, saes, rows, positions, batch_size=batch_size, desc="contrastive codes", progress=progress)
    return codes.view(len(triples), 3, -1)


def text_codes(model: Any, saes: Sequence[SAE], texts: Sequence[str], *, batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """``[len(texts), sum d_sae]``: each text's codes averaged over all its tokens (BOS
    prepended and left out of the average; texts cut to the model's context), ``batch_size``
    texts per forward pass (the results do not depend on it)."""
    if not texts:
        raise ValueError("text_codes needs at least one text.")
    bos = bos_id(model.tokenizer)
    rows = []
    for i, text in enumerate(texts):
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][: model.cfg.n_ctx - 1]
        if not ids:
            raise ValueError(f"Text {i} has no tokens; preference triples need non-empty texts.")
        rows.append([bos, *ids])
    positions = [list(range(1, len(row))) for row in rows]
    return _mean_codes(model, saes, rows, positions, batch_size=batch_size, desc="preference codes", progress=progress)


@torch.no_grad()
def _mean_codes(
    model: Any, saes: Sequence[SAE], rows: list[list[int]], positions: list[list[int]], *, batch_size: int, desc: str, progress: bool
) -> torch.Tensor:
    """``[len(rows), sum d_sae]``: the codes of each token row (BOS first) averaged over its
    ``positions``, running the rows ``batch_size`` at a time.

    Rows are sorted by length (the output keeps the input order), right-padded with BOS and run
    without an attention mask. In a causal model a real token never sees the pads after it,
    and every row's positions still start at 0 (TransformerLens masks and shifts only *leading*
    pads, and only with a left-padding tokenizer), so each row's activations at its own
    positions are those of running it alone, up to float rounding.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    hooks = [sae.cfg.metadata.hook_name for sae in saes]
    device = next(model.parameters()).device
    pad = rows[0][0]  # BOS; any valid id would do
    out = torch.zeros(len(rows), sum(sae.cfg.d_sae for sae in saes))
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths together: little padding
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        batch = order[start : start + batch_size]
        width = max(len(rows[i]) for i in batch)
        ids = torch.tensor([rows[i] + [pad] * (width - len(rows[i])) for i in batch], device=device)
        _, cache = model.run_with_cache(ids, names_filter=hooks)
        counts = [len(positions[i]) for i in batch]
        per_sae = []
        for sae, hook in zip(saes, hooks):
            # every row's read positions in one encode, then averaged row by row
            acts = torch.cat([cache[hook][b, positions[i]] for b, i in enumerate(batch)])
            codes = sae.encode(acts.to(sae.W_dec.dtype)).float().cpu()
            per_sae.append(torch.stack([c.mean(0) for c in codes.split(counts)]))
        out[batch] = torch.cat(per_sae, dim=1)
    return out


def preference_dataset(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logistic probe's data from ``codes [n, 3, D]`` (chosen, neutral, rejected):
    ``(x [2n, D], labels [2n], deltas [2n])`` with the chosen codes labelled 1 and the rejected
    ones 0 (the sign of their deltas ``+||A(x+) - A(x0)||`` and ``-||A(x-) - A(x0)||``)."""
    if codes.ndim != 3 or codes.shape[1] != 3:
        raise ValueError(f"codes must be [n, 3, D], got {tuple(codes.shape)}.")
    chosen, neutral, rejected = codes[:, 0], codes[:, 1], codes[:, 2]
    n = len(codes)
    labels = torch.cat([torch.ones(n), torch.zeros(n)])
    deltas = torch.cat([(chosen - neutral).norm(dim=1), -(rejected - neutral).norm(dim=1)])
    return torch.cat([chosen, rejected]), labels, deltas


def delta_dataset(codes: torch.Tensor, triples: Sequence[Triple]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The probe's data from :func:`word_codes`: ``(x [2n, D], y [2n], words)`` with
    ``x = A(x+), y = +||A(x+) - A(x0)||`` and ``x = A(x-), y = -||A(x-) - A(x0)||``, and the word
    each row is about."""
    if codes.ndim != 3 or codes.shape[:2] != (len(triples), 3):
        raise ValueError(f"codes must be [n_triples={len(triples)}, 3, D], got {tuple(codes.shape)}.")
    positive, neutral, negative = codes[:, 0], codes[:, 1], codes[:, 2]
    x = torch.cat([positive, negative])
    y = torch.cat([(positive - neutral).norm(dim=1), -(negative - neutral).norm(dim=1)])
    words = [t.words[0] for t in triples] + [t.words[2] for t in triples]
    return x, y, words


@dataclass(frozen=True)
class LinearProbe:
    """``prediction = x @ weight + bias``."""

    weight: torch.Tensor
    bias: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ self.weight + self.bias


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, *, ridge: float = 0.0) -> LinearProbe:
    """Least squares of ``y`` on ``x`` (minimum-norm when underdetermined), with an optional ridge
    penalty ``ridge * ||weight||^2``; the bias is not penalised."""
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] < 2:
        raise ValueError(f"fit_linear_probe needs x [n >= 2, D] and y [n], got {tuple(x.shape)} and {tuple(y.shape)}.")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}.")
    x, y = x.double(), y.double()
    mean_x, mean_y = x.mean(0), y.mean()
    xc, yc = x - mean_x, y - mean_y
    if ridge > 0:
        weight = torch.linalg.solve(xc.T @ xc + ridge * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ yc)
    else:
        weight = torch.linalg.lstsq(xc, yc[:, None], driver="gelsd").solution[:, 0]
    return LinearProbe(weight, float(mean_y - mean_x @ weight))


def xavier_probe(dim: int, seed: int = 0) -> LinearProbe:
    """The paper's baseline: an untrained linear probe with Xavier-uniform weights and zero bias."""
    weight = torch.empty(1, dim, dtype=torch.float64)
    torch.nn.init.xavier_uniform_(weight, generator=torch.Generator().manual_seed(seed))
    return LinearProbe(weight[0], 0.0)


def per_word(values: torch.Tensor, words: Sequence[str]) -> dict[str, float]:
    """Mean of ``values`` per word."""
    sums: dict[str, list[float]] = {}
    for v, w in zip(values.tolist(), words):
        sums.setdefault(w, []).append(v)
    return {w: sum(vs) / len(vs) for w, vs in sums.items()}


def feedback_agreement(predicted: dict[str, float], true: dict[str, float], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """How far predicted feedback per word is from the true feedback, over the words both name.

    Returns:
        ``kendall_tau`` and ``kendall_p`` (scipy's, over the per-word *values*),
        ``sign_accuracy_positive`` / ``_negative`` (share of words with true value > 0 / < 0
        predicted with that sign), ``n_words``, and a 95 % bootstrap interval over words
        (``n_boot`` resamples) for each figure as ``<name>_ci``.
    """
    words = sorted(set(predicted) & set(true))
    if len(words) < 3:
        raise ValueError(f"feedback_agreement needs at least 3 words with both values, got {len(words)}.")
    pred = torch.tensor([predicted[w] for w in words], dtype=torch.float64)
    truth = torch.tensor([true[w] for w in words], dtype=torch.float64)

    def figures(index: torch.Tensor) -> dict[str, float]:
        p, t = pred[index], truth[index]
        tau, p_value = kendalltau(p.numpy(), t.numpy())
        pos, neg = t > 0, t < 0
        return {
            "kendall_tau": float(tau),
            "kendall_p": float(p_value),
            "sign_accuracy_positive": float((p[pos] > 0).double().mean()) if pos.any() else math.nan,
            "sign_accuracy_negative": float((p[neg] < 0).double().mean()) if neg.any() else math.nan,
        }

    result: dict[str, Any] = {**figures(torch.arange(len(words))), "n_words": len(words)}
    g = torch.Generator().manual_seed(seed)
    boots = [figures(torch.randint(len(words), (len(words),), generator=g)) for _ in range(n_boot)]
    for name in ("kendall_tau", "sign_accuracy_positive", "sign_accuracy_negative"):
        values = torch.tensor([b[name] for b in boots if not math.isnan(b[name])], dtype=torch.float64)
        result[f"{name}_ci"] = [float(values.quantile(0.025)), float(values.quantile(0.975))] if len(values) else None
    return result


def fit_logistic_probe(x: torch.Tensor, labels: torch.Tensor, *, ridge: float = 1.0, max_iter: int = 500) -> LinearProbe:
    """Logistic regression of ``labels`` (``[n]``, 1 = preferred, 0 = dispreferred) on ``x``
    (``[n, D]``), with an L2 penalty ``ridge * ||weight||^2 / 2`` (the bias is not penalised),
    fitted to convergence by L-BFGS in float64. The probe returns the logit."""
    if x.ndim != 2 or labels.shape != (x.shape[0],) or x.shape[0] < 2:
        raise ValueError(f"fit_logistic_probe needs x [n >= 2, D] and labels [n], got {tuple(x.shape)} and {tuple(labels.shape)}.")
    if not set(labels.unique().tolist()) <= {0.0, 1.0} or labels.unique().numel() < 2:
        raise ValueError("fit_logistic_probe needs labels of both classes, 0 and 1.")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}.")
    x, y = x.double(), labels.double()
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y, reduction="sum") + 0.5 * ridge * weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return LinearProbe(weight.detach(), float(bias.detach()))


def classification_accuracy(logits: torch.Tensor, labels: torch.Tensor, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Share of ``logits`` (``[n]``) on the side of 0 that ``labels`` (1 / 0) name, with a 95 %
    bootstrap interval over the inputs, and ``n``."""
    correct = ((logits > 0) == labels.bool()).double()
    g = torch.Generator().manual_seed(seed)
    boots = torch.stack([correct[torch.randint(len(correct), (len(correct),), generator=g)].mean() for _ in range(n_boot)])
    return {"accuracy": float(correct.mean()), "accuracy_ci": [float(boots.quantile(0.025)), float(boots.quantile(0.975))], "n": len(correct)}
