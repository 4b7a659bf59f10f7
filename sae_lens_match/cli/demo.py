"""``sae-lens-match demo``: the whole mission on the embedded world, into one results folder.

World (built on first use) -> SAE Match with every registered matcher, compared on data ->
evaluation (Fig. 3 curves, layer pruning) -> the feature flow graph and its causal check ->
learned connections between the SAEs (sparse linear maps fitted on data) -> feature cards ->
the LFP pipeline (in a second process, beside the rest, where there is a
second core) -> ``index.html``.

Each step is a :class:`~sae_lens_match.stages.Stage` folder keyed on the world and its
config: a rerun into the same folder reuses what is done and recomputes only what changed or
never finished. ``timings.{json,csv}`` record each step's seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch

from sae_lens_match import world
from sae_lens_match.atomic import atomic_path, prepare_out_dir, write_json
from sae_lens_match.cli.options import add_match_options, add_out, add_unmatched_options, match_config, matcher_names, positive_int, unmatched_rule
from sae_lens_match.evaluation.compare import CompareConfig, compute_matchings, run_compare
from sae_lens_match.evaluation.cost_summary import CostSummaryConfig, run_cost_summary
from sae_lens_match.evaluation.explain import ContextOverlapJudge, TopTokensExplainer
from sae_lens_match.evaluation.explain.judging import JudgingConfig
from sae_lens_match.evaluation.feature_cards import FeatureCardConfig, FeatureCards, feature_cards, pair_verdicts
from sae_lens_match.evaluation.parameter_curves import ParameterCurvesConfig, run_parameter_curves
from sae_lens_match.evaluation.replacement import ReplacementConfig
from sae_lens_match.flow import (
    CausalConfig,
    ConnectionKey,
    Connections,
    ConnectionsConfig,
    FlowConfig,
    FlowGraph,
    FlowStack,
    build_flow_graph,
    causal_check,
    causal_summary,
    connection_tables,
    effect_rows,
    stack_connections,
)
from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.matchers import MATCHERS
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, Matching, UnmatchedRule
from sae_lens_match.report.demo_page import DemoResults, write_demo_page
from sae_lens_match.report.matching_report import write_matching_report
from sae_lens_match.report.plots import Panel, line_panels, ship_plotly, write_figure
from sae_lens_match.report.tables import write_result, write_table
from sae_lens_match.sources.tokens import TokenSet
from sae_lens_match.stages import Stage

logger = logging.getLogger(__name__)

BATCH_SIZE = 32
"""Rows per forward pass: the world's model is tiny, so fewer, larger passes are faster."""

MODULE_HOOKS = {"residual": "resid_post", "attention": "attn_out", "mlp": "mlp_out"}
"""The flow graph's module names and the world's SAE hook kinds."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs (the command line's defaults).

    Attributes:
        seed: the world's seed, and every seed of the run.
        n_texts: held-out test reviews for evaluation, the causal check and the feature cards
            (and as many train reviews to fit data-based matchers on).
        matchers: the matchers compared (default: every registered one).
        match: SAE Match's config; unmatched: which pairs count as unmatched.
        causal_edges: flow edges checked by ablation.
        connections: how the learned connections are fitted (on the held-out reviews), or
            ``None`` to leave them out. Matching pursuit with 8 inputs per feature: on the world it
            explains about as much as the lasso (``benchmarks/connections_world.py --sweep``) and
            fits in seconds, where the lasso takes about a minute on one core.
        cards: the feature cards.
        lfp: run the LFP pipeline (RL with the VADER reward, parts 1 and 2).
        lfp_args: extra ``sae-lens-match lfp`` options (e.g. ``("--steps", "20")``).
    """

    seed: int = 0
    n_texts: int = 64
    matchers: tuple[str, ...] | None = None
    match: MatchConfig = field(default_factory=MatchConfig)
    unmatched: UnmatchedRule = DEFAULT_UNMATCHED
    causal_edges: int = CausalConfig().n_edges
    connections: ConnectionsConfig | None = field(default_factory=lambda: ConnectionsConfig(sparsity="topk", k=8))
    cards: FeatureCardConfig = field(default_factory=FeatureCardConfig)
    lfp: bool = True
    lfp_args: tuple[str, ...] = ()

    def matcher_names(self) -> list[str]:
        return list(self.matchers) if self.matchers else MATCHERS.names()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    default = DemoConfig()
    p = sub.add_parser("demo", help="everything on the embedded world (offline): matching, evaluation, feature flow, LFP, and index.html")
    p.add_argument("--seed", type=int, default=default.seed, help="world seed (and every seed of the run)")
    p.add_argument("--n-texts", type=positive_int, default=default.n_texts, help=f"held-out reviews for evaluation, causal check and feature cards (default: {default.n_texts})")
    p.add_argument("--matchers", type=matcher_names, default=None, help=f"comma-separated matchers to compare (default: all registered: {','.join(MATCHERS.names())})")
    p.add_argument("--causal-edges", type=positive_int, default=default.causal_edges, help=f"flow edges checked by ablation (default: {default.causal_edges})")
    p.add_argument("--no-lfp", action="store_true", help="leave out the LFP pipeline (the longest step)")
    p.add_argument("--no-connections", action="store_true", help="leave out the learned connections (sparse linear maps between the SAEs, fitted on data)")
    p.add_argument("--synthetic", action="store_true", help="instead: SAE Match on a planted synthetic stack, scored against its truth")
    p.add_argument("--layers", type=positive_int, default=6, help="--synthetic: stack depth (at least 2)")
    p.add_argument("--d-in", type=positive_int, default=64, help="--synthetic: SAE input width")
    p.add_argument("--d-sae", type=positive_int, default=512, help="--synthetic: SAE width")
    add_out(p, Path("results/demo"))
    add_match_options(p)
    add_unmatched_options(p)
    p.set_defaults(run=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> Path:
    if args.synthetic:
        from sae_lens_match.cli.match import synthetic_demo

        return synthetic_demo(args)
    config = DemoConfig(
        seed=args.seed, n_texts=args.n_texts, matchers=tuple(args.matchers) if args.matchers else None,
        match=match_config(args), unmatched=unmatched_rule(args), causal_edges=args.causal_edges, lfp=not args.no_lfp,
        **({"connections": None} if args.no_connections else {}),
    )
    # this command owns its process: one thread while the LFP child takes the other core
    # (unless the user chose the threads with OMP_NUM_THREADS)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1 if config.lfp and _cores() >= 2 else min(2, _cores()))
    index = run_demo(args.out, config)
    print(f"wrote {index} (open it in a browser); every table beside it as JSON and CSV")
    return index


class _WorldData:
    """The world's model, SAEs and tokens, loaded on first use (a rerun with every step done loads nothing)."""

    def __init__(self, config: DemoConfig):
        self.config = config

    @cached_property
    def model(self) -> Any:
        return world.load_model("hooked_sae", seed=self.config.seed)

    def saes(self, module: str) -> list:
        return self._saes[module]

    @cached_property
    def _saes(self) -> dict[str, list]:
        return {m: world.load_saes(kind, seed=self.config.seed) for m, kind in MODULE_HOOKS.items()}

    @cached_property
    def stack(self) -> FlowStack:
        return FlowStack(self.saes("residual"), attention=self.saes("attention"), mlp=self.saes("mlp"))

    @cached_property
    def held_out(self) -> TokenSet:
        return TokenSet(self.model, world.tokens("test", self.config.n_texts, seed=self.config.seed), batch_size=BATCH_SIZE)

    @cached_property
    def fit(self) -> TokenSet:  # data-based matchers are fitted on other reviews than they are judged on
        return TokenSet(self.model, world.tokens("train", self.config.n_texts, seed=self.config.seed), batch_size=BATCH_SIZE)


def run_demo(out: str | Path, config: DemoConfig | None = None) -> Path:
    """Run every step into ``out`` (reusing finished ones) and write ``out/index.html``; return its path."""
    config = config or DemoConfig()
    out = prepare_out_dir(out)
    started = time.perf_counter()
    timings: list[dict[str, Any]] = []

    def timed(name: str, step: Callable[[], bool]) -> None:
        t = time.perf_counter()
        computed = step()
        timings.append({"step": name, "seconds": round(time.perf_counter() - t, 2), "reused": not computed})
        logger.info("%s: %s in %.1f s", name, "done" if computed else "reused", timings[-1]["seconds"])

    timed("world", lambda: _build_world(config))
    ship_plotly(out, share_parent=False)  # once, for every step's plot pages
    root = world.world_root(seed=config.seed)
    key = {"world": root.name, "demo": asdict(config)}
    data = _WorldData(config)
    lfp = _LFPRun(out, config, key) if config.lfp else None
    if lfp is not None and _cores() >= 2:
        lfp.start()  # beside the other steps, each process on one core
    for name, folder, step in STEPS:
        if folder == "connections" and config.connections is None:
            continue
        timed(name, lambda: _run_step(_stage(out, folder, key), lambda f: step(f, out, config, data)))
    if lfp is not None:
        timed("lfp" if not lfp.running else "lfp (waiting for the second process)", lfp.finish)
    timings.append({"step": "total", "seconds": round(time.perf_counter() - started, 2), "reused": all(t["reused"] for t in timings)})
    write_table(out, "timings", timings)
    return write_demo_page(out, _results(out, config, timings))


def _results(out: Path, config: DemoConfig, timings: list[dict[str, Any]]) -> DemoResults:
    """Everything the page shows, read back from the step folders."""
    read = lambda path: json.loads((out / path).read_text())  # noqa: E731
    causal = out / "flow" / "causal_summary.json"
    lfp = out / "lfp" / "summary.json"
    connections = config.connections is not None
    return DemoResults(
        world=world.manifest(seed=config.seed),
        timings=timings,
        cost_summary=read("matching/summary.json")["rows"],
        compare=read("evaluation/compare.json")["rows"],
        curves=read("evaluation/parameter_curves.json")["rows"],
        graph=FlowGraph.load(out / "flow" / "graph.json"),
        matchings=[config.unmatched.apply(m) for m in load_matchings(out)["sae_match"]],
        verdicts=read("feature_cards/verdicts.json"),
        cards={p.name.removesuffix(".json.gz").replace("-", "/"): json.loads(gzip.decompress(p.read_bytes())) for p in sorted((out / "feature_cards").glob("*-*.json.gz"))},
        class_counts=read("flow/class_counts.json"),
        causal_summary=json.loads(causal.read_text()) if causal.is_file() else [],
        lfp=json.loads(lfp.read_text()) if config.lfp and lfp.is_file() else None,
        connections=load_connections(out) if connections else {},
        connection_summary=read("connections/summary.json") if connections else [],
    )


def _build_world(config: DemoConfig) -> bool:
    built = world.is_built(world.world_dir(config.seed))
    world.build_world(seed=config.seed)
    return not built


def _cores() -> int:
    from sae_lens_match.world.build import available_cores

    return available_cores()


def _run_step(stage: Stage, compute: Callable[[Path], None]) -> bool:
    """Compute the stage into its folder unless it is done; whether anything was computed."""
    if stage.done():
        return False
    compute(stage.start(resume=False))
    stage.finish()
    return True


def _stage(out: Path, name: str, key: dict[str, Any]) -> Stage:
    return Stage.of(out / name, {**key, "step": name})


def _matching_step(folder: Path, out: Path, config: DemoConfig, data: _WorldData) -> None:
    matchings = compute_matchings(data.saes("residual"), config.matcher_names(), data=data.fit, config=config.match)
    for name, ms in matchings.items():
        for i, m in enumerate(ms):
            m.save(folder / name / f"pair_{i:03d}.safetensors")
    write_matching_report(folder, run_cost_summary(matchings["sae_match"], CostSummaryConfig(config.unmatched)), matchings["sae_match"])


def load_matchings(out: Path) -> dict[str, list[Matching]]:
    """The demo's saved matchings: matcher -> one per layer pair, in layer order."""
    folders = sorted(p for p in (out / "matching").iterdir() if p.is_dir() and any(p.glob("pair_*.safetensors")))
    return {f.name: [Matching.load(p) for p in sorted(f.glob("pair_*.safetensors"))] for f in folders}


def _evaluation_step(folder: Path, out: Path, config: DemoConfig, data: _WorldData) -> None:
    saes = data.saes("residual")
    curves = run_parameter_curves(saes, ParameterCurvesConfig(match=config.match))
    write_result(folder, "parameter_curves", curves)
    panels = line_panels(curves.rows(), x="pair", series="variant", panels=["mean_mse"], facet="term", log_y=["mean_mse"])
    write_figure(folder / "parameter_curves.html", panels, title="Folded parameter MSE per layer pair (paper Fig. 3)")
    # every matcher on held-out reviews: co-activation, layer pruning (with its baselines), judgements
    compare = CompareConfig(replacement=ReplacementConfig(unmatched_rule=config.unmatched), judging=JudgingConfig(seed=config.seed), seed=config.seed)
    result = run_compare(saes, load_matchings(out), data=data.held_out, config=compare, judge=ContextOverlapJudge(), explainer=TopTokensExplainer())
    write_result(folder, "compare", result)
    rows = result.rows()
    panels = [c for c in ("mean_cost", "matching_score", "delta_loss", "explained_variance") if any(r.get(c) is not None for r in rows)]
    write_figure(folder / "compare.html", line_panels(rows, x="pair", series="method", panels=panels), title="Matchers side by side")


def _flow_step(folder: Path, out: Path, config: DemoConfig, data: _WorldData) -> None:
    graph = build_flow_graph(data.stack, FlowConfig(match=config.match, seed=config.seed))
    graph.save(folder / "graph.json")
    write_table(folder, "class_counts", graph.class_counts())
    effects = causal_check(data.held_out, data.stack, graph, CausalConfig(n_edges=config.causal_edges, seed=config.seed))
    if effects:
        write_table(folder, "causal_edges", effect_rows(effects))
        write_table(folder, "causal_summary", causal_summary(effects))


def _connections_step(folder: Path, out: Path, config: DemoConfig, data: _WorldData) -> None:
    """Every module pair's connections from one pass over the held-out reviews; their summary
    and agreement with SAE Match (the saved matchings) and the flow graph (the flow step's)."""
    assert config.connections is not None  # run_demo skips this step otherwise
    found = stack_connections(data.stack, data.held_out, config.connections)
    for key, conn in found.items():
        conn.save(folder / f"{key.stem}.safetensors")
    summary, agreement = connection_tables(found, load_matchings(out)["sae_match"], FlowGraph.load(out / "flow" / "graph.json"))
    write_table(folder, "summary", summary)
    write_table(folder, "agreement", agreement)
    write_figure(folder / "connections.html", _connection_panels(summary, agreement), title="Learned connections: linearly computed features and agreement")


def _connection_panels(summary: list[dict[str, Any]], agreement: list[dict[str, Any]]) -> list[Panel]:
    """Per target layer: the fraction of features linearly computed and the median explained
    variance, one line per kind of pair (the shuffled control: its largest fraction at the layer);
    how often the strongest learned input is the data-free partner, against chance. One table, so
    that each series keeps its colour across the panels."""
    kind = lambda r: f"{r['source_module']} -> {r['target_module']}"  # noqa: E731
    linear, ev, agree = "fraction linearly computed", "median explained variance", "strongest input = data-free partner"
    rows = [{"target layer": r["target_layer"], "series": kind(r), linear: r["fraction_linear"], ev: r["median_explained_variance"]} for r in summary]
    layers = sorted({r["target_layer"] for r in summary})
    rows += [{"target layer": layer, "series": "shuffled control (largest)",
              linear: max(r["control_fraction_linear"] for r in summary if r["target_layer"] == layer)} for layer in layers]
    pairs = {r["pair"]: r for r in summary}
    names = {"sae_match": "SAE Match partner", "flow_graph": "flow-graph predecessor"}
    rows += [{"target layer": pairs[a["pair"]]["target_layer"], "series": f"{kind(pairs[a['pair']])}: {names[a['reference']]}", agree: a["fraction"]}
             for a in agreement if not a["linear_only"]]
    if agreement:
        rows += [{"target layer": layer, "series": "chance (1 / d_sae)", agree: min(a["chance"] for a in agreement)} for layer in layers]
    return line_panels(rows, x="target layer", series="series", panels=[linear, ev, agree])


def load_connections(out: Path) -> dict[ConnectionKey, Connections]:
    """The demo's learned connections (``connections/``), pair -> :class:`~sae_lens_match.flow.Connections`, in the order of its summary."""
    rows = json.loads((out / "connections" / "summary.json").read_text())
    keys = [ConnectionKey(r["source_module"], r["source_layer"], r["target_module"], r["target_layer"]) for r in rows]
    return {key: Connections.load(out / "connections" / f"{key.stem}.safetensors") for key in keys}


def _cards_step(folder: Path, out: Path, config: DemoConfig, data: _WorldData) -> None:
    explainer = TopTokensExplainer()
    cards: dict[str, FeatureCards] = {}
    for module in MODULE_HOOKS:
        for layer, sae in enumerate(data.saes(module)):
            sae_id = f"{layer}/{module}"
            cards[sae_id] = feature_cards(data.held_out, sae, config.cards, explainer=explainer, label=sae_id)
            _write_json_gz(folder / f"{layer}-{module}.json.gz", cards[sae_id].to_dict())
    judge = ContextOverlapJudge()
    verdicts = [
        [None if v is None or v.label is None else {"label": v.label, "source": v.source, "score": v.score} for v in pair_verdicts(cards[f"{i}/residual"], cards[f"{i + 1}/residual"], m, judge)]
        for i, m in enumerate(config.unmatched.apply(m) for m in load_matchings(out)["sae_match"])
    ]
    write_json(folder / "verdicts.json", verdicts, compact=True)


STEPS = (
    ("matching", "matching", _matching_step),
    ("evaluation", "evaluation", _evaluation_step),
    ("flow", "flow", _flow_step),
    ("connections", "connections", _connections_step),
    ("feature cards", "feature_cards", _cards_step),
)
"""The demo's steps in the main process: (name in timings, folder, compute into the folder)."""


def _write_json_gz(path: Path, value: Any) -> None:
    """Compact JSON, gzipped (feature cards are about 1 KB per feature as JSON), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(json.dumps(value, separators=(",", ":"), allow_nan=False).encode(), mtime=0))


LFP_RESULTS = ("index.html", "*.json", "*.csv", "*.png")
"""What of the LFP run the results folder gets: its page, tables and figures."""


class _LFPRun:
    """``sae-lens-match lfp`` on the world in a child process (its own core and thread), as a stage of the demo.

    It runs in a folder of the cache, beside the world: the tuned model, activations and codes
    (about 30 MB) are working files, like the world's own model; the results folder gets the
    LFP's page, tables and figures.
    """

    def __init__(self, out: Path, config: DemoConfig, key: dict):
        self.stage = _stage(out, "lfp", key)
        self.work = world.default_cache_dir().parent / "demo-lfp" / self.stage.key[:16]
        self.args = ["lfp", "--out", str(self.work), "--seed", str(config.seed), *config.lfp_args]
        self.log = out / "lfp.log"
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        if self.stage.done():
            return
        self.stage.start()  # keeps an interrupted run's finished steps: the child resumes them
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "sae_lens_match.cli", *self.args], stdout=log, stderr=subprocess.STDOUT, env=env)

    def finish(self) -> bool:
        """Wait for the child (starting it first if it was not); whether anything was computed."""
        if self.stage.done():
            return False
        if self.process is None:
            self.start()
        assert self.process is not None
        if self.process.wait() != 0:
            tail = self.log.read_text().strip().splitlines()[-5:]
            raise RuntimeError(f"The LFP step failed (log: {self.log}):\n" + "\n".join(tail))
        for pattern in LFP_RESULTS:
            for path in self.work.glob(pattern):
                if path.name != "stage.json":
                    shutil.copyfile(path, self.stage.directory / path.name)
        self.stage.finish(work_dir=str(self.work))
        return True
