"""Sparse linear connections between the embedded world's SAEs (issue #18), against a shuffled control
and the data-free partners of SAE Match and feature flow.

One forward pass over held-out world reviews collects the sufficient statistics of every module
pair of the world's stack (residual ``L-1`` -> residual ``L``, attention ``L`` -> residual ``L``,
MLP ``L`` -> residual ``L``, residual ``L-1`` -> MLP ``L``); the fits then run on them. Printed
per pair:

- ``linear``: the share of alive downstream features whose held-out explained variance passes
  the threshold, and ``ctrl_linear``, the same for the fit on shuffled pairs (upstream codes of
  another token);
- ``median_ev`` / ``ctrl_median_ev``: the median held-out explained variance;
- ``nonzero``: the mean number of nonzero upstream weights per downstream feature;
- ``sae_match`` (residual -> residual; ``sae_match_kept``: only the ``n_kept`` pairs SAE Match's
  default unmatched rule keeps) and ``flow`` (pairs into a residual SAE): how often the
  strongest learned upstream feature (largest ``|w| * std``) is SAE Match's partner (the inverse
  of its matching) or the flow graph's best predecessor in that module (cosine, whitened null),
  over the downstream features that have one; ``*_lin``: the same over linearly computed
  features only; ``chance`` = ``1 / d_a``.

``--sweep`` also refits from the same statistics with several penalties and ``k`` and prints,
per configuration, the same figures averaged over the pairs of each kind.

    OMP_NUM_THREADS=1 python benchmarks/connections_world.py
    OMP_NUM_THREADS=1 python benchmarks/connections_world.py --texts 800 --sweep
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sae_lens_match import DEFAULT_UNMATCHED, match, world
from sae_lens_match.flow import ConnectionsConfig, FlowStack, build_flow_graph, connection_tables, stack_agreement, stack_statistics
from sae_lens_match.report import format_table
from sae_lens_match.sources import TokenSet

SWEEP = [ConnectionsConfig(l1=l1) for l1 in (0.05, 0.1, 0.2)] + [ConnectionsConfig(sparsity="topk", k=k) for k in (1, 2, 4, 8, 16)]


def kind(row: dict) -> str:
    return f"{row['source_module']} -> {row['target_module']}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=400, help="held-out (test split) world reviews the statistics run over")
    p.add_argument("--batch-size", type=int, default=32, help="token rows per forward pass")
    p.add_argument("--sparsity", choices=["l1", "topk"], default=ConnectionsConfig.sparsity)
    p.add_argument("--l1", type=float, default=ConnectionsConfig.l1, help="lasso penalty, in correlation units")
    p.add_argument("--k", type=int, default=ConnectionsConfig.k, help="upstream features per downstream one for topk")
    p.add_argument("--threshold", type=float, default=ConnectionsConfig.threshold, help="held-out explained variance for 'linear'")
    p.add_argument("--seed", type=int, default=0, help="held-out split and shuffled control")
    p.add_argument("--sweep", action="store_true", help="also fit with several penalties and k from the same statistics")
    args = p.parse_args()
    torch.set_num_threads(1)
    config = ConnectionsConfig(sparsity=args.sparsity, l1=args.l1, k=args.k, threshold=args.threshold, seed=args.seed)

    start = time.perf_counter()
    stack = FlowStack(world.load_saes("resid_post"), attention=world.load_saes("attn_out"), mlp=world.load_saes("mlp_out"))
    model = world.load_model("hooked_sae")
    data = TokenSet(model, world.tokens("test", args.texts), batch_size=args.batch_size, progress=False)
    stats = stack_statistics(stack, data, config)
    t_pass = time.perf_counter() - start
    found = stats.fit(config)
    t_fit = time.perf_counter() - start - t_pass

    matchings = [match(stack.residual[layer - 1], stack.residual[layer]) for layer in range(1, stack.n_layers)]
    graph = build_flow_graph(stack, progress=False)
    rows, agreement = connection_tables(found, matchings, graph)
    by_pair = {r["pair"]: r for r in rows}
    for a in agreement:
        name = ("sae_match" if a["reference"] == "sae_match" else "flow") + ("_lin" if a["linear_only"] else "")
        by_pair[a["pair"]].update({name: a["fraction"], f"n_{name}": a["n_compared"]})
    # SAE Match's pairs that its default unmatched rule keeps (cost below half the random pairs' median)
    kept = [DEFAULT_UNMATCHED.apply(m) for m in matchings]
    for a in stack_agreement(found, kept):
        by_pair[a["pair"]].update({"sae_match_kept": a["fraction"], "n_kept": a["n_compared"]})

    print(f"world: {stack.n_layers} layers x residual/attention/mlp SAEs of {stack.residual[0].cfg.d_sae} features; "
          f"{stats.statistics.n[0]} training + {stats.statistics.n[1]} held-out tokens ({args.texts} test reviews)")
    print(f"config: {config.to_dict()}")
    print(f"data pass {t_pass:.0f} s, fits {t_fit:.0f} s")
    columns = ["pair", "n_alive", "linear", "ctrl_linear", "median_ev", "ctrl_median_ev", "nonzero", "sae_match", "sae_match_lin", "sae_match_kept",
               "n_kept", "flow", "flow_lin", "n_flow", "chance"]
    for r in rows:
        r.update(linear=r["fraction_linear"], ctrl_linear=r["control_fraction_linear"], median_ev=r["median_explained_variance"],
                 ctrl_median_ev=r["control_median_explained_variance"], nonzero=r["mean_nonzero"])
    print("\n== per pair (linear: held-out explained variance > %.2f)" % config.threshold)
    print(format_table(rows, columns, digits=3))

    print("\n== per kind of pair (mean over layers)")
    kinds = {}
    for r in rows:
        kinds.setdefault(kind(r), []).append(r)
    mean = lambda group, c: statistics.fmean(r[c] for r in group) if all(c in r for r in group) else None  # noqa: E731
    summary = [{"kind": k, "pairs": len(g), **{c: mean(g, c) for c in columns[2:] if c not in ("n_flow", "n_kept")}} for k, g in kinds.items()]
    print(format_table(summary, ["kind", "pairs", *[c for c in columns[2:] if c not in ("n_flow", "n_kept")]], digits=3))

    if args.sweep:
        print("\n== sweep: the same statistics, other penalties (mean over the pairs of each kind)")
        sweep_rows = []
        for c in SWEEP:
            fit = stats.fit(ConnectionsConfig(**{**c.to_dict(), "threshold": config.threshold, "seed": config.seed}))
            label = f"l1={c.l1}" if c.sparsity == "l1" else f"topk k={c.k}"
            for k, g in _by_kind(fit).items():
                sweep_rows.append({"config": label, "kind": k,
                                   "linear": statistics.fmean(x.fraction_linear() for x in g),
                                   "ctrl_linear": statistics.fmean(x.fraction_linear(control=True) for x in g),
                                   "median_ev": statistics.fmean(x.summary()["median_explained_variance"] for x in g),
                                   "nonzero": statistics.fmean(x.summary()["mean_nonzero"] for x in g)})
        print(format_table(sweep_rows, ["config", "kind", "linear", "ctrl_linear", "median_ev", "nonzero"], digits=3))
    print(f"\n({time.perf_counter() - start:.0f} s)")


def _by_kind(found: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for key, conn in found.items():
        out.setdefault(f"{key.source_module} -> {key.target_module}", []).append(conn)
    return out


if __name__ == "__main__":
    main()
