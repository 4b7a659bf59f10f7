"""The LFP results folder's page: ``index.html`` with the headline tables and PNG plots, opening
from disk with no server and no network (the plots are images beside it, nothing is inlined).

Everything on the page is also in ``summary.json``, ``part2.json`` and the CSV tables; paths
are relative to the folder.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from sae_lens_match.report.pages import html_table, write_page
from sae_lens_match.report.plots import COLORS, Line, Panel, write_png
from sae_lens_match.report.tables import write_table

MODELS = ("tuned", "base", "xavier")


def write_lfp_report(out_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``out_dir/index.html`` (and the PNGs it shows) from what :func:`~sae_lens_match.lfp.pipeline.run_lfp` returned."""
    out = Path(out_dir)
    cfg = summary["config"]
    blocks = [
        f"<p>Model <b>{html.escape(_model_name(summary['model']))}</b>, data <b>{html.escape(str(summary['data']))}</b>, recipe "
        f"<b>{html.escape(cfg['recipe'])}</b> ({cfg['finetune_steps']} steps), hook <code>{html.escape(cfg['hook'])}</code>. "
        "Every figure here is also in <a href='summary.json'>summary.json</a> and <a href='part2.json'>part2.json</a>.</p>",
        "<h2>Part 1: the most changed layers and their dictionaries</h2>",
        f"<p>Divergence ({html.escape(summary['divergence_method']['part'])}, {html.escape(summary['divergence_method']['aggregate'])}); "
        f"chosen layers {summary['top_layers']}.</p><img src='divergence.png' alt='divergence per layer'>",
        html_table(_dictionary_rows(summary), ["layer", "dictionary", "d_sae", "l0", "explained_variance", "mean_max_cosine"]),
    ]
    part2 = summary.get("part2")
    if part2:
        blocks += _part2_blocks(out, part2)
    if summary.get("model_diff"):
        rows = [{"layer": layer, **{k: v for k, v in d.items() if k not in ("changed", "rule")}} for layer, d in summary["model_diff"].items()]
        blocks += ["<h2>Data-free model diffing (SAE Match, base vs tuned dictionaries)</h2>", html_table(rows, list(rows[0]))]
    blocks += ["<h2>Time per step (seconds; reused steps take about none)</h2>", html_table([summary["seconds"]], list(summary["seconds"]))]
    return write_page(out / "index.html", "Learned Feedback Patterns", blocks)


def _model_name(model: Any) -> str:
    """A hub name as it is; a local checkpoint by its folder's name (no path of this machine on the page)."""
    path = Path(str(model))
    return f"{path.parent.name}/{path.name}" if path.is_absolute() else str(model)


def _dictionary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for layer, info in summary["layers"].items():
        for name, stats in info["dictionaries"].items():
            rows.append({"layer": layer, "dictionary": name, **stats, "mean_max_cosine": info["mean_max_cosine"]})
    return rows


def _ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return ""
    return f"{value:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def _part2_blocks(out: Path, part2: dict[str, Any]) -> list[str]:
    blocks = ["<h2>Part 2: how well the activations encode the feedback</h2>"]
    if "tuned" in part2:
        rows = [
            {
                "probe": name, "Kendall tau [95% CI]": _ci(part2[name]["kendall_tau"], part2[name]["kendall_tau_ci"]), "p": part2[name]["kendall_p"],
                "sign acc. positive": _ci(part2[name]["sign_accuracy_positive"], part2[name]["sign_accuracy_positive_ci"]),
                "sign acc. negative": _ci(part2[name]["sign_accuracy_negative"], part2[name]["sign_accuracy_negative_ci"]),
            }
            for name in MODELS
        ]
        write_table(out, "part2_agreement", [{"probe": n, **{k: v for k, v in part2[n].items()}} for n in MODELS])
        blocks += [
            f"<h3>Linear probes against VADER, {part2['n_test_words']} held-out words of {part2['n_words']}</h3>",
            html_table(rows, list(rows[0])), f"<img src='{_words_plot(out)}' alt='predicted against VADER value'>",
        ]
    if part2.get("preference"):
        p = part2["preference"]
        rows = [{"probe": name, "accuracy [95% CI]": _ci(p[name]["accuracy"], p[name]["accuracy_ci"]), "n": p[name]["n"]} for name in MODELS]
        blocks += [f"<h3>Logistic probes, chosen against rejected, {p['n_test_triples']} held-out pairs</h3>", html_table(rows, list(rows[0]))]
    if part2.get("features"):
        related = sum(bool(r["related"]) for r in part2["features"])
        judge = part2["features"][0]["judge"]
        blocks += [
            f"<h3>Top-overlap features: {related} of {len(part2['features'])} labelled related (by {html.escape(judge)})</h3>",
            html_table(part2["features"], ["layer", "feature", "related", "explanation", "explainer", "reason"]),
        ]
    frequency = part2.get("activation_frequency")
    if frequency:
        blocks += [f"<h3>Activation frequency on inputs with predicted feedback above {frequency['threshold']:g}</h3>", html_table([frequency], list(frequency))]
    attribution = part2.get("attribution")
    if attribution:
        rows = [{"features": name, **(attribution[f"agreement_{name}"])} for name in ("related", "top_overlap")]
        blocks += [
            "<h3>Attribution to the reward (probe-free)</h3>", f"<p>{html.escape(attribution['method'])}; 0.5 is chance for the percentile.</p>",
            html_table(rows, list(rows[0])),
        ]
    ablation = part2.get("ablation")
    if ablation:
        groups = [g for g in ablation if isinstance(ablation[g], dict)]
        rows = [{"zeroed": g, **{k: v for k, v in ablation[g].items() if k != "drop_ci"}, "drop 95% CI": _ci(ablation[g]["drop"], ablation[g]["drop_ci"])} for g in groups]
        bars = Line("drop", groups, [ablation[g]["drop"] for g in groups], color=[COLORS[k] for k in range(len(groups))], bars=True, legend=False)
        write_png(out / "part2_ablation.png", [Panel("", [bars], xlabel="features zeroed", ylabel="mean reward drop")], title=f"Ablation, {ablation['n_prompts']} prompts")
        blocks += ["<h3>Ablation: reward of completions before and after zeroing features</h3>", html_table(rows, list(rows[0])), "<img src='part2_ablation.png' alt='ablation'>"]
    return blocks


def _words_plot(out: Path) -> str:
    """Predicted against true value of the held-out words, one panel per probe (read from word_table.json)."""
    rows = [r for r in json.loads((out / "word_table.json").read_text()) if r["split"] == "test"]
    panels = [
        Panel(name, [Line(name, [r["vader_value"] for r in rows], [r[f"predicted_{name}"] for r in rows], color=COLORS[k], connect=False, legend=False)],
              xlabel="VADER value", ylabel="predicted feedback")
        for k, name in enumerate(MODELS)
    ]
    write_png(out / "part2_words.png", panels, title="Held-out words: probe prediction against VADER")
    return "part2_words.png"
