"""Feature flow on planted stacks: classification accuracy over noise levels and seeds.

Each stack (``make_flow_stack``: 4 layers, residual + attention + MLP JumpReLU SAEs) plants
every residual feature as translated (60 %), made by attention (15 %), made by the MLP (15 %) or
born (10 %; layer 0: no translated features). A copy's direction moves by ``noise`` (cosine to
its source about ``1 / sqrt(1 + noise^2)``). Printed per similarity and noise: accuracy of the
class (default threshold: the whitened random-rotation null at quantile 0.99), the recall of each class,
and the top-1 source accuracy of the non-born features, as mean and standard deviation over seeds.

    python benchmarks/flow_planted.py
    python benchmarks/flow_planted.py --d-in 128 --d-sae 1024 --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sae_lens_match.flow import CLASSES, FlowConfig, Node, build_flow_graph, make_flow_stack
from sae_lens_match.report import format_table

MODULE_OF = {"translated": "residual", "attention": "attention", "mlp": "mlp"}


def run(similarity: str, noise: float, seed: int, args: argparse.Namespace) -> dict[str, float]:
    planted = make_flow_stack(n_layers=args.layers, d_in=args.d_in, d_sae=args.d_sae, noise=noise, seed=seed)
    graph = build_flow_graph(planted.stack, FlowConfig(similarity=similarity, seed=seed), progress=False)
    got = [list(info.classes) for info in graph.layers]
    row = {"accuracy": planted.accuracy(got)}
    for cls in CLASSES:
        pairs = [(a, b) for g, w in zip(got, planted.classes) for a, b in zip(g, w) if b == cls]
        if pairs:
            row[f"recall_{cls}"] = sum(a == b for a, b in pairs) / len(pairs)
    hits, total = 0, 0
    for layer, info in enumerate(graph.layers):
        for i, cls in enumerate(planted.classes[layer]):
            if cls == "born":
                continue
            edges = [e for e in graph.in_edges(Node(layer, "residual", i)) if e.source.module == MODULE_OF[cls] and e.rank == 0]
            hits += bool(edges) and edges[0].source.feature == int(planted.sources[layer][i])
            total += 1
    row["source_accuracy"] = hits / total
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-in", type=int, default=64)
    p.add_argument("--d-sae", type=int, default=512)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 1.5, 2.0])
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    start = time.perf_counter()
    for similarity in ("cosine", "mse"):
        for noise in args.noise:
            runs = [run(similarity, noise, seed, args) for seed in range(args.seeds)]
            row = {"similarity": similarity, "noise": noise, "copy_cosine": 1 / (1 + noise**2) ** 0.5}
            for key in runs[0]:
                values = [r[key] for r in runs]
                row[key] = statistics.mean(values)
                if key == "accuracy":
                    row["accuracy_sd"] = statistics.stdev(values) if len(values) > 1 else float("nan")
            rows.append(row)
    columns = ["similarity", "noise", "copy_cosine", "accuracy", "accuracy_sd", *(f"recall_{c}" for c in CLASSES), "source_accuracy"]
    print(f"planted flow stacks: {args.layers} layers, d_in={args.d_in}, d_sae={args.d_sae}, {args.seeds} seeds; threshold: {FlowConfig().null} null, quantile {FlowConfig().null_quantile}")
    print(format_table(rows, columns, digits=3))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
