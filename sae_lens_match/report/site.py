"""The report's interactive page: a feature-flow view of matched SAEs and a card per feature.

:func:`flow_view` lays out every SAE of a run (layers left to right; attention, MLP and
residual columns within a layer) and gathers the links a researcher follows: SAE Match links
between consecutive residual SAEs and, when there is a :class:`~sae_lens_match.flow.FlowGraph`,
its predecessor edges, classes, splits and merges; given connections fitted on data
(:func:`~sae_lens_match.flow.stack_connections`), also each linearly computed feature's
strongest learned upstream features. :func:`write_site` writes the view, the
feature cards and the caller's :class:`Section` blocks as one ``index.html`` that opens from
disk (``file://``, no server, no network):

    index.html
    assets/flow.js, assets/site.css     the viewer, copied from this package
    data/view.js                        window.SLM_VIEW = {...}: the output of flow_view
    data/cards/<layer>-<module>.js      window.SLM_ADD_CARDS(id, {...}): one SAE's cards,
                                        loaded by a <script> tag when one of its nodes is
                                        first clicked (file:// pages cannot fetch JSON)

The view is columnar (arrays per SAE and per link kind, nodes referred to as ``[SAE index,
feature]``) so that a dozen SAEs of thousands of features stay a few hundred kilobytes.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sae_lens_match.atomic import jsonable, write_text
from sae_lens_match.flow.connections import ConnectionKey, Connections
from sae_lens_match.flow.graph import FlowGraph
from sae_lens_match.flow.predecessors import CLASSES
from sae_lens_match.matching.matching import Matching

logger = logging.getLogger(__name__)

VIEW_FORMAT = "sae_lens_match.flow_view"
VIEW_VERSION = 1
COLUMNS = ("attention", "mlp", "residual")  # left to right within a layer
STATUS_BITS = {"appearing": 1, "vanishing": 2, "split": 4, "merge": 8}
VERDICT_LABELS = ("SAME", "MAYBE", "DIFFERENT")
ASSETS = ("flow.js", "site.css")
_LAYER_GAP = 0.75  # extra x units between the last column of a layer and the first of the next
_DIGITS = 4  # significant digits of costs and scores in view.js


@dataclass(frozen=True)
class Section:
    """One block of the page.

    Attributes:
        title: the heading (escaped when written).
        html: the body, trusted HTML written by the package's own code (tables, ``<img>``, links).
        anchor: the id the table of contents links to (default: made from the title).
    """

    title: str
    html: str
    anchor: str | None = None


def sae_id(layer: int, module: str) -> str:
    """The id of an SAE in the view and in ``cards``: ``"2/residual"``."""
    return f"{layer}/{module}"


def card_script(sae: str) -> str:
    """The path, relative to ``index.html``, of the cards of SAE ``sae``: ``data/cards/2-residual.js``."""
    name = sae.replace("/", "-")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"SAE id {sae!r} cannot name a card file; use '<layer>/<module>', e.g. '2/residual'.")
    return f"data/cards/{name}.js"


def flow_view(
    graph: FlowGraph | None,
    matchings: Sequence[Matching],
    *,
    verdicts: Sequence[Sequence[dict | None]] | None = None,
    max_features: int | None = 2000,
    connections: Mapping[tuple, Connections] | None = None,
    connection_top: int = 3,
) -> dict[str, Any]:
    """The laid-out data of the flow view (what ``data/view.js`` holds).

    Args:
        graph: the flow graph of the run, or ``None`` (a plain ``match`` run): then only the
            residual SAEs and their match links are shown.
        matchings: ``matchings[i]`` matches the residual SAE of layer ``i`` to that of ``i + 1``,
            with the unmatched rule already applied (``permutation`` ``-1`` where unmatched).
            May be empty when ``graph`` is given.
        verdicts: ``verdicts[i][f]``: ``None`` or ``{"label": "SAME" | "MAYBE" | "DIFFERENT",
            "source": "heuristic:..."}``, a judge's verdict on feature ``f``'s pair in ``matchings[i]``.
        max_features: at most this many nodes per SAE (``None``: all); the features in the most
            links (match links, flow edges, learned connections, splits and merges) are kept,
            each SAE's ``features`` lists them.
        connections: module pair (:class:`~sae_lens_match.flow.ConnectionKey` or its 4-tuple)
            -> :class:`~sae_lens_match.flow.Connections`, as
            :func:`~sae_lens_match.flow.stack_connections` returns them. For every downstream
            feature that counts as linearly computed (held-out explained variance above the
            pair's threshold), its ``connection_top`` strongest upstream features (by
            contribution) become learned edges; every shown feature's explained variance is
            kept for its card. Pairs with an SAE the view does not show are left out.
        connection_top: learned edges per linearly computed feature, at most.

    Layout: a residual feature matched from the previous layer sits at its match's row, so a
    persisting feature is a horizontal line; the others go below, those persisting longest
    first. An attention or MLP feature sits at the row of the residual feature it feeds.

    Raises:
        ValueError: neither a graph nor a matching; matchings, verdicts or connections that do
            not fit the SAEs.
    """
    if graph is None and not matchings:
        raise ValueError("flow_view needs a flow graph or at least one matching.")
    n_layers = graph.n_layers if graph is not None else len(matchings) + 1
    if len(matchings) not in (0, n_layers - 1):
        raise ValueError(f"Give one matching per pair of consecutive layers ({n_layers - 1}), got {len(matchings)}.")
    if verdicts is not None and len(verdicts) != len(matchings):
        raise ValueError(f"verdicts needs one list per matching ({len(matchings)}), got {len(verdicts)}.")
    if max_features is not None and max_features < 1:
        raise ValueError(f"max_features must be >= 1 or None, got {max_features}.")
    if connection_top < 1:
        raise ValueError(f"connection_top must be >= 1, got {connection_top}.")

    saes = _saes(graph, matchings, n_layers)
    index = {s["id"]: i for i, s in enumerate(saes)}
    residual = [index[sae_id(layer, "residual")] for layer in range(n_layers)]

    # every link, on all features: [source SAE, source feature, target SAE, target feature]
    pairs = []
    for m in matchings:
        a = m.matched.nonzero().squeeze(1).cpu().numpy()
        pairs.append((a, m.permutation.cpu().numpy()[a], m.cost.detach().cpu().numpy()[a]))
    graph_edges = graph.edges if graph is not None else ()
    edges = np.array([(index[sae_id(e.source.layer, e.source.module)], e.source.feature, index[sae_id(e.target.layer, e.target.module)], e.target.feature)
                      for e in graph_edges], dtype=np.int64).reshape(-1, 4)
    scores = np.array([e.score for e in graph_edges], dtype=np.float64)
    ranks = np.array([e.rank for e in graph_edges], dtype=np.int64)
    branchings = list(graph.branchings) if graph is not None else []
    learned = _learned_links(connections or {}, index, saes, connection_top)

    # how many links each feature takes part in: the cap keeps the busiest
    degree = [np.zeros(s["d_sae"], dtype=np.int64) for s in saes]
    for i, (a, b, _) in enumerate(pairs):
        np.add.at(degree[residual[i]], a, 1)
        np.add.at(degree[residual[i + 1]], b, 1)
    for col in (0, 2):
        for s in np.unique(edges[:, col]):
            np.add.at(degree[s], edges[edges[:, col] == s, col + 1], 1)
    for b in branchings:
        for node in (b.node, *b.partners):
            degree[index[sae_id(node.layer, node.module)]][node.feature] += 1
    for link in learned:
        np.add.at(degree[link["source"]], link["a"], 1)
        np.add.at(degree[link["target"]], link["b"], 1)
    kept = [_busiest(d, max_features) for d in degree]
    for s, k in zip(saes, kept):
        if k.all():
            continue
        logger.info("flow view: %s shows %d of its %d features (max_features=%d)", s["id"], int(k.sum()), s["d_sae"], max_features)

    # statuses, from the whole matchings (not only the kept links)
    status = [np.zeros(s["d_sae"], dtype=np.int64) for s in saes]
    for i, (a, b, _) in enumerate(pairs):
        into = np.zeros(saes[residual[i + 1]]["d_sae"], dtype=bool)
        into[b] = True
        status[residual[i + 1]][~into] |= STATUS_BITS["appearing"]
        out = np.zeros(saes[residual[i]]["d_sae"], dtype=bool)
        out[a] = True
        status[residual[i]][~out] |= STATUS_BITS["vanishing"]
    for b in branchings:
        status[index[sae_id(b.node.layer, b.node.module)]][b.node.feature] |= STATUS_BITS[b.kind]

    # the links between kept features
    match_views = []
    for i, (a, b, cost) in enumerate(pairs):
        keep = kept[residual[i]][a] & kept[residual[i + 1]][b]
        match_views.append(_match_view(matchings[i], residual[i], residual[i + 1], a[keep], b[keep], cost[keep], None if verdicts is None else verdicts[i]))
    offsets = np.cumsum([0] + [s["d_sae"] for s in saes])
    flat = np.concatenate(kept)
    keep_edge = flat[offsets[edges[:, 0]] + edges[:, 1]] & flat[offsets[edges[:, 2]] + edges[:, 3]]
    edges, scores, ranks = edges[keep_edge], scores[keep_edge], ranks[keep_edge]
    learned_views = [_learned_view(link, kept) for link in learned]
    # the explained variance of the features learned edges go into: the range of the view's filter
    evs = np.concatenate([link["ev"][v["b"]] for link, v in zip(learned, learned_views)]) if learned else np.zeros(0)

    rows = _layout(saes, residual, kept, [(v["a"], v["b"]) for v in match_views], edges)
    for i, s in enumerate(saes):
        features = np.flatnonzero(kept[i])
        s["features"] = features.tolist()
        s["rows"] = [rows[i][f] for f in features.tolist()]
        s["status"] = status[i][features].tolist()
        if graph is not None and s["module"] == "residual":
            s["classes"] = [CLASSES.index(c) for c in np.asarray(graph.layers[s["layer"]].classes, dtype=object)[features].tolist()]

    def node(n: Any) -> list[int]:
        return [index[sae_id(n.layer, n.module)], n.feature]

    branching_views = [
        {"kind": b.kind, "node": node(b.node), "partners": [node(p) for p in b.partners if kept[index[sae_id(p.layer, p.module)]][p.feature]]}
        for b in branchings if kept[index[sae_id(b.node.layer, b.node.module)]][b.node.feature]
    ]
    costs = np.concatenate([np.asarray(v["cost"], dtype=np.float64) for v in match_views]) if match_views else np.zeros(0)
    costs = costs[np.isfinite(costs)]
    return {
        "format": VIEW_FORMAT,
        "version": VIEW_VERSION,
        "n_layers": n_layers,
        "columns": [m for m in COLUMNS if any(s["module"] == m for s in saes)],
        "classes": list(CLASSES) if graph is not None else None,
        "status_bits": dict(STATUS_BITS),
        "verdict_labels": list(VERDICT_LABELS),
        "max_features": max_features,
        "truncated": [s["id"] for s, k in zip(saes, kept) if not k.all()],
        "saes": saes,
        "matches": match_views,
        "edges": {
            "source": edges[:, 0].tolist(), "source_feature": edges[:, 1].tolist(),
            "target": edges[:, 2].tolist(), "target_feature": edges[:, 3].tolist(),
            "score": [_round(x) for x in scores.tolist()], "rank": ranks.tolist(),
        },
        "edge_score": graph.config.get("similarity", "score") if graph is not None else None,
        "branchings": branching_views,
        "cost_range": [_round(float(costs.min())), _round(float(costs.max()))] if costs.size else None,
        "score_range": [_round(float(scores.min())), _round(float(scores.max()))] if scores.size else None,
        "learned": learned_views,
        "learned_top": connection_top,
        "ev_range": [_round(float(evs.min())), _round(float(evs.max()))] if evs.size else None,
    }


def write_site(
    out_dir: str | Path,
    *,
    title: str,
    view: dict[str, Any],
    cards: Mapping[str, dict[str, Any]] = {},
    overview: Sequence[Section] = (),
    sections: Sequence[Section] = (),
) -> Path:
    """Write the report page and what it loads into ``out_dir`` (see the module docstring).

    Args:
        title: the page title (escaped).
        view: the output of :func:`flow_view`.
        cards: SAE id (``"2/residual"``) -> that SAE's cards (``FeatureCards.to_dict()``);
            an SAE without an entry shows "no cards" in the panel.
        overview: sections before the flow view.
        sections: sections after it.

    Returns:
        The path of ``index.html``.
    """
    out = Path(out_dir)
    if view.get("format") != VIEW_FORMAT:
        raise ValueError(f"view must be the output of flow_view (format {VIEW_FORMAT!r}), got format {view.get('format')!r}.")
    known = {s["id"] for s in view["saes"]}
    unknown = sorted(set(cards) - known)
    if unknown:
        logger.warning("write_site: cards of %s, which the flow view does not show, are written but not reachable from it", unknown)
    scripts = {sae: card_script(sae) for sae in cards}
    view = {**view, "saes": [{**s, "card": scripts.get(s["id"])} for s in view["saes"]]}

    package = resources.files("sae_lens_match.report") / "assets"
    for name in ASSETS:
        write_text(out / "assets" / name, (package / name).read_text(encoding="utf-8"))
    write_text(out / "data" / "view.js", f"window.SLM_VIEW = {_json(view)};\n")
    for sae, data in cards.items():
        write_text(out / scripts[sae], f"window.SLM_ADD_CARDS({_json(sae)}, {_json(data)});\n")
    index = out / "index.html"
    write_text(index, _page(title, overview, sections))
    logger.info("site: %s (%d SAEs, %d with cards)", index, len(view["saes"]), len(cards))
    return index


# --- view helpers --------------------------------------------------------------------


def _saes(graph: FlowGraph | None, matchings: Sequence[Matching], n_layers: int) -> list[dict[str, Any]]:
    """One entry per SAE present, in column order: id, layer, module, hook, d_sae, x."""
    columns = [m for m in COLUMNS if m == "residual" or (graph is not None and any(m in info.widths for info in graph.layers))]
    saes = []
    for layer in range(n_layers):
        widths: dict[str, int] = {}
        hooks: dict[str, str | None] = {}
        if graph is not None:
            widths, hooks = dict(graph.layers[layer].widths), dict(graph.layers[layer].hooks)
        if matchings:
            m_out = matchings[layer] if layer < len(matchings) else None
            m_in = matchings[layer - 1] if layer > 0 else None
            width = m_out.d_sae_a if m_out is not None else m_in.d_sae_b
            if widths.get("residual", width) != width or (m_out is not None and m_in is not None and m_in.d_sae_b != m_out.d_sae_a):
                raise ValueError(f"The matchings and the graph disagree on the width of the residual SAE of layer {layer}.")
            widths["residual"] = width
            hook = (m_out.source if m_out is not None else m_in.target).get("hook_name")
            hooks.setdefault("residual", hook)
        for column, module in enumerate(columns):
            if module in widths:
                saes.append({
                    "id": sae_id(layer, module), "layer": layer, "module": module, "hook": hooks.get(module),
                    "d_sae": int(widths[module]), "x": round(layer * (len(columns) + _LAYER_GAP) + column, 3),
                })
    return saes


def _busiest(degree: np.ndarray, limit: int | None) -> np.ndarray:
    """A mask of the ``limit`` features with the highest ``degree`` (ties: lower index first)."""
    keep = np.ones(degree.shape[0], dtype=bool)
    if limit is None or degree.shape[0] <= limit:
        return keep
    order = np.lexsort((np.arange(degree.shape[0]), -degree))
    keep[:] = False
    keep[order[:limit]] = True
    return keep


def _match_view(m: Matching, source: int, target: int, a: np.ndarray, b: np.ndarray, cost: np.ndarray,
                verdicts: Sequence[dict | None] | None) -> dict[str, Any]:
    """The kept pairs of one matching as parallel arrays, with the verdict on each pair if any."""
    view: dict[str, Any] = {
        "source": source, "target": target, "method": m.method,
        "rule": m.info.get("unmatched_rule"), "max_cost": m.info.get("max_cost"),
        "a": a.tolist(), "b": b.tolist(), "cost": [_round(x) for x in cost.tolist()],
    }
    if verdicts is not None:
        if len(verdicts) != m.d_sae_a:
            raise ValueError(f"verdicts of a matching of {m.d_sae_a} features must have one entry per feature (None for none), got {len(verdicts)}.")
        labels, sources = [], []
        for f in view["a"]:
            v = verdicts[f]
            if v is not None and v.get("label") not in VERDICT_LABELS:
                raise ValueError(f"verdict label must be one of {list(VERDICT_LABELS)}, got {v.get('label')!r} (feature {f}).")
            labels.append(None if v is None else v["label"])
            sources.append(None if v is None else str(v.get("source", "")))
        view["verdict"], view["verdict_source"] = labels, sources
    return view


def _learned_links(connections: Mapping[tuple, Connections], index: dict[str, int], saes: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """Per pair of shown SAEs: the strongest upstream features of each linearly computed
    downstream feature (``a`` -> ``b``, weight, share of the feature's total contribution) and
    every downstream feature's explained variance; on all features (the cap comes later)."""
    out = []
    for key, conn in connections.items():
        key = ConnectionKey(*key)
        ids = sae_id(key.source_layer, key.source_module), sae_id(key.target_layer, key.target_module)
        if ids[0] not in index or ids[1] not in index:
            logger.info("flow view: it shows no %s SAE; the connections %s are left out", ids[0] if ids[0] not in index else ids[1], key)
            continue
        source, target = index[ids[0]], index[ids[1]]
        if (conn.d_a, conn.d_b) != (saes[source]["d_sae"], saes[target]["d_sae"]):
            raise ValueError(f"The connections {key} are {conn.d_a} -> {conn.d_b} features, but the view's SAEs have "
                             f"{saes[source]['d_sae']} and {saes[target]['d_sae']}.")
        upstream, weight = conn.top_upstream(min(top, conn.d_a))
        b, rank = ((upstream >= 0) & conn.linear()[:, None]).nonzero(as_tuple=True)
        a = upstream[b, rank]
        contribution = conn.weights.abs() * conn.upstream_std[:, None]
        share = contribution[a, b] / contribution.sum(0)[b]
        out.append({"source": source, "target": target, "pair": str(key), "threshold": conn.threshold,
                    "a": a.numpy(), "b": b.numpy(), "weight": weight[b, rank].numpy(), "share": share.numpy(),
                    "ev": conn.explained_variance.numpy()})
    return out


def _learned_view(link: dict[str, Any], kept: list[np.ndarray]) -> dict[str, Any]:
    """One pair's learned edges between kept features as parallel arrays; ``ev`` follows the
    target SAE's ``features`` (``None``: the feature does not vary on the data)."""
    keep = kept[link["source"]][link["a"]] & kept[link["target"]][link["b"]]
    return {
        "source": link["source"], "target": link["target"], "pair": link["pair"], "threshold": link["threshold"],
        "a": link["a"][keep].tolist(), "b": link["b"][keep].tolist(),
        "weight": [_round(x) for x in link["weight"][keep].tolist()],
        "share": [round(x, 2) for x in link["share"][keep].tolist()],
        "ev": [_round(x) for x in link["ev"][kept[link["target"]]].tolist()],
    }


def _layout(saes: list[dict[str, Any]], residual: list[int], kept: list[np.ndarray], pairs: list[tuple[list[int], list[int]]],
            edges: np.ndarray) -> list[dict[int, int]]:
    """Row of every kept feature, per SAE (see :func:`flow_view`)."""
    n_layers = len(residual)
    rows: list[dict[int, int]] = [{} for _ in saes]
    nxt = [dict(zip(a, b)) for a, b in pairs]
    # how many layers each residual feature persists for, through kept links (deepest first)
    lasting: list[dict[int, int]] = [{} for _ in range(n_layers)]
    for layer in reversed(range(n_layers)):
        onward = nxt[layer] if layer < len(nxt) else {}
        for f in np.flatnonzero(kept[residual[layer]]).tolist():
            g = onward.get(f)
            lasting[layer][f] = 1 + (lasting[layer + 1][g] if g is not None else 0)
    for layer in range(n_layers):
        mine = rows[residual[layer]]
        if layer > 0 and layer - 1 < len(pairs):
            above = rows[residual[layer - 1]]
            for a, b in zip(*pairs[layer - 1]):
                row = above[a]
                if b not in mine or row < mine[b]:  # several sources (many-to-one): the highest
                    mine[b] = row
        start = max(mine.values(), default=-1) + 1
        new = sorted((f for f in lasting[layer] if f not in mine), key=lambda f: (-lasting[layer][f], f))
        mine.update({f: start + k for k, f in enumerate(new)})
    # attention / MLP features: at the row of the residual feature they feed (rank 0 first)
    for i, s in enumerate(saes):
        if s["module"] == "residual":
            continue
        target_rows = rows[residual[s["layer"]]]
        want: dict[int, int] = {}
        for f, t, g in edges[edges[:, 0] == i][:, [1, 2, 3]].tolist():
            want[f] = min(want.get(f, 1 << 30), target_rows[g])
        order = sorted(np.flatnonzero(kept[i]).tolist(), key=lambda f: (want.get(f, 1 << 30), f))
        last = -1
        for f in order:
            last = max(want.get(f, last + 1), last + 1)
            rows[i][f] = last
    return rows


def _round(x: float) -> float | None:
    return float(f"{x:.{_DIGITS}g}") if np.isfinite(x) else None


def _json(data: Any) -> str:
    """Compact, ASCII-only JSON (NaN as null) to embed in a script file."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(jsonable(data), separators=(",", ":"), allow_nan=False)


# --- the page --------------------------------------------------------------------


_FLOW_SECTION = """
<section id="feature-flow" class="flow-section">
<h2>Feature flow</h2>
<p class="hint">Layers run left to right; each layer shows its attention, MLP and residual SAEs (those present).
Solid lines are SAE Match links between residual SAEs, dashed lines are flow edges (a residual feature's predecessors),
dotted lines are learned connections (sparse linear maps fitted on data) into features they explain on held-out tokens:
a clicked feature's are drawn, tick "learned connections" to draw them all.
Scroll to zoom, drag to pan, click a feature to see its card.</p>
<div id="flow-app">
<div id="flow-controls">
<label title="Hide match links whose cost is above this value">Max match cost <input type="range" id="cost-threshold" min="0" max="1" step="0.001" value="1"> <output id="cost-value"></output></label>
<label title="Hide flow edges whose score is below this value">Min flow score <input type="range" id="score-threshold" min="0" max="1" step="0.001" value="0"> <output id="score-value"></output></label>
<label><input type="checkbox" id="show-matches" checked> match links</label>
<label><input type="checkbox" id="show-edges" checked> flow edges</label>
<label title="Hide learned connections into features whose held-out explained variance is below this value">Min explained variance <input type="range" id="ev-threshold" min="0" max="1" step="0.001" value="0"> <output id="ev-value"></output></label>
<label title="Draw every learned connection (thousands on a full stack); a clicked feature's are drawn either way"><input type="checkbox" id="show-learned"> learned connections</label>
<span id="layer-filter" title="Show or hide layers">Layers:</span>
<input type="search" id="feature-search" placeholder="2/residual/17, 17 or words" title="A feature id (layer/module/feature), a feature index, or words of the explanations of loaded cards">
<button type="button" id="load-cards" title="Load every SAE's cards, so that the search covers all explanations">Load all cards</button>
<button type="button" id="fit-view" title="Show the whole graph">Fit</button>
<span id="search-status" role="status"></span>
</div>
<div id="flow-main">
<div id="flow-canvas"><div id="flow-header"></div><svg id="flow" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Feature flow graph"></svg></div>
<aside id="card" data-state="empty"><p class="placeholder">Click a feature to see its card.</p></aside>
</div>
<div id="legend"></div>
</div>
<noscript><p>This view needs JavaScript.</p></noscript>
</section>
"""


def _anchors(sections: Sequence[Section], taken: set[str]) -> list[str]:
    """A unique id per section: its anchor, or a slug of its title."""
    out = []
    for s in sections:
        base = s.anchor or re.sub(r"[^a-z0-9]+", "-", s.title.lower()).strip("-") or "section"
        anchor, k = base, 2
        while anchor in taken:
            anchor, k = f"{base}-{k}", k + 1
        taken.add(anchor)
        out.append(anchor)
    return out


def _page(title: str, overview: Sequence[Section], sections: Sequence[Section]) -> str:
    """``index.html``: title, table of contents, overview, flow view, other sections (ASCII only)."""
    taken = set(re.findall(r'id="([^"]+)"', _FLOW_SECTION)) | {"toc"}  # ids the page already uses
    first, last = _anchors(overview, taken), _anchors(sections, taken)
    toc = [(a, s.title) for a, s in zip(first, overview)] + [("feature-flow", "Feature flow")] + [(a, s.title) for a, s in zip(last, sections)]

    def block(anchor: str, s: Section) -> str:
        return f'<section id="{html.escape(anchor)}">\n<h2>{html.escape(s.title)}</h2>\n{s.html}\n</section>\n'

    text = (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n"
        "<link rel=\"icon\" href=\"data:,\">\n<link rel=\"stylesheet\" href=\"assets/site.css\">\n</head>\n<body>\n"
        f"<header>\n<h1>{html.escape(title)}</h1>\n<nav id=\"toc\"><ul>"
        + "".join(f'<li><a href="#{html.escape(a)}">{html.escape(t)}</a></li>' for a, t in toc)
        + "</ul></nav>\n</header>\n<main>\n"
        + "".join(block(a, s) for a, s in zip(first, overview))
        + _FLOW_SECTION
        + "".join(block(a, s) for a, s in zip(last, sections))
        + "</main>\n<script src=\"data/view.js\"></script>\n<script src=\"assets/flow.js\"></script>\n</body>\n</html>\n"
    )
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")
