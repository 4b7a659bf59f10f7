"""TR-DPO against DPO on the embedded world's preference pairs (GitHub issue #18), several seeds.

Every variant has the same budget (``LFPConfig``'s defaults: 60 steps, batch 16, learning rate
2e-5, beta 0.1) and, per seed, the same training pairs, initial model and data order, so the
comparison with DPO is paired by seed. Variants:

- ``dpo``: the reference is the base model throughout.
- ``soft_a0.6_tau4`` / ``soft_a0.6_tau16``: ``ref <- 0.6 * policy + 0.4 * ref`` every 4 / 16
  steps (the paper's alpha). The soft reference is a moving average of the policy that trails
  it by about ``tau / alpha`` steps: ~7 steps (15 updates) or ~27 steps (3 updates), i.e. a
  reference that stays close to the policy, and one that lags by about half of this short run.
  The paper's tau = 512 is longer than this whole run; scaled to 60 steps it lies between these.
- ``hard_tau16`` / ``hard_tau32``: ``ref <- policy`` every 16 / 32 steps (3 resets, or 1 halfway):
  a hard reset every few steps would leave the policy almost no room to move away from it.

Each run is ``run_lfp`` with the recipe (so the tuned model measured is the one LFP studies,
read from its ``tuned_model/`` folder); then, on held-out data the same for every run:
preference accuracy and reward margin of DPO's implicit reward with the *base* model as the
reference (200 test-split pairs), KL(policy || base) per token and the mean VADER reward of
completions sampled for 128 test-split review prefixes
(:mod:`~sae_lens_match.lfp.preference_eval`), and the LFP part-2 figures (VADER word probe's
Kendall tau, preference probe's held-out accuracy, both for the tuned model). Part 2's reward
attribution and ablation are skipped unless ``--ablation`` (they take about 4 of the 5 minutes
of a run on 2 cores); the probes, feature labels and model diffing still run.

Printed: per-seed rows, mean with a 95 % t-interval over seeds per variant, and each TR-DPO
variant's paired difference from DPO with its t-interval. Written under ``--out``:
``runs.{csv,json}``, ``summary.{csv,json}``, ``paired.{csv,json}``; each (variant, seed) is a
resumable stage under ``runs/``, so a rerun after a crash redoes only unfinished runs.

    OMP_NUM_THREADS=1 python benchmarks/tr_dpo_vs_dpo.py [--seeds 0 1 2] [--variants dpo hard_tau32 ...]
        [--out results/tr_dpo_vs_dpo] [--ablation] [--learning-rate 2e-4 --out results/tr_dpo_vs_dpo_lr2e-4]

Result (2-core machine, one thread; about 2-3 min per run without ``--ablation``): at the
default learning rate DPO hardly moves (0.0019 nats/token from the base model, margin 0.07):
every TR-DPO variant is DPO within +0.5 % of margin, and accuracy (0.9: the 10 % of pairs
with a negation are lost by all), VADER and the probe figures do not change. At
``--learning-rate 5e-4`` DPO saturates (training loss 0.07) and TR-DPO keeps learning: margin
+0.60 / +0.67 over DPO's 3.01 (hard tau 16 / soft tau 4, paired 95 % intervals
[+0.57, +0.63] / [+0.65, +0.70]) at +0.11 / +0.19 nats/token more KL to the base model, with
accuracy 1.0 for all and no change in VADER or the probe figures.

A run's folder is keyed on its whole config: a rerun into the same ``--out`` with another
``--learning-rate`` would replace the runs there, so give each budget its own ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from scipy import stats

from sae_lens_match import world
from sae_lens_match.atomic import write_json
from sae_lens_match.cli.inputs import feedback_data
from sae_lens_match.lfp.pipeline import LFPConfig, run_lfp
from sae_lens_match.lfp.preference_eval import completion_reward, kl_to_base, preference_scores
from sae_lens_match.report.tables import format_table, write_table
from sae_lens_match.sources.models import load_causal_lm
from sae_lens_match.stages import Stage

VARIANTS: dict[str, dict[str, Any]] = {
    "dpo": {"recipe": "dpo"},
    "soft_a0.6_tau4": {"recipe": "tr-dpo", "mixup_alpha": 0.6, "sync_steps": 4},
    "soft_a0.6_tau16": {"recipe": "tr-dpo", "mixup_alpha": 0.6, "sync_steps": 16},
    "hard_tau16": {"recipe": "tr-dpo", "mixup_alpha": 1.0, "sync_steps": 16},
    "hard_tau32": {"recipe": "tr-dpo", "mixup_alpha": 1.0, "sync_steps": 32},
}
METRICS = ("pref_acc", "margin", "kl", "vader", "probe_tau", "probe_pref_acc")
ABLATION_METRICS = ("drop_related", "drop_attributed", "drop_random")  # reward drop when zeroing those features (--ablation)
EVAL = {"pairs": 200, "pairs_seed": 0, "prompts": 128, "prompts_seed": 0, "max_new_tokens": 24, "sample_seed": 1234}


def config(variant: str, seed: int, ablation: bool, learning_rate: float | None = None) -> LFPConfig:
    default = LFPConfig()
    part2 = replace(default.part2, seed=seed, **({} if ablation else {"ablation_prompts": 0}))
    return LFPConfig(
        **VARIANTS[variant], seed=seed, model_name=world.WORLD_MODEL_NAME, learning_rate=learning_rate or default.learning_rate,
        dictionary=replace(default.dictionary, seed=seed), part2=part2,
    )


def run_one(variant: str, seed: int, out: Path, base, tokenizer, held_out, prompts, ablation: bool, learning_rate: float | None = None) -> dict[str, Any]:
    """One (variant, seed): ``run_lfp``, then the held-out measures; reused when done."""
    cfg = config(variant, seed, ablation, learning_rate)
    folder = out / "runs" / variant / (f"seed_{seed}_ablation" if ablation else f"seed_{seed}")  # neither replaces the other
    stage = Stage.of(folder, {"config": asdict(cfg), "eval": EVAL})
    if stage.done():
        return json.loads((stage.directory / "result.json").read_text())
    stage.start()  # keeps an interrupted run_lfp's finished steps
    start = time.perf_counter()
    summary = run_lfp(world.model_dir(), feedback_data("world", cfg, 400, seed), stage.directory / "lfp", cfg)
    lfp_seconds = time.perf_counter() - start
    tuned = load_causal_lm(stage.directory / "lfp" / "tuned_model")[0]
    scores = preference_scores(tuned, base, tokenizer, held_out, beta=cfg.dpo_beta)
    sampling = dict(max_new_tokens=EVAL["max_new_tokens"], seed=EVAL["sample_seed"])
    part2 = summary["part2"]
    log = json.loads((stage.directory / "lfp" / "tuned_model" / "finetune_log.json").read_text())
    train = [e for e in log if "rewards/accuracies" in e]
    result = {
        "variant": variant, "seed": seed, **{k: getattr(cfg, k) for k in ("recipe", "mixup_alpha", "sync_steps", "learning_rate")},
        "pref_acc": scores.accuracy, "margin": scores.margin,
        "kl": kl_to_base(tuned, base, tokenizer, prompts, **sampling),
        "vader": float(completion_reward(tuned, tokenizer, prompts, **sampling).mean()),
        "probe_tau": part2["tuned"]["kendall_tau"], "probe_pref_acc": part2["preference"]["tuned"]["accuracy"],
        "probe_pref_acc_base": part2["preference"]["base"]["accuracy"],
        **{f"drop_{k}": ((part2.get("ablation") or {}).get(k) or {}).get("drop") for k in ("related", "attributed", "random")},
        "top_layers": " ".join(map(str, summary["top_layers"])),
        "train_acc_last10": statistics.fmean(e["rewards/accuracies"] for e in train[-10:]),  # against the moving reference for TR-DPO
        "train_loss_last10": statistics.fmean(e["loss"] for e in train[-10:]),
        "lfp_seconds": round(lfp_seconds, 1), "eval_seconds": round(time.perf_counter() - start - lfp_seconds, 1),
    }
    shutil.rmtree(stage.directory / "lfp" / "activations", ignore_errors=True)  # 19 MB each, only needed to train the dictionaries
    write_json(stage.directory / "result.json", result)
    stage.finish()
    return result


def t_interval(values: list[float | None]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over seeds (NaN bounds with fewer than two values, all NaN if one is missing)."""
    if not values or any(v is None for v in values):
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _cell(mean: float, lo: float, hi: float) -> str:
    return f"{mean:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("results/tr_dpo_vs_dpo"))
    parser.add_argument("--ablation", action="store_true", help="also run part 2's reward attribution and ablation (about 4 min more per run)")
    parser.add_argument("--learning-rate", type=float, default=None, help="every variant's learning rate (default: LFPConfig's, 2e-5); give another --out")
    args = parser.parse_args()
    logging.getLogger("sae_lens_match").setLevel(logging.WARNING)
    if "dpo" not in args.variants:
        args.variants.insert(0, "dpo")  # the paired baseline
    args.out.mkdir(parents=True, exist_ok=True)

    base, tokenizer = load_causal_lm(world.model_dir())
    held_out = world.preference_pairs(EVAL["pairs"], seed=EVAL["pairs_seed"], split="test")
    prompts = world.review_prefixes(EVAL["prompts"], seed=EVAL["prompts_seed"], split="test")
    base_vader = float(completion_reward(base, tokenizer, prompts, max_new_tokens=EVAL["max_new_tokens"], seed=EVAL["sample_seed"]).mean())
    print(f"base model: mean VADER reward of {len(prompts)} sampled completions {base_vader:+.3f}; preference accuracy 0 and KL 0 by definition")

    metrics = METRICS + ABLATION_METRICS if args.ablation else METRICS
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            rows.append(run_one(variant, seed, args.out, base, tokenizer, held_out, prompts, args.ablation, args.learning_rate))
            r = rows[-1]
            print(f"{variant:>16} seed {seed}: " + "  ".join(f"{m} {r[m]:+.4g}" for m in METRICS) + f"  ({r['lfp_seconds']:.0f} s + {r['eval_seconds']:.0f} s)", flush=True)
    write_table(args.out, "runs", rows)

    summary, paired = [], []
    by = {(r["variant"], r["seed"]): r for r in rows}
    for variant in args.variants:
        runs = [by[(variant, s)] for s in args.seeds]
        summary.append({"variant": variant, "n_seeds": len(runs), **{m: t_interval([r[m] for r in runs]) for m in metrics}})
        if variant != "dpo":
            diffs = {m: t_interval([_minus(by[(variant, s)][m], by[("dpo", s)][m]) for s in args.seeds]) for m in metrics}
            paired.append({"variant": f"{variant} - dpo", "n_seeds": len(args.seeds), **diffs})
    flat = lambda table: [{"variant": t["variant"], "n_seeds": t["n_seeds"], **{f"{m}_{k}": v for m in metrics for k, v in zip(("mean", "lo", "hi"), t[m])}} for t in table]  # noqa: E731
    write_table(args.out, "summary", flat(summary))
    if paired:
        write_table(args.out, "paired", flat(paired))
    columns = ["variant", "n_seeds", *metrics]
    show = lambda table: [{**t, **{m: _cell(*t[m]) for m in metrics}} for t in table]  # noqa: E731
    print()
    print(format_table(rows, ["variant", "seed", *metrics, "probe_pref_acc_base", "top_layers", "train_acc_last10", "train_loss_last10", "lfp_seconds", "eval_seconds"]))
    print(f"\nmean [95 % t-interval over seeds]; base model VADER {base_vader:+.3f}")
    print(format_table(show(summary), columns))
    if paired:
        print("\npaired difference from DPO, same seeds [95 % t-interval]")
        print(format_table(show(paired), columns))


if __name__ == "__main__":
    main()
