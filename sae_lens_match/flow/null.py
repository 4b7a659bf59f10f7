"""The data-free threshold: the best score a feature reaches against a source module that has nothing to do with it.

Rule (the default of :class:`~sae_lens_match.flow.FlowConfig`): move the source SAE's features
by a Haar-random rotation (:func:`~sae_lens_match.flow.similarity.rotated`), score the
target's features against the moved copy exactly as against the real one, and take the
``null_quantile`` (default 0.99) of these top-1 scores as the threshold. By construction a
target feature unrelated to the module passes with probability about ``1 - null_quantile``:
that quantile is the false-positive rate of calling a feature translated or made by a module,
per module. The copy has the same ``d_in``, the same number of features and the same norms,
so the chance level, which grows with the module's width and shrinks with ``d_in``, is
matched; a fixed cosine cutoff adapts to neither.

Which rotation (``FlowConfig.null``):

- ``"whitened"`` (default) rotates the decoder rows in their own whitened frame, keeping their
  second-moment matrix. The SAEs of one model all concentrate in the few directions where the
  stream varies most, so even unrelated dictionaries of the same stream score well above an
  isotropic null. On the embedded world the isotropic null (99th percentile of the best
  cosine about 0.35) passes 99 % of residual features as translated *and* 78-91 % as made by
  the MLP, i.e. nearly everything would be a mix; the whitened null's 99th percentile is
  0.51-0.64. Keeping the anisotropy makes the null as similar to the real module as
  possible short of its specific alignments (see ``tests/flow/test_predecessors.py`` for a
  planted anisotropic stack).
- ``"isotropic"`` rotates the whole input space (the same SAE in other coordinates). Exact for
  isotropic dictionaries (planted stacks), where both nulls agree; too lenient on real ones.
"""

from __future__ import annotations

import torch
from sae_lens import SAE

from sae_lens_match.flow.config import FlowConfig
from sae_lens_match.flow.similarity import Vectors, feature_vectors, rotated, top_k


def null_scores(target: Vectors, source: SAE, config: FlowConfig, seed: int) -> torch.Tensor:
    """``[min(n_target, null_features)]`` float64: the top-1 scores of a seeded sample of target
    features against ``source`` randomly rotated (``config.null``)."""
    n = target.rows.shape[0]
    g = torch.Generator().manual_seed(seed)
    sample = torch.randperm(n, generator=g)[: config.null_features].sort().values if n > config.null_features else torch.arange(n)
    sample_dev = sample.to(target.rows.device)
    sub = Vectors(target.rows[sample_dev], None if target.sq is None else target.sq[sample_dev])
    best = top_k(sub, feature_vectors(rotated(source, seed, whiten=config.null == "whitened"), config), config, k=1)
    return best.scores[:, 0]


def null_threshold(target: Vectors, source: SAE, config: FlowConfig, seed: int) -> float:
    """The ``config.null_quantile`` of :func:`null_scores`."""
    return float(torch.quantile(null_scores(target, source, config, seed), config.null_quantile))
