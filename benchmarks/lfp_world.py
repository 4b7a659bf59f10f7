"""LFP parts 1 and 2 end to end on the embedded world, several seeds: time per step and the
results table (tuned model, base model and the untrained Xavier baseline).

For each seed, ``run_lfp`` runs with the command line's defaults into a fresh folder: RLOO with
the VADER reward (or ``--recipe dpo`` on the world's preference pairs), the 2 most-changed MLP
layers, n / 2n dictionaries, 600 contrastive triples from test reviews (and, for DPO, 300
held-out preference triples), probes fitted on 70 % of the words (pairs) and judged on the
rest, the top-overlap features explained and labelled offline, every feature's attribution
to the reward, and the ablation of related and most attributed features against random ones.

    python benchmarks/lfp_world.py [--seeds 0 1 2] [--recipe rl|dpo|tr-dpo]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from dataclasses import replace

from sae_lens_match import world
from sae_lens_match.cli.inputs import feedback_data
from sae_lens_match.lfp.pipeline import LFPConfig, run_lfp
from sae_lens_match.report.tables import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", choices=["rl", "dpo", "tr-dpo"], default="rl")
    args = parser.parse_args()
    logging.getLogger("sae_lens_match").setLevel(logging.WARNING)
    model = world.model_dir()
    rows, preference_rows, timing = [], [], []
    for seed in args.seeds:
        default = LFPConfig()
        cfg = LFPConfig(recipe=args.recipe, seed=seed, model_name=world.WORLD_MODEL_NAME, dictionary=replace(default.dictionary, seed=seed), part2=replace(default.part2, seed=seed))
        data = feedback_data("world", cfg, 400, seed)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = run_lfp(model, data, out, cfg)
            total = time.perf_counter() - start
        timing.append({"seed": seed, **{k: round(v, 1) for k, v in summary["seconds"].items()}, "total": round(total, 1)})
        part2 = summary["part2"]
        for name in ("tuned", "base", "xavier"):
            r = part2[name]
            rows.append({
                "seed": seed, "model": name, "kendall_tau": r["kendall_tau"], "tau_ci": _ci(r["kendall_tau_ci"]), "kendall_p": r["kendall_p"],
                "sign_pos": r["sign_accuracy_positive"], "sign_neg": r["sign_accuracy_negative"], "n_test_words": r["n_words"],
            })
        for name in ("tuned", "base", "xavier") if part2.get("preference") else ():
            p = part2["preference"][name]
            preference_rows.append({"seed": seed, "model": name, "accuracy": p["accuracy"], "accuracy_ci": _ci(p["accuracy_ci"]), "n_test": p["n"]})
        ablation, frequency = part2["ablation"], part2["activation_frequency"]
        related = sum(bool(f["related"]) for f in part2["features"])
        print(f"seed {seed}: {related}/{len(part2['features'])} features labelled related; active above {frequency['threshold']:g}: related {_f(frequency['related'])}, average {_f(frequency['average'])}")
        for name in ("related", "top_overlap"):
            a = part2["attribution"][f"agreement_{name}"]
            if a["n_features"]:
                print(f"  attribution of the {a['n_features']} {name} features: mean percentile {a['mean_percentile']:.2f} (chance 0.50), {a['top_overlap']} among the most attributed (chance {a['top_overlap_expected']:.1f})")
        for kind in [k for k, v in (ablation or {}).items() if isinstance(v, dict)]:
            a = ablation[kind]
            print(f"  zeroing {a['n_features']} {kind}: reward {a['reward_before']:+.3f} -> {a['reward_after']:+.3f}, drop {a['drop']:+.3f} {_ci(a['drop_ci'])}")
        diff = summary.get("model_diff", {})
        for layer, d in diff.items():
            print(f"  layer {layer}: {d['fraction_changed']:.1%} changed (seed control {d['control_fraction_changed']:.1%}); related {d['related_changed']}/{d['n_related']}, attributed {d['attributed_changed']}/{d['n_attributed']} among them")
    print()
    print(format_table(timing, list(timing[0])))
    print()
    print(format_table(rows, list(rows[0])))
    if preference_rows:
        print()
        print(format_table(preference_rows, list(preference_rows[0])))
    for name in ("tuned", "base", "xavier"):
        taus = [r["kendall_tau"] for r in rows if r["model"] == name]
        spread = statistics.stdev(taus) if len(taus) > 1 else float("nan")
        print(f"{name:>6}: mean Kendall tau over seeds {statistics.fmean(taus):+.3f} (sd {spread:.3f})")


def _ci(ci) -> str:
    return "none" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _f(value) -> str:
    return "none" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
