"""The report's interactive page: flow_view's layout, statuses, learned connections and cap on a
planted stack, the files write_site writes (escaped), and the page itself in a real browser."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sae_lens_match.flow import ConnectionKey, ConnectionsConfig, FlowConfig, build_flow_graph, fit_connections, make_flow_stack
from sae_lens_match.report import Section, flow_view, write_site
from sae_lens_match.report.site import STATUS_BITS
from sae_lens_match.matching import match
from tests.report.browser import check_site, require_browser

HOSTILE = '</script><img src=x onerror="document.title=\'PWNED\'">"\'&'


def _copy_feature(sae, src, dst, noise, g, from_sae=None):
    """Make feature ``dst`` of ``sae`` a near copy of feature ``src`` of ``from_sae`` (default: ``sae``)."""
    origin = from_sae or sae
    with torch.no_grad():
        sae.W_dec[dst] = origin.W_dec[src] + noise * origin.W_dec[src].norm() * torch.nn.functional.normalize(torch.randn(sae.cfg.d_in, generator=g), dim=0)
        sae.W_enc[:, dst] = origin.W_enc[:, src]
        sae.b_enc[dst] = origin.b_enc[src]
        sae.threshold[dst] = origin.threshold[src]


@pytest.fixture(scope="module")
def planted():
    """Three planted layers (residual, attention, MLP SAEs) with a split planted at layer 2 and a
    merge at layer 2; SAE Match between the residual SAEs with a cost cut that keeps exactly the
    planted translations."""
    p = make_flow_stack(n_layers=3, d_in=32, d_sae=48, noise=0.2, seed=0)
    res = p.stack.residual
    g = torch.Generator().manual_seed(1)
    cls, src = p.classes, p.sources
    translated_into_2 = {int(src[2][i]) for i, c in enumerate(cls[2]) if c == "translated"}
    # split: layer-1 feature `parent` continues as layer-2 `child` (planted) and, now, as `twin` (a born feature made its copy)
    child = next(i for i, c in enumerate(cls[2]) if c == "translated")
    twin = next(i for i, c in enumerate(cls[2]) if c == "born")
    parent = int(src[2][child])
    _copy_feature(res[2], child, twin, 0.03, g)
    # merge: layer-1 `kept_f` (not from layer 0, continues into layer 2) and `copy_f` (not from layer 0, vanishing) both go to `merged`
    kept_f = next(i for i, c in enumerate(cls[1]) if c != "translated" and i in translated_into_2 and i != parent)
    copy_f = next(i for i, c in enumerate(cls[1]) if c != "translated" and i not in translated_into_2)
    merged = next(i for i in range(48) if cls[2][i] == "translated" and int(src[2][i]) == kept_f)
    _copy_feature(res[1], kept_f, copy_f, 0.03, g)
    graph = build_flow_graph(p.stack, FlowConfig(top_k=2), progress=False)
    matchings = [match(a, b).with_unmatched(max_cost=0.02) for a, b in zip(res, res[1:])]
    plants = {"split": (parent, child, twin), "merge": (merged, kept_f, copy_f)}
    return p, graph, matchings, plants


# the planted connections: each class of residual feature is a copy of its source in this module (MLP ones negated)
LEARNED_CLASSES = {"translated": ("residual", 1.0), "attention": ("attention", 1.0), "mlp": ("mlp", -1.0)}


@pytest.fixture(scope="module")
def learned(planted):
    """Connections fitted on planted codes: a residual feature of a class is ``0.8 * sign`` times
    its planted source's code (plus a little noise), every other feature an unrelated code."""
    p = planted[0]
    g = torch.Generator().manual_seed(2)
    codes = lambda n: (torch.rand(n, 48, generator=g) + 0.5) * (torch.rand(n, 48, generator=g) < 0.15)  # noqa: E731
    found, truth = {}, {}
    for layer in range(3):
        for cls, (module, sign) in LEARNED_CLASSES.items():
            at = layer - 1 if module == "residual" else layer
            if at < 0:
                continue
            x, y = codes(3000), codes(3000)
            key = ConnectionKey(module, at, "residual", layer)
            truth[key] = {f: (int(p.sources[layer][f]), sign) for f, c in enumerate(p.classes[layer]) if c == cls}
            for f, (source, _) in truth[key].items():
                y[:, f] = (sign < 0) + sign * 0.8 * x[:, source] + 0.02 * torch.randn(3000, generator=g)
            found[key] = fit_connections(x, y, ConnectionsConfig(sparsity="topk", k=2))
    return found, truth


def _sae(view, sae_id):
    return next(s for s in view["saes"] if s["id"] == sae_id)


def _rows(view, sae_id):
    s = _sae(view, sae_id)
    return dict(zip(s["features"], s["rows"]))


def _with(view, sae_id, bit):
    s = _sae(view, sae_id)
    return {f for f, st in zip(s["features"], s["status"]) if st & STATUS_BITS[bit]}


def test_flow_view_layout_keeps_matched_features_at_their_match_height(planted):
    p, graph, matchings, plants = planted
    parent, child, twin = plants["split"]
    merged, kept_f, copy_f = plants["merge"]
    view = flow_view(graph, matchings)
    assert [s["id"] for s in view["saes"]][:3] == ["0/attention", "0/mlp", "0/residual"] and view["columns"] == ["attention", "mlp", "residual"]
    xs = [s["x"] for s in view["saes"]]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # layers left to right, columns within a layer
    for i, m in enumerate(view["matches"]):
        above, below = _rows(view, f"{i}/residual"), _rows(view, f"{i + 1}/residual")
        assert m["a"] and all(below[b] == above[a] for a, b in zip(m["a"], m["b"]))  # persisting = horizontal
        matched = set(m["b"])
        assert min(r for f, r in below.items() if f not in matched) > max(below[b] for b in matched)  # new ones below
        assert len(set(below.values())) == len(below)
        # the planted translations are the match links (a split's parent or a merge's target goes to one of its two)
        truth = {(int(p.sources[i + 1][f]), f) for f, c in enumerate(p.classes[i + 1]) if c == "translated"}
        pairs = set(zip(m["a"], m["b"]))
        assert truth - {(parent, child), (kept_f, merged)} <= pairs
        if i == 1:
            assert len(pairs & {(parent, child), (parent, twin)}) == 1 and len(pairs & {(kept_f, merged), (copy_f, merged)}) == 1
    # an attention feature sits at the row of the residual feature it makes
    attn, resid = _rows(view, "2/attention"), _rows(view, "2/residual")
    made = [(int(p.sources[2][f]), f) for f, c in enumerate(p.classes[2]) if c == "attention"]
    assert sum(attn[a] == resid[f] for a, f in made) >= 0.8 * len(made)
    # the graph's classes are carried over
    assert [view["classes"][c] for c in _sae(view, "2/residual")["classes"]] == [graph.layers[2].classes[f] for f in _sae(view, "2/residual")["features"]]


def test_flow_view_statuses_follow_the_planted_stack(planted):
    p, graph, matchings, plants = planted
    view = flow_view(graph, matchings)
    parent, child, twin = plants["split"]
    merged, kept_f, copy_f = plants["merge"]
    not_translated = [{f for f, c in enumerate(layer) if c != "translated"} for layer in p.classes]
    sources_of = [set(), *({int(p.sources[L][f]) for f, c in enumerate(p.classes[L]) if c == "translated"} for L in (1, 2))]
    assert _with(view, "0/residual", "appearing") == set()  # nothing before layer 0
    assert _with(view, "2/residual", "vanishing") == set()  # nothing after the last layer
    assert _with(view, "1/residual", "appearing") == not_translated[1]
    # layer 2: the planted new features appear, and one of the split's two children (their parent has one match)
    appearing_2 = _with(view, "2/residual", "appearing")
    assert appearing_2 - {child, twin} == not_translated[2] - {twin} and len(appearing_2 & {child, twin}) == 1
    # vanishing: layer-0 features nothing continues; at layer 1 also one of the two merged features
    assert _with(view, "0/residual", "vanishing") == set(range(48)) - sources_of[1]
    vanishing_1 = _with(view, "1/residual", "vanishing")
    assert vanishing_1 - {kept_f, copy_f} == set(range(48)) - sources_of[2] - {copy_f} and len(vanishing_1 & {kept_f, copy_f}) == 1
    # splits and merges of the graph
    assert parent in _with(view, "1/residual", "split") and merged in _with(view, "2/residual", "merge")
    index = {s["id"]: i for i, s in enumerate(view["saes"])}
    split = next(b for b in view["branchings"] if b["kind"] == "split" and b["node"] == [index["1/residual"], parent])
    assert sorted(f for _, f in split["partners"]) == sorted([child, twin])
    assert all(b["kind"] in ("split", "merge") for b in view["branchings"]) and len(view["branchings"]) == len(graph.branchings)


def test_flow_view_without_a_graph_and_with_verdicts(planted):
    _, _, matchings, _ = planted
    verdicts = [[None] * 48 for _ in matchings]
    a, b = matchings[0].matched.nonzero()[0, 0].item(), matchings[1].matched.nonzero()[0, 0].item()
    verdicts[0][a] = {"label": "SAME", "source": "heuristic:context_overlap"}
    verdicts[1][b] = {"label": "DIFFERENT", "source": "llm:judge"}
    view = flow_view(None, matchings, verdicts=verdicts)
    assert [s["id"] for s in view["saes"]] == ["0/residual", "1/residual", "2/residual"] and view["columns"] == ["residual"]
    assert view["classes"] is None and view["edges"]["source"] == [] and view["branchings"] == [] and view["score_range"] is None
    assert _sae(view, "0/residual")["hook"] == "blocks.0.hook_resid_post"
    m = view["matches"][0]
    k = m["a"].index(a)
    assert (m["verdict"][k], m["verdict_source"][k]) == ("SAME", "heuristic:context_overlap")
    assert sum(v is not None for v in m["verdict"]) == 1 and "DIFFERENT" in view["matches"][1]["verdict"]
    json.dumps(view, allow_nan=False)  # plain JSON
    with pytest.raises(ValueError, match="verdict label"):
        flow_view(None, matchings, verdicts=[[{"label": "YES", "source": "x"}] * 48, [None] * 48])
    with pytest.raises(ValueError, match="one entry per feature"):
        flow_view(None, matchings, verdicts=[[None] * 3, [None] * 48])
    with pytest.raises(ValueError, match="one matching per pair"):
        flow_view(SimpleNamespace(n_layers=4), matchings)  # only n_layers is read before the check
    with pytest.raises(ValueError, match="needs a flow graph or at least one matching"):
        flow_view(None, [])


def test_flow_view_draws_learned_connections_into_linearly_computed_features(planted, learned):
    _, graph, matchings, _ = planted
    found, truth = learned
    view = flow_view(graph, matchings, connections=found)
    assert [v["pair"] for v in view["learned"]] == [str(k) for k in found] and view["learned_top"] == 3
    for v, (key, conn) in zip(view["learned"], found.items()):
        source, target = view["saes"][v["source"]], view["saes"][v["target"]]
        assert (source["id"], target["id"]) == (f"{key.source_layer}/{key.source_module}", f"{key.target_layer}/{key.target_module}")
        # edges go into the planted (linearly computed) features only, at most 3 each; the strongest is the planted source, with its sign
        assert set(v["b"]) == set(truth[key]) and max(v["b"].count(b) for b in v["b"]) <= 3
        for b, (a, sign) in truth[key].items():
            edges = [(share, a_, w) for a_, b_, w, share in zip(v["a"], v["b"], v["weight"], v["share"]) if b_ == b]
            share, strongest, weight = max(edges)
            assert strongest == a and weight == pytest.approx(0.8 * sign, abs=0.05) and share > 0.9
        # every shown target feature's explained variance, in the order of its features; above the threshold exactly where planted
        assert len(v["ev"]) == len(target["features"]) and v["threshold"] == conn.threshold
        assert {f for f, ev in zip(target["features"], v["ev"]) if ev > v["threshold"]} == set(truth[key])
    lo, hi = view["ev_range"]
    assert 0.5 < lo <= hi <= 1
    json.dumps(view, allow_nan=False)
    # one input per feature: exactly the planted source
    top1 = flow_view(graph, matchings, connections=found, connection_top=1)
    for v, key in zip(top1["learned"], found):
        assert sorted(zip(v["b"], v["a"])) == sorted((b, a) for b, (a, _) in truth[key].items())
    # without a graph the view shows residual SAEs only: only their pairs are drawn
    plain = flow_view(None, matchings, connections=found)
    assert [v["pair"] for v in plain["learned"]] == [str(k) for k in found if k.source_module == "residual"]
    assert flow_view(graph, matchings)["learned"] == [] and flow_view(graph, matchings)["ev_range"] is None
    wrong = {ConnectionKey("residual", 0, "residual", 1): fit_connections(torch.rand(100, 48), torch.rand(100, 7), ConnectionsConfig(sparsity="topk", k=1))}
    with pytest.raises(ValueError, match="connections"):
        flow_view(graph, matchings, connections=wrong)


def test_flow_view_caps_the_nodes_per_sae_keeping_the_busiest(planted, learned):
    _, graph, matchings, _ = planted
    view = flow_view(graph, matchings, max_features=10, connections=learned[0])
    assert view["max_features"] == 10 and set(view["truncated"]) == {s["id"] for s in view["saes"]}
    # links counted independently, on the full matchings and graph
    degree = {s["id"]: np.zeros(s["d_sae"], dtype=int) for s in view["saes"]}
    for i, m in enumerate(matchings):
        for a in m.matched.nonzero().squeeze(1).tolist():
            degree[f"{i}/residual"][a] += 1
            degree[f"{i + 1}/residual"][int(m.permutation[a])] += 1
    for e in graph.edges:
        degree[f"{e.source.layer}/{e.source.module}"][e.source.feature] += 1
        degree[f"{e.target.layer}/{e.target.module}"][e.target.feature] += 1
    for b in graph.branchings:
        for n in (b.node, *b.partners):
            degree[f"{n.layer}/{n.module}"][n.feature] += 1
    for key, conn in learned[0].items():  # learned edges: the top 3 inputs of each linearly computed feature
        inputs, _ = conn.top_upstream(3)
        for b in conn.linear().nonzero().squeeze(1).tolist():
            for a in inputs[b][inputs[b] >= 0].tolist():
                degree[f"{key.source_layer}/{key.source_module}"][a] += 1
                degree[f"{key.target_layer}/{key.target_module}"][b] += 1
    for s in view["saes"]:
        kept = set(s["features"])
        assert len(kept) == 10 == len(s["rows"]) == len(s["status"])
        dropped = set(range(s["d_sae"])) - kept
        assert min(degree[s["id"]][f] for f in kept) >= max(degree[s["id"]][f] for f in dropped)
    kept = {i: set(s["features"]) for i, s in enumerate(view["saes"])}
    for m in view["matches"]:
        assert all(a in kept[m["source"]] and b in kept[m["target"]] for a, b in zip(m["a"], m["b"]))
    e = view["edges"]
    assert all(f in kept[s] and g in kept[t] for s, f, t, g in zip(e["source"], e["source_feature"], e["target"], e["target_feature"]))
    assert all(b["node"][1] in kept[b["node"][0]] for b in view["branchings"])
    assert all(a in kept[v["source"]] and b in kept[v["target"]] for v in view["learned"] for a, b in zip(v["a"], v["b"]))
    assert all(len(v["ev"]) == 10 for v in view["learned"])
    full = flow_view(graph, matchings, max_features=None)
    assert full["truncated"] == [] and all(len(s["features"]) == s["d_sae"] for s in full["saes"])


def _cards(sae_id, hook, d_sae, features, *, hostile_feature=None):
    """Cards in the schema of ``FeatureCards.to_dict()``, made by hand."""
    tokens = ["The", " cat", " sat", " on", ' "mat"', "\n", " <b>", " &amp;", HOSTILE]
    out = []
    for f in features:
        contexts = [
            {"tokens": [0, 1, 2, 3, 4], "acts": [0.0, 0.4, 1.5 + f % 3, 0.2, 0.0], "center": 2},
            {"tokens": [5, 6, 7, 1], "acts": [0.0, 0.3, 0.0, 1.1], "center": 3},
        ]
        if f == hostile_feature:
            contexts.insert(0, {"tokens": [0, 8, 1], "acts": [0.1, 3.5, 0.5], "center": 1})
        out.append({
            "feature": f, "frequency": 0.002 * (f % 9 + 1), "max": 3.5 if f == hostile_feature else 1.5 + f % 3,
            "contexts": contexts,
            "histogram": {"edges": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], "counts": [40, 22, 13, 7, 4, 2, 1]},
            "top_logits": [[1, 2.1], [4, 1.4], [8, 0.9]], "bottom_logits": [[6, -1.3], [7, -0.8]],
            "explanation": {"text": f"cats and mats ({sae_id} #{f})", "source": "heuristic:top_tokens" if f % 2 else "llm:test-model"},
            "neuronpedia": f"https://www.neuronpedia.org/test-model/{sae_id.replace('/', '-')}/{f}" if f % 2 else None,
        })
    return {"label": sae_id, "hook": hook, "d_sae": d_sae, "n_positions": 20000, "neuronpedia_id": None, "tokens": tokens, "features": out}


def _site(planted, learned, out_dir):
    p, graph, matchings, _ = planted
    view = flow_view(graph, matchings, verdicts=[[{"label": "SAME", "source": "heuristic:context_overlap"} if ok else None for ok in m.matched.tolist()] for m in matchings],
                     connections=learned[0])
    cards = {}
    for s in view["saes"]:
        if s["id"] == "1/residual":
            continue  # an SAE without cards
        some = range(s["d_sae"]) if s["module"] == "residual" else range(0, s["d_sae"], 2)
        top = min(s["features"], key=lambda f: dict(zip(s["features"], s["rows"]))[f])
        cards[s["id"]] = _cards(s["id"], s["hook"], s["d_sae"], some, hostile_feature=top if s["id"] == "2/residual" else None)
    overview = [Section("What this run did <2>", "<p>Three <b>planted</b> layers.</p>")]
    sections = [Section("Tables", "<table><tr><td>1</td></tr></table>", anchor="tables"), Section("Tables", "<p>again</p>")]
    index = write_site(out_dir, title='Planted <run> "3 layers"', view=view, cards=cards, overview=overview, sections=sections)
    return view, cards, index


def test_write_site_writes_the_files_and_escapes_text(planted, learned, tmp_path):
    view, cards, index = _site(planted, learned, tmp_path / "site")
    site = tmp_path / "site"
    assert index == site / "index.html"
    page = index.read_text()
    assert page.isascii() and page.startswith("<!doctype html>")
    assert "<title>Planted &lt;run&gt; &quot;3 layers&quot;</title>" in page and "<run>" not in page
    assert "What this run did &lt;2&gt;" in page and "<p>Three <b>planted</b> layers.</p>" in page  # titles escaped, section HTML as given
    # order: overview, flow view, other sections; the contents link each, anchors unique
    assert page.index("What this run did") < page.index('id="feature-flow"') < page.index('id="tables"') < page.index('id="tables-2"')
    assert '<a href="#feature-flow">' in page and '<a href="#tables-2">' in page
    for name in ("flow.js", "site.css"):
        packaged = Path(__file__).parents[2] / "sae_lens_match" / "report" / "assets" / name
        assert (site / "assets" / name).read_text() == packaged.read_text()
    text = (site / "data" / "view.js").read_text()
    assert text.startswith("window.SLM_VIEW = ") and text.isascii()
    written = json.loads(text[len("window.SLM_VIEW = "):].rstrip().rstrip(";"))
    assert {s["id"]: s["card"] for s in written["saes"]} == {s["id"]: (f"data/cards/{s['id'].replace('/', '-')}.js" if s["id"] in cards else None) for s in view["saes"]}
    assert "card" not in view["saes"][0]  # the caller's view is not changed
    assert written["learned"] == view["learned"] and sum(len(v["a"]) for v in written["learned"]) > 0
    # a card file is one call; the hostile token is data in a JSON string, never markup in a page
    hostile = (site / "data" / "cards" / "2-residual.js").read_text()
    assert hostile.startswith('window.SLM_ADD_CARDS("2/residual", {') and hostile.isascii()
    assert json.loads(hostile[len('window.SLM_ADD_CARDS("2/residual", '):].rstrip().rstrip(";").rstrip(")"))["tokens"][-1] == HOSTILE
    assert "onerror" not in page and not (site / "data" / "cards" / "1-residual.js").exists()
    assert not list(site.rglob(".*.tmp"))
    with pytest.raises(ValueError, match="cannot name a card file"):
        write_site(tmp_path / "bad", title="t", view=view, cards={"../../x": cards["0/residual"]})
    with pytest.raises(ValueError, match="output of flow_view"):
        write_site(tmp_path / "bad", title="t", view={"saes": []})


@pytest.mark.browser
def test_the_page_works_in_a_browser(planted, learned, tmp_path):
    paths = require_browser()
    view, cards, index = _site(planted, learned, tmp_path / "site")
    hostile = min(_sae(view, "2/residual")["features"], key=lambda f: _rows(view, "2/residual")[f])
    facts = check_site(index, click=("2/residual", hostile), screenshot=tmp_path / "page.png", paths=paths)
    assert facts["nodes"] == sum(len(s["features"]) for s in view["saes"]) and facts["layers"] == [0, 1, 2]
    # the hostile token is shown as text; nothing of it became an element
    assert HOSTILE in facts["card_text"] and facts["card_images"] == 0 and facts["card_contexts"] == 3
    assert "heuristic" in facts["card_text"] or "LLM" in facts["card_text"]
    assert "Path across layers" in facts["card_text"] and "SAME" in facts["card_text"]
    assert "Learned connections" in facts["card_text"] and "explained variance" in facts["card_text"]
    # the learned-connections checkbox showed and hid every learned edge, the selected feature's stayed; a learned input on a card jumps to its feature
    assert facts["controls"]["learned_edges"] == sum(len(v["a"]) for v in view["learned"]) and facts["controls"]["learned_of_selected"] >= 1
    assert facts["learned_card"] is not None and "weight" in facts["learned_card"]["text"]
    assert facts["no_card"]["sae"] == "1/residual" and "No feature cards" in facts["no_card"]["text"]
    assert facts["links"] >= 4 and (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"
