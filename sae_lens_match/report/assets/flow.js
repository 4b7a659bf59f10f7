/* sae-lens-match: the feature flow view and its feature card panel.
 *
 * Draws window.SLM_VIEW (data/view.js, written by sae_lens_match.report.site.flow_view) into
 * svg#flow and shows the card of a clicked feature in #card. The cards of one SAE live in
 * data/cards/<layer>-<module>.js, which calls window.SLM_ADD_CARDS(id, cards); it is loaded by a
 * <script> tag the first time a node of that SAE is clicked (a file:// page cannot fetch JSON).
 *
 * Layout comes from Python; filters only hide elements. Text from the data is always set with
 * textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  const SVG_NS = "http://www.w3.org/2000/svg";
  const COL_W = 110; // user units between two columns
  const ROW_H = 14; // user units between two rows
  const R = 5; // node radius
  const HEADER_PX = 30; // screen pixels kept free above row 0 for the column labels
  const SHORT = { residual: "resid", attention: "attn", mlp: "MLP" };
  const CLASS_WORDS = {
    translated: "from the previous layer",
    attention: "made by attention",
    mlp: "made by the MLP",
    mix: "mixed sources",
    born: "born here (no predecessor)",
  };
  const COST_STOPS = ["#08306b", "#2171b5", "#6baed6", "#fdae6b"]; // cheap (dark) -> costly (light)
  const SCORE_STOPS = ["#cfcfcf", "#333333"]; // weak (light) -> strong (dark)
  const LEARNED = { pos: "#e08214", neg: "#8073ac" }; // learned weights by sign (orange / purple: apart from the blues and greys)
  const learnedOpacity = (share) => 0.3 + 0.7 * Math.min(1, Math.max(0, share || 0)); // a larger share of the feature's input: more opaque

  const view = window.SLM_VIEW;
  const $ = (id) => document.getElementById(id);
  const svg = $("flow");
  const card = $("card");
  if (!view || !svg) {
    const app = $("flow-app");
    if (app) app.textContent = "The flow view's data (data/view.js) did not load: keep the report's data/ folder next to index.html.";
    return;
  }

  /* ---------- small helpers ---------- */

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }

  function fmt(x, digits) {
    if (x === null || x === undefined || !isFinite(x)) return "n/a";
    const d = digits || 3;
    const a = Math.abs(x);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? Number(x).toExponential(d - 1) : String(Number(Number(x).toPrecision(d)));
  }

  function rgb(hex) {
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }

  /** The colour at t in [0, 1] along evenly spaced stops. */
  function ramp(stops, t) {
    const u = Math.min(1, Math.max(0, isFinite(t) ? t : 0)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(u));
    const a = rgb(stops[i]), b = rgb(stops[i + 1]);
    const c = a.map((v, k) => Math.round(v + (b[k] - v) * (u - i)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function scaled(range, x) {
    if (!range || range[1] <= range[0]) return 0;
    return (x - range[0]) / (range[1] - range[0]);
  }

  /** A token as shown: line breaks and tabs made visible. */
  function shown(token) {
    if (token === "") return "\u2205";
    return String(token).replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
  }

  /* ---------- the model: nodes and links ---------- */

  const classes = view.classes || null;
  const bits = view.status_bits;
  const saes = view.saes.map((s, i) => Object.assign({}, s, { index: i, nodes: new Map() }));
  const nodes = [];
  const matchLinks = [];
  const edgeLinks = [];
  const learnedLinks = [];
  const layerOn = new Array(view.n_layers).fill(true);
  const cards = {}; // SAE id -> {data, byFeature}
  const loading = {}; // SAE id -> Promise
  let selected = null;
  let searchSet = null;
  let hits = [];

  for (const s of saes) {
    s.features.forEach((f, k) => {
      const names = Object.keys(bits).filter((name) => s.status[k] & bits[name]);
      const node = {
        sae: s, feature: f, row: s.rows[k], layer: s.layer, statusNames: names,
        cls: s.classes ? classes[s.classes[k]] : null,
        x: s.x * COL_W, y: s.rows[k] * ROW_H,
        matchIn: [], matchOut: [], edgeIn: [], edgeOut: [], learnedIn: [], learnedOut: [], explained: [], branchings: [],
        visible: true, el: null, mark: null,
      };
      s.nodes.set(f, node);
      nodes.push(node);
    });
  }
  const nodeAt = (saeIndex, feature) => saes[saeIndex].nodes.get(feature);
  const nodeName = (n) => `${n.sae.id}/${n.feature}`;

  view.matches.forEach((m) => {
    m.a.forEach((a, k) => {
      const link = {
        source: nodeAt(m.source, a), target: nodeAt(m.target, m.b[k]), cost: m.cost[k],
        verdict: m.verdict ? m.verdict[k] : null, verdictSource: m.verdict_source ? m.verdict_source[k] : null, el: null,
      };
      link.source.matchOut.push(link);
      link.target.matchIn.push(link);
      matchLinks.push(link);
    });
  });
  const E = view.edges;
  E.source.forEach((s, k) => {
    const link = {
      source: nodeAt(s, E.source_feature[k]), target: nodeAt(E.target[k], E.target_feature[k]),
      score: E.score[k], rank: E.rank[k], el: null,
    };
    link.source.edgeOut.push(link);
    link.target.edgeIn.push(link);
    edgeLinks.push(link);
  });
  (view.learned || []).forEach((p, pi) => {
    const target = saes[p.target];
    // every shown feature of the target SAE: how much of it this pair explains (its card says so)
    target.features.forEach((f, k) => target.nodes.get(f).explained.push({ pair: pi, source: saes[p.source], ev: p.ev[k], threshold: p.threshold }));
    p.a.forEach((a, k) => {
      const link = { pair: pi, source: nodeAt(p.source, a), target: nodeAt(p.target, p.b[k]), weight: p.weight[k], share: p.share[k], el: null };
      link.ev = link.target.explained[link.target.explained.length - 1].ev;
      link.source.learnedOut.push(link);
      link.target.learnedIn.push(link);
      learnedLinks.push(link);
    });
  });
  view.branchings.forEach((b) => {
    const branching = { kind: b.kind, node: nodeAt(b.node[0], b.node[1]), partners: b.partners.map((p) => nodeAt(p[0], p[1])) };
    branching.node.branchings.push(branching);
    branching.partners.forEach((p) => p.branchings.push(branching));
  });

  /* ---------- drawing ---------- */

  function statusWords(node) {
    if (node.sae.module !== "residual") return [];
    if (node.statusNames.length) return node.statusNames;
    return view.matches.length ? ["persisting"] : [];
  }

  function draw() {
    const gEdges = svgEl("g", { class: "edges" });
    const gMatches = svgEl("g", { class: "matches" });
    const gLearned = svgEl("g", { class: "learned" });
    const gMarks = svgEl("g", { class: "branches" });
    const gNodes = svgEl("g", { class: "nodes" });
    for (const link of edgeLinks) {
      link.el = svgEl("line", {
        class: "link edge", x1: link.source.x, y1: link.source.y, x2: link.target.x, y2: link.target.y,
        stroke: ramp(SCORE_STOPS, scaled(view.score_range, link.score)),
      });
      gEdges.appendChild(link.el);
    }
    for (const link of learnedLinks) {
      const sign = link.weight < 0 ? "neg" : "pos";
      link.el = svgEl("line", {
        class: `link learned ${sign}`, x1: link.source.x, y1: link.source.y, x2: link.target.x, y2: link.target.y,
        stroke: LEARNED[sign], "stroke-opacity": learnedOpacity(link.share),
      });
      gLearned.appendChild(link.el);
    }
    for (const link of matchLinks) {
      link.el = svgEl("line", {
        class: "link match", x1: link.source.x, y1: link.source.y, x2: link.target.x, y2: link.target.y,
        stroke: ramp(COST_STOPS, scaled(view.cost_range, link.cost)),
      });
      gMatches.appendChild(link.el);
    }
    for (const node of nodes) {
      const status = statusWords(node);
      const cls = ["node", node.sae.module].concat(node.cls ? ["cls-" + node.cls] : [], node.statusNames);
      const c = svgEl("circle", {
        class: cls.join(" "), cx: node.x, cy: node.y, r: R,
        "data-sae": node.sae.id, "data-feature": node.feature, "data-layer": node.layer,
        "data-module": node.sae.module, "data-status": status.join(" "),
      });
      const title = svgEl("title");
      title.textContent = [nodeName(node), node.cls ? `${node.cls} (${CLASS_WORDS[node.cls]})` : null, status.join(", ") || null]
        .filter(Boolean).join(" \u00b7 ");
      c.appendChild(title);
      node.el = c;
      gNodes.appendChild(c);
      for (const kind of ["split", "merge"]) {
        if (!node.statusNames.includes(kind)) continue;
        const d = R + 3;
        const mark = svgEl("rect", { class: `branch ${kind}`, x: node.x - d, y: node.y - d, width: 2 * d, height: 2 * d });
        if (kind === "merge") mark.setAttribute("transform", `rotate(45 ${node.x} ${node.y})`);
        node.mark = mark;
        gMarks.appendChild(mark);
      }
    }
    svg.append(gEdges, gMatches, gLearned, gMarks, gNodes);
  }

  /* ---------- zoom and pan (on the viewBox) ---------- */

  const vb = { x: 0, y: 0, w: 1, h: 1 };
  const bounds = (() => {
    const xs = nodes.map((n) => n.x), ys = nodes.map((n) => n.y);
    const minX = Math.min(...saes.map((s) => s.x * COL_W)) - COL_W / 2;
    const maxX = Math.max(...saes.map((s) => s.x * COL_W)) + COL_W / 2;
    const maxY = (ys.length ? ys.reduce((a, b) => Math.max(a, b), 0) : 0) + ROW_H;
    return { x: minX, y: -ROW_H, w: Math.max(maxX - minX, COL_W), h: Math.max(maxY + ROW_H, ROW_H * 4), n: xs.length };
  })();

  function size() {
    const r = svg.getBoundingClientRect();
    return { W: Math.max(r.width, 1), H: Math.max(r.height, 1) };
  }

  function applyViewBox() {
    svg.setAttribute("viewBox", `${vb.x} ${vb.y} ${vb.w} ${vb.h}`);
    updateHeader();
  }

  function setScale(scale, x, yTop) {
    const { W, H } = size();
    vb.w = W / scale;
    vb.h = H / scale;
    vb.x = x;
    vb.y = yTop - HEADER_PX / scale;
    applyViewBox();
  }

  function fit(all) {
    const { W, H } = size();
    const scaleAll = Math.min(W / bounds.w, (H - HEADER_PX) / bounds.h);
    const scaleWidth = Math.min(W / bounds.w, 1.5);
    const scale = all ? Math.min(scaleAll, 2) : Math.min(Math.max(scaleAll, scaleWidth), 2);
    setScale(scale, bounds.x - (W / scale - bounds.w) / 2, bounds.y);
  }

  function centerOn(node) {
    const inside = node.x > vb.x && node.x < vb.x + vb.w && node.y > vb.y + vb.h * 0.05 && node.y < vb.y + vb.h;
    if (inside) return;
    vb.x = node.x - vb.w / 2;
    vb.y = node.y - vb.h / 2;
    applyViewBox();
  }

  function updateHeader() {
    const header = $("flow-header");
    const { W } = size();
    if (!header.childElementCount) {
      for (const s of saes) {
        header.appendChild(el("span", { class: s.module, "data-sae": s.id, title: s.hook || s.id }, `L${s.layer} ${SHORT[s.module]}`));
      }
    }
    Array.from(header.children).forEach((span, i) => {
      const px = (saes[i].x * COL_W - vb.x) * (W / vb.w);
      span.style.left = `${px}px`;
      span.style.display = px < 10 || px > W - 10 ? "none" : "";
    });
  }

  function installZoomAndPan() {
    svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const { W, H } = size();
      const r = svg.getBoundingClientRect();
      const px = (e.clientX - r.left) / W, py = (e.clientY - r.top) / H;
      const ux = vb.x + px * vb.w, uy = vb.y + py * vb.h;
      const delta = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      const factor = Math.exp(Math.max(-1, Math.min(1, delta * 0.0015)));
      const w = Math.min(Math.max(vb.w * factor, COL_W * 0.5), Math.max(bounds.w, bounds.h) * 20);
      vb.h *= w / vb.w;
      vb.w = w;
      vb.x = ux - px * vb.w;
      vb.y = uy - py * vb.h;
      applyViewBox();
    }, { passive: false });

    let drag = null;
    let suppressClick = false;
    svg.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, vx: vb.x, vy: vb.y, moved: false, id: e.pointerId };
    });
    svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) {
        drag.moved = true;
        svg.setPointerCapture(drag.id);
        svg.classList.add("panning");
      }
      const { W } = size();
      vb.x = drag.vx - dx * (vb.w / W);
      vb.y = drag.vy - dy * (vb.w / W);
      applyViewBox();
    });
    const end = () => {
      if (drag && drag.moved) suppressClick = true;
      drag = null;
      svg.classList.remove("panning");
    };
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    svg.addEventListener("click", (e) => {
      if (suppressClick) {
        suppressClick = false;
        return;
      }
      const target = e.target.closest("circle.node");
      if (target) select(saes.find((s) => s.id === target.dataset.sae).nodes.get(Number(target.dataset.feature)), false);
      else clearSelection();
    });
    if (window.ResizeObserver) new ResizeObserver(() => {
      const { W, H } = size();
      vb.h = vb.w * (H / W);
      applyViewBox();
    }).observe(svg);
  }

  /* ---------- filters ---------- */

  function applyFilters() {
    const costMax = parseFloat($("cost-threshold").value);
    const scoreMin = parseFloat($("score-threshold").value);
    const showMatches = $("show-matches").checked, showEdges = $("show-edges").checked;
    for (const node of nodes) {
      node.visible = layerOn[node.layer] && (searchSet === null || searchSet.has(node));
      node.el.classList.toggle("hidden", !node.visible);
      if (node.mark) node.mark.classList.toggle("hidden", !node.visible);
    }
    for (const link of matchLinks) {
      const ok = showMatches && (link.cost === null || !(link.cost > costMax)) && link.source.visible && link.target.visible;
      link.el.classList.toggle("hidden", !ok);
    }
    for (const link of edgeLinks) {
      const ok = showEdges && (link.score === null || !(link.score < scoreMin)) && link.source.visible && link.target.visible;
      link.el.classList.toggle("hidden", !ok);
    }
    filterLearned();
    $("cost-value").textContent = view.cost_range ? fmt(costMax) : "n/a";
    $("score-value").textContent = view.score_range ? fmt(scoreMin) : "n/a";
  }

  /** Learned edges: all when the box is ticked (there are thousands), else only the selected feature's. */
  function filterLearned() {
    const evMin = parseFloat($("ev-threshold").value);
    const showLearned = $("show-learned").checked;
    for (const link of learnedLinks) {
      const ok = (showLearned || link.source === selected || link.target === selected) && !(link.ev < evMin) && link.source.visible && link.target.visible;
      link.el.classList.toggle("hidden", !ok);
    }
    $("ev-value").textContent = view.ev_range ? fmt(evMin) : "n/a";
  }

  function slider(input, range, atMax) {
    if (!range) {
      input.disabled = true;
      return;
    }
    input.min = String(range[0]);
    input.max = String(range[1]);
    input.step = "any";
    input.value = String(atMax ? range[1] : range[0]);
    input.addEventListener("input", applyFilters);
  }

  function installControls() {
    slider($("cost-threshold"), view.cost_range, true);
    slider($("score-threshold"), view.score_range, false);
    slider($("ev-threshold"), view.ev_range, false);
    if (!view.matches.length) $("show-matches").disabled = true;
    if (!edgeLinks.length) $("show-edges").disabled = true;
    if (!learnedLinks.length) $("show-learned").disabled = true;
    $("show-matches").addEventListener("change", applyFilters);
    $("show-edges").addEventListener("change", applyFilters);
    $("show-learned").addEventListener("change", applyFilters);
    const layers = $("layer-filter");
    for (let layer = 0; layer < view.n_layers; layer++) {
      const box = el("input", { type: "checkbox", "data-layer": layer });
      box.checked = true;
      box.addEventListener("change", () => {
        layerOn[layer] = box.checked;
        applyFilters();
      });
      const label = el("label", {});
      label.append(box, document.createTextNode(String(layer)));
      layers.appendChild(label);
    }
    let timer = null;
    const search = $("feature-search");
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(runSearch, 200);
    });
    search.addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      clearTimeout(timer);
      runSearch();
      if (hits.length) select(hits[0], true);
    });
    $("fit-view").addEventListener("click", () => fit(true));
    const withCards = saes.filter((s) => s.card);
    const loadAll = $("load-cards");
    if (!withCards.length) loadAll.disabled = true;
    loadAll.addEventListener("click", () => {
      loadAll.disabled = true;
      Promise.all(withCards.map((s) => loadCards(s).catch(() => null))).then(runSearch);
    });
  }

  /** Hits of the query and the match paths through them: what the search leaves visible. */
  function runSearch() {
    const q = $("feature-search").value.trim();
    hits.forEach((n) => n.el.classList.remove("hit"));
    hits = [];
    let note = "";
    if (!q) {
      searchSet = null;
      $("search-status").textContent = "";
      applyFilters();
      return;
    }
    const id = q.match(/^(\d+)\s*\/\s*([a-z]+)\s*\/\s*(\d+)$/i);
    const modules = { residual: "residual", resid: "residual", attention: "attention", attn: "attention", mlp: "mlp" };
    if (id) {
      const s = saes.find((x) => x.layer === Number(id[1]) && x.module === modules[id[2].toLowerCase()]);
      const n = s && s.nodes.get(Number(id[3]));
      if (n) hits.push(n);
    } else if (/^\d+$/.test(q)) {
      for (const s of saes) if (s.nodes.has(Number(q))) hits.push(s.nodes.get(Number(q)));
    } else {
      const words = q.toLowerCase();
      const loaded = saes.filter((s) => cards[s.id]);
      for (const s of loaded) {
        for (const f of cards[s.id].data.features) {
          const text = f.explanation && f.explanation.text;
          if (text && text.toLowerCase().includes(words) && s.nodes.has(f.feature)) hits.push(s.nodes.get(f.feature));
        }
      }
      const total = saes.filter((s) => s.card).length;
      note = ` in the explanations of ${loaded.length} of ${total} loaded card files` + (loaded.length < total ? " (Load all cards to search them all)" : "");
    }
    searchSet = new Set();
    for (const n of hits) {
      n.el.classList.add("hit");
      pathOf(n).nodes.forEach((m) => searchSet.add(m));
    }
    $("search-status").textContent = `${hits.length} feature${hits.length === 1 ? "" : "s"} found${note}`;
    applyFilters();
  }

  /* ---------- selection and the path of a feature ---------- */

  /** The feature's match chain backward and forward (the cheapest link at each step). */
  function pathOf(node) {
    const back = [], fwd = [], links = [];
    const best = (list) => list.reduce((a, b) => (a === null || b.cost < a.cost ? b : a), null);
    for (let n = node, l = best(n.matchIn); l && !back.includes(l.source); l = best(n.matchIn)) {
      back.unshift(l.source);
      links.push(l);
      n = l.source;
    }
    for (let n = node, l = best(n.matchOut); l && !fwd.includes(l.target); l = best(n.matchOut)) {
      fwd.push(l.target);
      links.push(l);
      n = l.target;
    }
    return { nodes: back.concat([node], fwd), links: links };
  }

  function clearSelection() {
    svg.querySelectorAll(".on-path, .selected").forEach((e) => e.classList.remove("on-path", "selected"));
    svg.classList.remove("has-selection");
    selected = null;
    filterLearned();
  }

  function select(node, center) {
    clearSelection();
    selected = node;
    const path = pathOf(node);
    const flows = node.edgeIn.concat(node.edgeOut, node.learnedIn, node.learnedOut);
    path.nodes.concat(flows.map((l) => l.source), flows.map((l) => l.target)).forEach((n) => n.el.classList.add("on-path"));
    path.links.concat(flows).forEach((l) => l.el.classList.add("on-path"));
    node.el.classList.add("selected");
    svg.classList.add("has-selection");
    filterLearned();
    if (center) centerOn(node);
    renderCard(node);
  }

  /* ---------- cards ---------- */

  window.SLM_ADD_CARDS = function (id, data) {
    const byFeature = new Map();
    data.features.forEach((f) => byFeature.set(f.feature, f));
    cards[id] = { data: data, byFeature: byFeature };
  };

  function loadCards(sae) {
    if (cards[sae.id]) return Promise.resolve(cards[sae.id]);
    if (!loading[sae.id]) {
      loading[sae.id] = new Promise((resolve, reject) => {
        const script = el("script", { src: sae.card });
        script.onload = () => (cards[sae.id] ? resolve(cards[sae.id]) : reject(new Error(`${sae.card} did not add cards for ${sae.id}`)));
        script.onerror = () => reject(new Error(`could not load ${sae.card}`));
        document.head.appendChild(script);
      });
    }
    return loading[sae.id];
  }

  function jump(node, text) {
    const b = el("button", { type: "button", class: "jump", "data-sae": node.sae.id, "data-feature": node.feature }, text || nodeName(node));
    b.addEventListener("click", () => select(node, true));
    return b;
  }

  function section(title) {
    card.appendChild(el("h4", {}, title));
  }

  function renderCard(node) {
    const s = node.sae;
    card.replaceChildren();
    card.dataset.sae = s.id;
    card.dataset.feature = String(node.feature);
    card.scrollTop = 0;
    card.appendChild(el("h3", {}, `${s.id} \u00b7 feature ${node.feature}`));
    card.appendChild(el("p", { class: "meta" }, `${s.hook || "hook unknown"} \u00b7 ${s.d_sae} features`));
    const tags = el("p", { class: "tags" });
    if (node.cls) tags.appendChild(el("span", { class: "badge status", title: CLASS_WORDS[node.cls] }, `class: ${node.cls}`));
    statusWords(node).forEach((w) => tags.appendChild(el("span", { class: "badge status" }, w)));
    if (tags.childElementCount) card.appendChild(tags);

    if (!s.card) {
      card.dataset.state = "no-cards";
      const others = saes.some((x) => x.card);
      card.appendChild(el("p", { class: "no-card" }, others
        ? `No feature cards were written for ${s.id}: this run computed cards for other SAEs only.`
        : "No feature cards were written for this report (the run computed none)."));
    } else if (!cards[s.id]) {
      card.dataset.state = "loading";
      card.appendChild(el("p", { class: "loading" }, "Loading cards\u2026"));
      loadCards(s).then(
        () => { if (selected === node) renderCard(node); },
        (error) => {
          if (selected !== node) return;
          card.dataset.state = "error";
          card.querySelector(".loading").replaceWith(el("p", { class: "no-card" }, `The cards of ${s.id} could not be read (${error.message}).`));
        },
      );
    } else {
      const c = cards[s.id].byFeature.get(node.feature);
      if (!c) {
        card.dataset.state = "no-feature";
        card.appendChild(el("p", { class: "no-card" }, `No card for feature ${node.feature}: the cards of ${s.id} cover ${cards[s.id].data.features.length} features.`));
      } else {
        card.dataset.state = "card";
        renderFeature(c, cards[s.id].data);
      }
    }
    renderLinks(node);
  }

  function renderFeature(f, data) {
    const tokens = data.tokens;
    const ex = el("p", { class: "explanation" });
    if (f.explanation) {
      const source = String(f.explanation.source || "");
      const kind = source.toLowerCase().startsWith("llm") ? "llm" : source.toLowerCase().startsWith("heuristic") ? "heuristic" : "other";
      ex.appendChild(el("span", { class: `badge ${kind}`, title: source }, kind === "llm" ? "LLM" : kind === "heuristic" ? "heuristic" : source || "unknown"));
      ex.appendChild(el("span", { class: "text" }, f.explanation.text));
    } else {
      ex.appendChild(el("span", { class: "muted" }, "No explanation."));
    }
    card.appendChild(ex);
    const positions = data.n_positions ? ` of ${data.n_positions.toLocaleString("en")} positions` : "";
    card.appendChild(el("p", { class: "stats" }, `Fires on ${fmt(100 * f.frequency)} %${positions} \u00b7 max activation ${fmt(f.max)}`));
    if (typeof f.neuronpedia === "string" && f.neuronpedia.startsWith("https://")) {
      const p = el("p", {});
      p.appendChild(el("a", { href: f.neuronpedia, target: "_blank", rel: "noopener noreferrer", class: "neuronpedia" }, "Open on Neuronpedia \u2197"));
      card.appendChild(p);
    }

    section("Top-activating contexts");
    if (!f.contexts.length) card.appendChild(el("p", { class: "muted" }, "It never fired on the data."));
    for (const ctx of f.contexts) {
      const div = el("div", { class: "context" });
      const peak = ctx.acts.reduce((a, b) => Math.max(a, b), 0);
      const top = f.max > 0 ? f.max : peak || 1;
      const center = ctx.center >= 0 && ctx.center < ctx.tokens.length ? ctx.center : ctx.acts.indexOf(peak);
      div.appendChild(el("span", { class: "act", title: "the context's largest activation" }, fmt(peak)));
      ctx.tokens.forEach((t, i) => {
        const a = ctx.acts[i];
        const span = el(i === center ? "b" : "span", { class: i === center ? "tok max" : "tok", title: `${JSON.stringify(String(tokens[t]))}: ${fmt(a)}` }, shown(tokens[t]));
        if (a > 0) span.style.backgroundColor = `rgba(255, 128, 0, ${(0.08 + 0.8 * Math.min(1, a / top)).toFixed(3)})`;
        div.appendChild(span);
      });
      card.appendChild(div);
    }

    if (f.histogram && f.histogram.counts.length) {
      section("Activations (when firing)");
      card.appendChild(histogram(f.histogram));
    }
    if (f.top_logits.length || f.bottom_logits.length) {
      section("Output tokens (direct effect)");
      const box = el("div", { class: "logits" });
      for (const [title, list, kind] of [["raises", f.top_logits, "up"], ["lowers", f.bottom_logits, "down"]]) {
        const col = el("div", { class: `logit-list ${kind}` });
        col.appendChild(el("div", { class: "muted" }, title));
        list.forEach(([t, v]) => col.appendChild(el("span", { class: `logit ${kind}`, title: fmt(v) }, `${shown(tokens[t])}`)));
        box.appendChild(col);
      }
      card.appendChild(box);
    }
  }

  function histogram(h) {
    const W = 260, H = 60, pad = 12;
    const n = h.counts.length;
    const most = h.counts.reduce((a, b) => Math.max(a, b), 0) || 1;
    const s = svgEl("svg", { class: "histogram", width: W, height: H + pad, viewBox: `0 0 ${W} ${H + pad}` });
    h.counts.forEach((c, i) => {
      const bh = (H - 2) * (c / most);
      const bar = svgEl("rect", { x: (i * W) / n + 0.5, y: H - bh, width: Math.max(W / n - 1, 0.5), height: bh });
      const title = svgEl("title");
      title.textContent = `${fmt(h.edges[i])} \u2013 ${fmt(h.edges[i + 1])}: ${c}`;
      bar.appendChild(title);
      s.appendChild(bar);
    });
    const lo = svgEl("text", { x: 0, y: H + pad - 1 });
    lo.textContent = fmt(h.edges[0]);
    const hi = svgEl("text", { x: W, y: H + pad - 1, "text-anchor": "end" });
    hi.textContent = fmt(h.edges[h.edges.length - 1]);
    s.append(lo, hi);
    return s;
  }

  function renderLinks(node) {
    const verdicts = node.matchOut.concat(node.matchIn).filter((l) => l.verdict);
    if (verdicts.length) {
      section("Verdict on its match");
      for (const l of verdicts) {
        const p = el("p", { class: "verdict" });
        p.appendChild(el("span", { class: `badge ${l.verdict}`, title: l.verdictSource || "" }, l.verdict));
        const out = l.source === node;
        p.append(document.createTextNode(out ? "match to " : "match from "), jump(out ? l.target : l.source));
        if (l.verdictSource) p.appendChild(el("span", { class: "muted" }, ` \u00b7 ${l.verdictSource}`));
        card.appendChild(p);
      }
    }

    if (node.sae.module === "residual" && view.matches.length) {
      section("Path across layers (SAE Match)");
      const path = pathOf(node);
      const list = el("ol", { class: "path" });
      path.nodes.forEach((n, i) => {
        const li = el("li", { class: n === node ? "current" : "" });
        li.appendChild(n === node ? el("span", {}, nodeName(n)) : jump(n));
        const next = path.links.find((l) => l.source === n && path.nodes[i + 1] === l.target);
        if (next) li.appendChild(el("span", { class: "muted" }, ` \u2192 cost ${fmt(next.cost)}`));
        list.appendChild(li);
      });
      card.appendChild(list);
      const first = path.nodes[0], last = path.nodes[path.nodes.length - 1];
      const ends = [];
      if (first.statusNames.includes("appearing")) ends.push(`appears at layer ${first.layer}`);
      if (last.statusNames.includes("vanishing")) ends.push(`no match after layer ${last.layer}`);
      if (ends.length) card.appendChild(el("p", { class: "muted" }, ends.join("; ") + "."));
    }

    if (node.edgeIn.length || node.edgeOut.length || view.edges.source.length) {
      section("Flow");
      const list = el("ul", { class: "flow" });
      const item = (prefix, other, l) => {
        const li = el("li", {});
        li.append(document.createTextNode(prefix), jump(other));
        li.appendChild(el("span", { class: "muted" }, ` \u00b7 ${view.edge_score || "score"} ${fmt(l.score)} \u00b7 rank ${l.rank}`));
        list.appendChild(li);
      };
      node.edgeIn.slice().sort((a, b) => b.score - a.score).forEach((l) => item("from ", l.source, l));
      node.edgeOut.slice().sort((a, b) => b.score - a.score).forEach((l) => item("into ", l.target, l));
      if (!list.childElementCount) list.appendChild(el("li", { class: "muted" }, "no flow edge (no predecessor passed its threshold)"));
      card.appendChild(list);
    }

    renderLearned(node);

    for (const b of node.branchings) {
      const p = el("p", { class: "branching" });
      if (b.node === node) {
        p.append(document.createTextNode(b.kind === "split" ? "Splits into " : "Merges "));
        b.partners.forEach((q, i) => p.append(i ? document.createTextNode(", ") : "", jump(q)));
      } else {
        p.append(document.createTextNode(b.kind === "split" ? "One of the features " : "One of the features merged into "), jump(b.node));
        if (b.kind === "split") p.append(document.createTextNode(" splits into"));
      }
      card.appendChild(p);
    }
  }

  /** The feature's learned upstream connections, per upstream SAE with its explained variance, then what it feeds. */
  function renderLearned(node) {
    if (!node.explained.length && !node.learnedOut.length) return;
    section("Learned connections (fitted on data)");
    const list = el("ul", { class: "learned" });
    for (const x of node.explained) {
      const li = el("li", {});
      const linear = x.ev !== null && x.ev > x.threshold;
      li.appendChild(el("span", {}, `from ${x.source.id}: explained variance ${fmt(x.ev)}`));
      li.appendChild(el("span", { class: "muted" }, x.ev === null ? " (does not vary on the data)"
        : linear ? ` (linearly computed: above ${fmt(x.threshold)})` : ` (below ${fmt(x.threshold)}: not linearly computed)`));
      const inputs = node.learnedIn.filter((l) => l.pair === x.pair).sort((a, b) => b.share - a.share);
      if (inputs.length) {
        const sub = el("ol", {});
        for (const l of inputs) {
          const item = el("li", {});
          item.append(jump(l.source), el("span", { class: `weight ${l.weight < 0 ? "neg" : "pos"}` }, ` weight ${l.weight > 0 ? "+" : ""}${fmt(l.weight)}`),
            el("span", { class: "muted" }, ` \u00b7 ${fmt(100 * l.share, 2)} % of its input`));
          sub.appendChild(item);
        }
        li.appendChild(sub);
      }
      list.appendChild(li);
    }
    const feeds = node.learnedOut.slice().sort((a, b) => b.share - a.share);
    const MAX_FEEDS = 12;
    for (const l of feeds.slice(0, MAX_FEEDS)) {
      const li = el("li", {});
      li.append(document.createTextNode("into "), jump(l.target), el("span", { class: `weight ${l.weight < 0 ? "neg" : "pos"}` }, ` weight ${l.weight > 0 ? "+" : ""}${fmt(l.weight)}`),
        el("span", { class: "muted" }, ` \u00b7 explained variance ${fmt(l.ev)}`));
      list.appendChild(li);
    }
    if (feeds.length > MAX_FEEDS) list.appendChild(el("li", { class: "muted" }, `and ${feeds.length - MAX_FEEDS} more features it feeds`));
    card.appendChild(list);
  }

  /* ---------- legend ---------- */

  function swatch(draw) {
    const s = svgEl("svg", { width: 22, height: 16, viewBox: "-11 -8 22 16" });
    draw(s);
    return s;
  }

  function legendItem(group, graphic, text) {
    const item = el("span", { class: "item" });
    item.append(graphic, document.createTextNode(text));
    group.appendChild(item);
  }

  function gradient(id, stops, range, dashed) {
    const s = svgEl("svg", { width: 150, height: 16, viewBox: "0 0 150 16" });
    const defs = svgEl("defs");
    const g = svgEl("linearGradient", { id: id });
    stops.forEach((c, i) => g.appendChild(svgEl("stop", { offset: i / (stops.length - 1), "stop-color": c })));
    defs.appendChild(g);
    s.append(defs, svgEl("rect", { x: 0, y: 4, width: 150, height: 8, fill: `url(#${id})` }));
    if (dashed) s.appendChild(svgEl("line", { x1: 0, y1: 8, x2: 150, y2: 8, stroke: "#fff", "stroke-width": 3, "stroke-dasharray": "4 3" }));
    const wrap = el("span", { class: "item" });
    wrap.append(document.createTextNode(fmt(range[0])), s, document.createTextNode(fmt(range[1])));
    return wrap;
  }

  function legend() {
    const box = $("legend");
    const nodesGroup = el("div", { class: "group" });
    nodesGroup.appendChild(el("b", {}, classes ? "Residual feature class:" : "Features:"));
    const dot = (cls, extra) => swatch((s) => s.appendChild(svgEl("circle", Object.assign({ class: `node ${cls}`, r: R }, extra || {}))));
    if (classes) {
      classes.forEach((c) => legendItem(nodesGroup, dot(`residual cls-${c}`), `${c} (${CLASS_WORDS[c] || c})`));
      if (saes.some((s) => s.module !== "residual")) legendItem(nodesGroup, el("span", {}), "\u00b7 attention and MLP SAE features use their class colour");
    } else {
      legendItem(nodesGroup, dot("residual"), "residual feature");
    }
    box.appendChild(nodesGroup);

    const statusGroup = el("div", { class: "group" });
    statusGroup.appendChild(el("b", {}, "Status:"));
    if (view.matches.length) {
      legendItem(statusGroup, dot("residual"), "persisting");
      legendItem(statusGroup, dot("residual appearing"), "appearing (no match from the layer before)");
      legendItem(statusGroup, dot("residual vanishing"), "vanishing (no match in the next layer)");
      legendItem(statusGroup, dot("residual appearing vanishing"), "both (one layer only)");
    }
    if (view.branchings.length || classes) {
      const mark = (kind) => swatch((s) => {
        s.appendChild(svgEl("circle", { class: "node residual", r: 4 }));
        s.appendChild(svgEl("rect", Object.assign({ class: `branch ${kind}`, x: -7, y: -7, width: 14, height: 14 }, kind === "merge" ? { transform: "rotate(45)" } : {})));
      });
      legendItem(statusGroup, mark("split"), "split");
      legendItem(statusGroup, mark("merge"), "merge");
    }
    if (statusGroup.childElementCount > 1) box.appendChild(statusGroup);

    const links = el("div", { class: "group" });
    links.appendChild(el("b", {}, "Links:"));
    if (view.cost_range) {
      legendItem(links, swatch((s) => s.appendChild(svgEl("line", { x1: -10, y1: 0, x2: 10, y2: 0, stroke: COST_STOPS[1], "stroke-width": 2 }))), "SAE Match, by cost:");
      links.appendChild(gradient("cost-gradient", COST_STOPS, view.cost_range, false));
    }
    if (view.score_range) {
      legendItem(links, swatch((s) => s.appendChild(svgEl("line", { x1: -10, y1: 0, x2: 10, y2: 0, stroke: SCORE_STOPS[1], "stroke-width": 1.5, "stroke-dasharray": "4 3" }))), `flow edge, by ${view.edge_score || "score"}:`);
      links.appendChild(gradient("score-gradient", SCORE_STOPS, view.score_range, true));
    }
    if (learnedLinks.length) {
      for (const sign of ["pos", "neg"]) {
        const line = swatch((s) => s.appendChild(svgEl("line", { x1: -10, y1: 0, x2: 10, y2: 0, class: `link learned ${sign}`, stroke: LEARNED[sign] })));
        legendItem(links, line, sign === "pos" ? "learned connection, positive weight" : "negative weight");
      }
      legendItem(links, el("span", {}), `(the ${view.learned_top} strongest inputs of each linearly computed feature, fainter for a smaller share of its input; `
        + "a clicked feature's are drawn, tick \u201clearned connections\u201d for all)");
    }
    if (links.childElementCount > 1) box.appendChild(links);
    if (view.truncated.length) {
      box.appendChild(el("div", { class: "group muted" }, `Showing at most ${view.max_features} features per SAE (those in the most links) for ${view.truncated.join(", ")}.`));
    }
  }

  /* ---------- start ---------- */

  draw();
  legend();
  installControls();
  installZoomAndPan();
  applyFilters();
  fit(false);
  svg.setAttribute("data-ready", "true");
})();
