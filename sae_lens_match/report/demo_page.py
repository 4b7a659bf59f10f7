"""The demo's ``index.html``: an overview with the headline figures, the feature-flow view with
its feature cards, then one section per step (tables, PNGs, links to each step's own pages).

Paths on the page are relative to the results folder, which is laid out as the demo writes it:
``matching/``, ``evaluation/``, ``flow/``, ``connections/``, ``feature_cards/``, ``lfp/``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sae_lens_match.flow.connections import ConnectionKey, Connections
from sae_lens_match.flow.graph import FlowGraph
from sae_lens_match.matching.matching import Matching
from sae_lens_match.report.pages import html_table
from sae_lens_match.report.site import Section, flow_view, write_site

TITLE = "sae-lens-match: SAE Match, feature flow and Learned Feedback Patterns on the embedded world"


@dataclass
class DemoResults:
    """What the demo computed, read back from its folder.

    Attributes:
        world: the world's manifest (``world.json``).
        timings: one row per step: ``step``, ``seconds``, ``reused``.
        cost_summary: SAE Match's cost per layer pair; compare: every matcher and baseline per pair.
        curves: the parameter MSE curves (Fig. 3).
        graph: the flow graph; matchings: SAE Match per residual layer pair, unmatched rule applied.
        verdicts: per pair, per feature of the shallower SAE, the judge's verdict on its match.
        cards: SAE id (``"layer/module"``) -> its feature cards as a dict.
        class_counts, causal_summary: the flow graph's tables.
        lfp: the LFP summary (``lfp/summary.json``), ``None`` when it was left out.
        connections: the learned connections, pair -> :class:`~sae_lens_match.flow.Connections`
            (empty when they were left out); connection_summary: their summary, one row per
            pair with its agreement with SAE Match and the flow graph (``connections/summary.json``).
    """

    world: dict[str, Any]
    timings: list[dict[str, Any]]
    cost_summary: list[dict[str, Any]]
    compare: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    graph: FlowGraph
    matchings: list[Matching]
    verdicts: list[list[dict | None]] = field(default_factory=list)
    cards: dict[str, dict] = field(default_factory=dict)
    class_counts: list[dict[str, Any]] = field(default_factory=list)
    causal_summary: list[dict[str, Any]] = field(default_factory=list)
    lfp: dict[str, Any] | None = None
    connections: dict[ConnectionKey, Connections] = field(default_factory=dict)
    connection_summary: list[dict[str, Any]] = field(default_factory=list)


def write_demo_page(out_dir: str | Path, results: DemoResults) -> Path:
    """Write ``out_dir/index.html`` (and its assets and data) for ``results``; return its path."""
    view = flow_view(results.graph, results.matchings, verdicts=results.verdicts or None, connections=results.connections)
    sections = [
        Section("SAE Match across layers", _matching_html(results), "matching"),
        Section("Matchers compared", _compare_html(results), "matchers"),
        Section("Parameter MSE curves (paper Fig. 3)", _curves_html(), "curves"),
        Section("Layer pruning", _pruning_html(results), "pruning"),
        Section("Feature flow", _flow_html(results), "flow-tables"),
    ]
    if results.connection_summary:
        sections.append(Section("Learned connections", _connections_html(results), "connections"))
    if results.lfp is not None:
        sections.append(Section("Learned Feedback Patterns", _lfp_html(results.lfp), "lfp"))
    sections.append(Section("Time per step", html_table(results.timings, ["step", "seconds", "reused"]) + "<p>Machine-readable: <a href='timings.json'>timings.json</a>, <a href='timings.csv'>timings.csv</a>.</p>", "timings"))
    overview = [Section("Overview", _overview_html(results), "overview")]
    return write_site(out_dir, title=TITLE, view=view, cards=results.cards, overview=overview, sections=sections)


def _mean(values: Sequence[Any]) -> float:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _f(value: Any, spec: str = ".3g") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _overview_html(r: DemoResults) -> str:
    cfg, lm = r.world["config"], r.world["lm"]
    saes = r.world["saes"]
    total = next((t["seconds"] for t in r.timings if t["step"] == "total"), None)
    facts = [
        f"<b>Model</b>: the embedded world's GPT-NeoX (Pythia architecture), {cfg['n_layers']} layers, d_model {cfg['d_model']}, "
        f"{lm['n_params']:,} parameters, trained on {lm['train_tokens']:,} tokens of a synthetic movie-review corpus (held-out loss {lm['eval_loss_after']:.3f}).",
        f"<b>SAEs</b>: {len(saes)} JumpReLU SAEs (SAELens format) on {', '.join(sorted({h.split('hook_')[1] for h in saes}))} of every layer, "
        f"d_sae {cfg['sae']['expansion'] * cfg['d_model']}, explained variance {min(s['explained_variance'] for s in saes.values()):.3f} to {max(s['explained_variance'] for s in saes.values()):.3f}.",
    ]
    heads = []
    sm = [row for row in r.compare if row["method"] == "sae_match"]
    if r.cost_summary:
        ratio = _mean([row["mean_cost"] / row["random_pair_cost"] for row in r.cost_summary if row.get("random_pair_cost")])
        heads.append(f"SAE Match's matched pairs cost {ratio:.1%} of a random pair on average; {_mean([row['fraction_matched'] for row in r.cost_summary]):.1%} of the pairs count as matched.")
    if sm:
        baselines = ", ".join(
            f"{name} {_f(_mean([row['delta_loss'] for row in r.compare if row['method'] == name]))}"
            for name in dict.fromkeys(row["method"] for row in r.compare if row["kind"] == "baseline")
        )
        heads.append(
            f"Layer pruning (layer L+1's state rebuilt from SAE L's matched codes): the LM loss rises by {_f(_mean([row['delta_loss'] for row in sm]))} nats "
            f"on average; baselines: {baselines}."
        )
    if r.class_counts:
        n = sum(row["n_features"] for row in r.class_counts if row["layer"] > 0)
        translated = sum(row.get("translated", 0) for row in r.class_counts if row["layer"] > 0)
        heads.append(f"Feature flow: {translated / n:.0%} of the residual features of layers 1 and up come from the previous layer's residual stream (translated)." if n else "")
    for row in r.causal_summary:
        if row.get("layer") == "all" and row.get("target_class") == "all":
            heads.append(f"Causal check: zeroing a flow edge's source lowers its target more than zeroing a random active feature for {row['fraction_validated']:.0%} of {row['n_edges']} checked edges.")
    residual = [row for row in r.connection_summary if row["source_module"] == row["target_module"] == "residual"]
    if residual:
        heads.append(
            f"Learned connections: {_mean([row['fraction_linear'] for row in residual]):.0%} of the residual features of layers 1 and up are linearly "
            f"computed from the previous layer's residual features (held-out explained variance above {_f(_threshold(r))}; shuffled control "
            f"{_mean([row['control_fraction_linear'] for row in residual]):.0%}); a feature's strongest learned input is its SAE Match partner for "
            f"{_mean([row.get('sae_match_agreement') for row in residual]):.0%} and its flow-graph predecessor for "
            f"{_mean([row.get('flow_graph_agreement') for row in residual]):.0%} (chance {_f(_mean([row.get('chance') for row in residual]), '.1%')})."
        )
    part2 = (r.lfp or {}).get("part2") or {}
    if "tuned" in part2:
        heads.append(
            "LFP: a linear probe on the tuned model's dictionary features predicts VADER sentiment of held-out words with Kendall tau "
            f"{part2['tuned']['kendall_tau']:+.2f} (base model {part2['base']['kendall_tau']:+.2f}, random projection {part2['xavier']['kendall_tau']:+.2f})."
        )
    steps = ", ".join(f"{html.escape(t['step'])} {t['seconds']:.0f} s{' (reused)' if t['reused'] else ''}" for t in r.timings if t["step"] != "total")
    return (
        "<p>Everything below was computed offline by <code>sae-lens-match demo</code> on the embedded default world; "
        "every table is also a JSON and a CSV file in this folder, every figure also a PNG.</p>"
        + "<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>"
        + "<h3>Headline figures</h3><ul>" + "".join(f"<li>{h}</li>" for h in heads if h) + "</ul>"
        + f"<p>Steps: {steps}; total {_f(total, '.0f')} s.</p>"
    )


def _matching_html(r: DemoResults) -> str:
    table = html_table(r.cost_summary, ["pair", "source", "target", "mean_cost", "median_cost", "random_pair_cost", "fraction_matched"])
    return (
        "<p>Exact minimum-MSE assignment between the threshold-folded parameters of consecutive residual SAEs (data-free).</p>"
        + table + "<img src='matching/report.png' alt='SAE Match cost per layer pair'>"
        + "<p><a href='matching/report.html'>interactive plots</a> · <a href='matching/summary.json'>summary.json</a> · "
        "<a href='matching/summary.csv'>summary.csv</a> · each matcher's pairs in <code>matching/&lt;matcher&gt;/pair_*.safetensors</code></p>"
    )


def _compare_html(r: DemoResults) -> str:
    columns = ["pair", "method", "mean_cost", "fraction_matched", "agreement", "matching_score", "random_matching_score", "delta_loss", "explained_variance", "frac_same", "frac_different", "judge"]
    rows = [row for row in r.compare if row["kind"] == "matcher"]
    return (
        "<p>Every registered matcher on the same SAEs: cost under one definition, agreement with SAE Match, co-activation on held-out reviews "
        "(data-based matchers are fitted on other reviews), layer pruning, and the offline context-overlap judge (a heuristic, not an LLM).</p>"
        + html_table(rows, [c for c in columns if any(row.get(c) is not None for row in rows)])
        + "<img src='evaluation/compare.png' alt='matchers side by side'>"
        + "<p><a href='evaluation/compare.html'>interactive plots</a> · <a href='evaluation/compare.json'>compare.json</a> · <a href='evaluation/compare.csv'>compare.csv</a></p>"
    )


def _curves_html() -> str:
    return (
        "<p>Mean MSE between the parameters of consecutive SAEs: vanilla (feature i against feature i), matched, and folded + matched.</p>"
        "<img src='evaluation/parameter_curves.png' alt='parameter MSE curves'>"
        "<p><a href='evaluation/parameter_curves.html'>interactive plots</a> · <a href='evaluation/parameter_curves.json'>parameter_curves.json</a> · "
        "<a href='evaluation/parameter_curves.csv'>parameter_curves.csv</a></p>"
    )


def _pruning_html(r: DemoResults) -> str:
    rows = [row for row in r.compare if row.get("delta_loss") is not None]
    return (
        "<p>Layer L+1's hidden state replaced by SAE L+1's decoder applied to SAE L's matched codes; delta loss is the LM loss increase "
        "(nats), against the baselines: dropping the layer, SAE L+1's own reconstruction (current) and SAE L's (previous).</p>"
        + html_table(rows, ["pair", "method", "kind", "delta_loss", "explained_variance", "clean_loss"])
    )


def _flow_html(r: DemoResults) -> str:
    parts = ["<p>Each residual feature's predecessors: the previous layer's residual features and this layer's attention and MLP features, "
             "kept when their similarity beats a whitened random-rotation null (data-free). The interactive view is above.</p>"]
    if r.class_counts:
        parts.append(html_table(r.class_counts, list(r.class_counts[0])))
    if r.causal_summary:
        parts += ["<h3>Causal check: ablating an edge's source feature</h3>", html_table(r.causal_summary, list(r.causal_summary[0]))]
    parts.append("<p><a href='flow/graph.json'>graph.json</a> · <a href='flow/class_counts.csv'>class_counts.csv</a>"
                 + (" · <a href='flow/causal_edges.csv'>causal_edges.csv</a>" if r.causal_summary else "") + "</p>")
    return "".join(parts)


def _threshold(r: DemoResults) -> float | None:
    """The held-out explained variance above which a feature counts as linearly computed."""
    return next((c.threshold for c in r.connections.values()), None)


def _connections_html(r: DemoResults) -> str:
    config = next(iter(r.connections.values())).config if r.connections else {}
    fit = f"matching pursuit, {config['k']} inputs at most" if config.get("sparsity") == "topk" else f"lasso, penalty {config.get('l1')}"
    columns = ["pair", "n_alive", "fraction_linear", "control_fraction_linear", "median_explained_variance", "mean_nonzero",
               "sae_match_agreement", "flow_graph_agreement", "chance"]
    return (
        "<p>For every feature of a downstream SAE, a sparse linear map from an upstream SAE's feature activations on the same token "
        f"(residual L-1, attention L and MLP L to residual L; residual L-1 to MLP L), fitted on the held-out reviews ({html.escape(fit)}). "
        f"A feature counts as linearly computed when its map explains more than {_f(_threshold(r))} of its variance on tokens held out from the fit; "
        "the shuffled control fits each token against another token's upstream activations. Agreement: how often a feature's strongest learned "
        "input is its SAE Match partner (residual to residual) or its best flow-graph predecessor in that module, over the features that have one; "
        "chance is 1 / d_sae. The flow view above draws the strongest inputs of every linearly computed feature (dotted) and lists them on its card.</p>"
        + html_table(r.connection_summary, [c for c in columns if any(row.get(c) is not None for row in r.connection_summary)])
        + "<img src='connections/connections.png' alt='learned connections per layer'>"
        + "<p><a href='connections/connections.html'>interactive plots</a> · <a href='connections/summary.json'>summary.json</a> · "
        "<a href='connections/summary.csv'>summary.csv</a> · agreement (also over linearly computed features only): "
        "<a href='connections/agreement.json'>agreement.json</a> · <a href='connections/agreement.csv'>agreement.csv</a> · "
        "each pair's map in <code>connections/&lt;pair&gt;.safetensors</code> (nonzero weights) and its summary in <code>&lt;pair&gt;.json</code></p>"
    )


def _lfp_html(lfp: dict[str, Any]) -> str:
    part2 = lfp.get("part2") or {}
    parts = [
        f"<p>The world's LM tuned with {html.escape(lfp['config']['recipe'].upper())} ({lfp['config']['finetune_steps']} steps) on the VADER reward; "
        f"dictionaries (n and 2n) on the {len(lfp['top_layers'])} most changed MLP layers {lfp['top_layers']}; probes, attribution and ablations (part 2).</p>",
        "<img src='lfp/divergence.png' alt='parameter divergence per layer'>",
    ]
    if "tuned" in part2:
        rows = [{"probe": m, "kendall_tau": part2[m]["kendall_tau"], "p": part2[m]["kendall_p"],
                 "sign_accuracy_positive": part2[m]["sign_accuracy_positive"], "sign_accuracy_negative": part2[m]["sign_accuracy_negative"]} for m in ("tuned", "base", "xavier")]
        parts += [html_table(rows, list(rows[0])), "<img src='lfp/part2_words.png' alt='probe predictions against VADER'>"]
    ablation = part2.get("ablation") or {}
    rows = [{"features zeroed": name, **{k: a[k] for k in ("n_features", "reward_before", "reward_after", "drop")}} for name, a in ablation.items() if isinstance(a, dict)]
    if rows:
        parts += [html_table(rows, list(rows[0])), "<img src='lfp/part2_ablation.png' alt='reward drop when features are zeroed'>"]
    parts.append("<p>Everything else, with confidence intervals: <a href='lfp/index.html'>the LFP page</a> · <a href='lfp/summary.json'>summary.json</a> · <a href='lfp/part2.json'>part2.json</a></p>")
    return "".join(parts)
