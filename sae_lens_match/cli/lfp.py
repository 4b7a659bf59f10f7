"""``sae-lens-match lfp``: Learned Feedback Patterns, parts 1 (fine-tune, layers, activations,
dictionaries) and 2 (probes, validation, attribution, model diffing)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sae_lens_match import world
from sae_lens_match.cli.inputs import feedback_data
from sae_lens_match.cli.options import add_out, nonnegative_float, out_dir, positive_float, positive_int
from sae_lens_match.evaluation.explain import ChatClient, LLMExplainer
from sae_lens_match.lfp.pipeline import LFPConfig, run_lfp
from sae_lens_match.lfp.validation import LLMRelatedness
from sae_lens_match.sources.texts import PREFERENCE_DATASETS


def add_parsers(sub: argparse._SubParsersAction) -> None:
    default = LFPConfig()
    p = sub.add_parser("lfp", help="Learned Feedback Patterns, parts 1 and 2, on the embedded world (or --model)")
    add_out(p, Path("results/lfp"))
    p.add_argument("--model", help="a checkpoint directory or a TransformerLens hub model (e.g. pythia-70m-deduped); default: the embedded world's LM")
    p.add_argument("--data", choices=["world", "hub"], default=None, help="feedback data: the world's (default for the world's LM) or the paper's tasks from the hub (default otherwise: IMDb for rl, --preferences for dpo)")
    p.add_argument("--preferences", choices=sorted(PREFERENCE_DATASETS), default="hh", help="--data hub, dpo / tr-dpo: Anthropic HH (hh) or toxic-dpo (toxic, where the toxic answer is preferred)")
    p.add_argument("--triples", type=positive_int, default=600, help="texts to draw part 2's contrastive triples from (test reviews; held-out preference pairs for dpo / tr-dpo)")
    p.add_argument("--n-texts", type=positive_int, default=400, help="texts whose activations train the dictionaries")
    p.add_argument("--dictionary-source", choices=["activations", "model"], default=default.dictionary_source, help="train dictionaries on collected activations or on the model directly (SAELens runner)")
    p.add_argument("--recipe", choices=["rl", "dpo", "tr-dpo"], default=default.recipe, help=f"fine-tuning: RL on the VADER reward (RLOO), DPO, or TR-DPO (default: {default.recipe})")
    p.add_argument("--steps", type=positive_int, default=default.finetune_steps, help="fine-tuning steps")
    p.add_argument("--kl-beta", type=nonnegative_float, default=default.kl_beta, help="RL: KL coefficient")
    p.add_argument("--dpo-beta", type=positive_float, default=default.dpo_beta, help="DPO / TR-DPO: inverse temperature")
    p.add_argument("--mixup-alpha", type=positive_float, default=default.mixup_alpha, help="TR-DPO: reference update weight (1: hard update)")
    p.add_argument("--sync-steps", type=positive_int, default=default.sync_steps, help="TR-DPO: steps between reference updates (fewer than --steps)")
    p.add_argument("--reward-scope", choices=["prefix+completion", "completion"], default=default.reward_scope, help="RL: what the VADER reward scores")
    p.add_argument("--hook", default=default.hook, help="hook of each chosen layer ({layer} filled in); blocks.{layer}.mlp.hook_post for post-GELU activations")
    p.add_argument("--divergence-part", choices=["mlp", "block"], default=default.divergence_part, help="which parameters rank the layers")
    p.add_argument("--divergence-aggregate", choices=["l2", "sum_of_norms"], default=default.divergence_aggregate, help="l2 of everything, or the reference code's sum of per-tensor norms")
    p.add_argument("--top-k", type=positive_int, default=default.top_k, help="how many most-changed MLP layers to study")
    p.add_argument("--dictionary-tokens", type=positive_int, default=default.dictionary.training_tokens, help="training tokens per dictionary")
    p.add_argument("--ablation-prompts", type=positive_int, default=default.part2.ablation_prompts, help="part 2: prefixes completed for the attribution and each ablation (the costliest part of part 2)")
    p.add_argument("--explain", choices=["heuristic", "llm"], default="heuristic", help="part 2: who explains the top-overlap features and labels them related (heuristic: offline, not an LLM)")
    p.add_argument("--llm-base-url", default=None, help="--explain llm: OpenAI-compatible base URL (default: SAE_LENS_MATCH_LLM_BASE_URL / OPENAI_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="--explain llm: model name (default: SAE_LENS_MATCH_LLM_MODEL / OPENAI_MODEL)")
    p.add_argument("--seed", type=int, default=default.seed, help=f"seed of the world, the fine-tuning, the dictionaries and part 2 (default: {default.seed})")
    p.set_defaults(run=run_lfp_command)


def run_lfp_command(args: argparse.Namespace) -> dict:
    model_name = world.WORLD_MODEL_NAME if args.model is None else None
    default = LFPConfig()
    cfg = LFPConfig(
        recipe=args.recipe, finetune_steps=args.steps, top_k=args.top_k, seed=args.seed,
        kl_beta=args.kl_beta, dpo_beta=args.dpo_beta, mixup_alpha=args.mixup_alpha, sync_steps=args.sync_steps,
        reward_scope=args.reward_scope, hook=args.hook, divergence_part=args.divergence_part, divergence_aggregate=args.divergence_aggregate,
        dictionary=replace(default.dictionary, training_tokens=args.dictionary_tokens, seed=args.seed),
        dictionary_source=args.dictionary_source, model_name=model_name,
        part2=replace(default.part2, ablation_prompts=args.ablation_prompts, seed=args.seed),
    )
    judges = {}
    if args.explain == "llm":  # a missing endpoint or model is refused before any work
        client = ChatClient(args.llm_base_url, args.llm_model, cache_dir=args.out / "llm_cache")
        judges = {"explainer": LLMExplainer(client), "relatedness": LLMRelatedness(client)}
    out_dir(args)  # options and folder checked: now the work
    model = args.model or world.model_dir(seed=args.seed)
    data = feedback_data(args.data or ("world" if args.model is None else "hub"), cfg, args.n_texts, args.seed, args.preferences, args.triples)
    summary = run_lfp(model, data, args.out, cfg, **judges)
    for layer, d in summary["layers"].items():
        stats = d["dictionaries"]["n"]
        print(
            f"layer {layer} ({d['hook']}): n-dictionary L0 {stats['l0']:.1f}, explained variance {stats['explained_variance']:.3f}; "
            f"mean max cosine {d['mean_max_cosine']:.3f}, assigned {d['mean_assigned_cosine']:.3f}"
        )
    part2 = summary.get("part2", {})
    if "tuned" in part2:
        print(f"part 2, {part2['n_test_words']} held-out words of {part2['n_words']}:")
        for name in ("tuned", "base", "xavier"):
            r = part2[name]
            low, high = r["kendall_tau_ci"] or (float("nan"), float("nan"))
            print(
                f"  {name:>6}: Kendall tau {r['kendall_tau']:+.3f} [{low:+.3f}, {high:+.3f}] (p={r['kendall_p']:.3g}), "
                f"sign accuracy +{r['sign_accuracy_positive']:.2f} / -{r['sign_accuracy_negative']:.2f}"
            )
    if part2.get("preference"):
        p = part2["preference"]
        print(f"part 2, logistic probes on {p['n_test_triples']} held-out preference pairs:")
        for name in ("tuned", "base", "xavier"):
            print(f"  {name:>6}: accuracy {p[name]['accuracy']:.3f} [{p[name]['accuracy_ci'][0]:.3f}, {p[name]['accuracy_ci'][1]:.3f}]")
    if part2:
        if part2.get("features") is not None:
            related = sum(1 for r in part2["features"] if r["related"])
            frequency = part2["activation_frequency"]
            print(f"  {related} of {len(part2['features'])} top-overlap features labelled related ({part2['features'][0]['judge']})")
            if frequency and frequency["related"] is not None:
                print(f"  active on inputs predicted above {frequency['threshold']:g}: related {frequency['related']:.2f}, average feature {frequency['average']:.2f}")
            agreement = (part2.get("attribution") or {}).get("agreement_related") or {}
            if agreement.get("mean_percentile") is not None:
                print(f"  attribution to the reward: related features at percentile {agreement['mean_percentile']:.2f} (chance 0.50), {agreement['top_overlap']} among the most attributed (chance {agreement['top_overlap_expected']:.1f})")
            for name, a in (part2["ablation"] or {}).items():
                if isinstance(a, dict):
                    print(f"  zeroing {a['n_features']} {name} features: reward {a['reward_before']:+.3f} -> {a['reward_after']:+.3f} (drop {a['drop']:+.3f} [{a['drop_ci'][0]:+.3f}, {a['drop_ci'][1]:+.3f}])")
    for layer, diff in summary.get("model_diff", {}).items():
        print(
            f"layer {layer}: {diff['fraction_changed']:.1%} of the tuned features have no counterpart in the base model's dictionary "
            f"(two base dictionaries of different seeds: {diff['control_fraction_changed']:.1%}); {diff['related_changed']} of {diff['n_related']} related among them"
        )
    print(f"wrote {args.out}/index.html (open it in a browser), summary.json, part2.json and the tables and plots beside them")
    return summary
