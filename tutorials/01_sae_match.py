"""Tutorial 1: SAE Match in five steps, offline.

Run:  python tutorials/01_sae_match.py

We build a small stack of JumpReLU SAEs with planted ground truth (features that persist
between layers, appear and vanish, shuffled at every layer), then:
1. fold the thresholds into the weights and check nothing changed the reconstruction;
2. match two consecutive layers and compare with the planted truth;
3. mark high-cost pairs as "no match";
4. compose matchings into feature paths across the stack;
5. save and reload a matching.
With real SAEs, replace the stack by e.g.
``load_sae("gemma-scope-2b-pt-res-canonical:layer_12/width_16k/canonical")``.
"""

import tempfile
from pathlib import Path

import torch

from sae_lens_match import Matching, compose_all, feature_paths, fold, match, match_layers
from sae_lens_match.matching import make_stack

torch.manual_seed(0)
stack = make_stack(n_layers=5, d_in=64, d_sae=512, seed=0)
sae_0, sae_1 = stack.saes[0], stack.saes[1]

# 1. Folding: threshold -> 1, the decoder row carries the threshold's scale.
folded = fold(sae_0)
x = torch.randn(8, 64) * 2
with torch.no_grad():
    print("max |folded(x) - sae(x)|:", float((folded(x) - sae_0(x)).abs().max()))
    print("threshold before / after folding:", float(sae_0.threshold[0]), float(folded.threshold[0]))

# 2. Matching consecutive layers (exact linear assignment on folded parameters).
m = match(sae_0, sae_1)
print(f"layer 0 -> 1: mean cost {float(m.cost.mean()):.4g}, accuracy vs planted truth {stack.accuracy(m, 0):.1%}")

# 3. A bijection always pairs everything; a high cost means "no similar feature".
#    Features that vanish in the planted stack should be the expensive ones.
vanishing = stack.truth[0] < 0
print(f"median cost of persisting features {float(m.cost[~vanishing].median()):.4g}, of vanishing ones {float(m.cost[vanishing].median()):.4g}")
strict = m.with_unmatched(quantile=0.85)
print(f"after dropping the costliest 15 %: {int(strict.matched.sum())} of {m.d_sae_a} features matched")

# 4. Feature paths: compose layer-to-layer matchings, costs add up along the path.
steps = match_layers(stack.saes, progress=False)
paths = feature_paths(steps)
print("path of feature 7 (layer, index, cumulative cost):", [(l, i, round(c, 4)) for l, i, c in paths.path(7)])
print("composed 0 -> 4 equals paths.indices[-1]:", torch.equal(compose_all(steps).permutation, paths.indices[-1]))

# 5. Save / load (safetensors with JSON metadata naming both SAEs).
with tempfile.TemporaryDirectory() as tmp:
    m.save(Path(tmp) / "layer0_to_1.safetensors")
    again = Matching.load(Path(tmp) / "layer0_to_1.safetensors")
    print("reloaded:", torch.equal(again.permutation, m.permutation), again.target["hook_name"])
