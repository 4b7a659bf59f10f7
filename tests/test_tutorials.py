"""Every tutorial notebook runs offline from start to finish and prints what it promises.

The offline notebooks are executed with nbclient in a temporary working directory (so nothing
is written into the repository), and their printed output is checked against planted truths
and known values. The Gemma Scope notebook needs the hub: it is checked statically.
"""

import ast
import importlib
import json
import os
import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).parent.parent / "tutorials"
OFFLINE = [
    "01_sae_match.ipynb",
    "02_match_and_evaluate_on_the_world.ipynb",
    "03_feature_flow_on_the_world.ipynb",
    "04_lfp_on_the_world.ipynb",
]
HUB = "05_gemma_scope.ipynb"


def _cells(name: str) -> list[dict]:
    return json.loads((TUTORIALS / name).read_text())["cells"]


def _code(name: str) -> list[str]:
    return ["".join(c["source"]) for c in _cells(name) if c["cell_type"] == "code"]


def _execute(name: str, tmp_path: Path) -> str:
    """Run the notebook in ``tmp_path`` with one torch thread, offline; return its stdout."""
    import nbclient  # the test extra's nbclient, nbformat and ipykernel (its "python3" kernel)
    import nbformat

    nb = nbformat.read(TUTORIALS / name, as_version=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stdout")


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the tutorial's output:\n{text}"
    return float(found.group(1))


def _table(text: str, header: str) -> list[dict[str, str]]:
    """The rows of the first ``format_table`` table whose header starts with ``header`` (columns
    are cut where the dashes under the header are, so cells may hold spaces)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.split()[: len(header.split())] == header.split()), None)
    assert start is not None, f"no table with header {header!r} in:\n{text}"
    names, dashes = lines[start].split(), lines[start + 1]
    spans = [m.span() for m in re.finditer(r"-+", dashes)]
    assert len(spans) == len(names), f"malformed table {header!r}"
    rows = []
    for line in lines[start + 2 :]:
        if len(line) != len(dashes):  # every row of the table is padded to the same width
            break
        rows.append({name: line[a:b].strip() for name, (a, b) in zip(names, spans)})
    assert rows, f"empty table {header!r}"
    return rows


def test_every_tutorial_is_tested():
    assert sorted(p.name for p in [*TUTORIALS.glob("*.ipynb"), *TUTORIALS.glob("*.py")]) == sorted([*OFFLINE, HUB])
    assert sorted(re.findall(r'_execute\("([^"]+)"', Path(__file__).read_text())) == sorted(OFFLINE)  # each run by a test below
    for name in OFFLINE:  # stored executed, with small outputs only
        cells = [c for c in _cells(name) if c["cell_type"] == "code"]
        assert all(c["outputs"] for c in cells if "print(" in "".join(c["source"])), f"{name} is stored without its outputs"
        assert (TUTORIALS / name).stat().st_size < 300_000


def test_hub_tutorial_is_stored_without_outputs_and_its_imports_resolve():
    cells = _cells(HUB)
    assert "Needs the Hugging Face hub" in "".join(cells[0]["source"])
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")
    names = []
    for source in _code(HUB):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in ("sae_lens_match", "sae_lens"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{HUB}: {node.module} has no {alias.name}"
                    names.append(alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
    assert {"load_sae", "match", "match_layers", "feature_paths", "run_cost_summary"} <= set(names)


@pytest.mark.slow
def test_sae_match_tutorial(tmp_path):
    out = _execute("01_sae_match.ipynb", tmp_path)
    assert _number(r"max \|folded\(x\) - sae\(x\)\|: (\S+)", out) < 1e-5  # folding keeps the output
    assert _number(r"threshold before / after folding: \S+ (\S+)", out) == 1.0
    assert _number(r"accuracy vs planted truth ([\d.]+)%", out) > 90
    persisting = _number(r"median cost of persisting features (\S+),", out)
    assert _number(r"of vanishing ones (\S+)", out) > 10 * persisting  # vanishing features are the costly pairs
    # quantile 0.85 keeps 85 % of the 512 pairs, up to ties
    assert _number(r"after dropping the costliest 15 %: (\d+) of 512", out) == pytest.approx(0.85 * 512, abs=2)
    path = re.search(r"path of feature 7 .*: (\[.*\])", out).group(1)
    costs = [float(c) for c in re.findall(r", ([\d.]+)\)", path)]
    assert len(costs) == 5 and costs == sorted(costs)  # costs add up along the path
    assert "composed 0 -> 4 equals paths.indices[-1]: True" in out
    assert "reloaded: True blocks.1.hook_resid_post" in out
    assert not list(tmp_path.iterdir())  # the save/load step cleans up after itself


@pytest.mark.slow
def test_match_and_evaluate_tutorial(tmp_path, world_root):
    out = _execute("02_match_and_evaluate_on_the_world.ipynb", tmp_path)
    d_in = int(_number(r"d_in (\d+)", out))
    # cost summary: costs grow with depth, far below chance; the default rule keeps 38-45 % (README)
    summary = _table(out, "pair source target mean_cost")
    assert len(summary) == 3
    means = [float(r["mean_cost"]) for r in summary]
    assert means == sorted(means)
    for r in summary:
        assert float(r["mean_cost"]) < 0.7 * float(r["random_pair_cost"])
        assert 0.3 < float(r["fraction_matched"]) < 0.55
    # Fig. 3: vanilla > matched on every term; folded+matched is the optimum of the summed squared error
    curves = {(int(r["pair"]), r["variant"], r["term"]): float(r["mean_mse"]) for r in _table(out, "pair variant term mean_mse")}
    for pair in range(3):
        for term in ("W_dec", "W_enc", "b_enc"):
            assert curves[pair, "vanilla", term] > curves[pair, "matched", term]
        total = {v: d_in * (curves[pair, v, "W_dec"] + curves[pair, v, "W_enc"]) + curves[pair, v, "b_enc"] for v in ("vanilla", "matched", "folded+matched")}
        assert total["folded+matched"] <= total["matched"] < total["vanilla"]
    # layer pruning: the SAE's own reconstruction is nearly free, the default rule beats the plain bijection,
    # and on this 4-layer model dropping the layer beats skipping it through a matching (README)
    rows = _table(out, "pair method delta_loss")
    by = {(int(r["pair"]), r["method"]): r for r in rows}
    assert len(rows) == len(by) == 3 * 5
    loss = {key: float(r["delta_loss"]) for key, r in by.items()}
    for pair in range(3):
        assert abs(loss[pair, "current"]) < 0.01 and float(by[pair, "current"]["explained_variance"]) > 0.97
        assert loss[pair, "sae_match (default rule)"] < loss[pair, "sae_match (keep all)"]
        assert loss[pair, "layer_drop"] < loss[pair, "sae_match (default rule)"]
    # matchers side by side: one-to-one vs many-to-one, and co-activation far above chance
    compare = {(int(r["pair"]), r["method"]): r for r in _table(out, "pair method mean_cost n_distinct_targets")}
    for pair in range(3):
        sae_match, cosine, correlation = (compare[pair, m] for m in ("sae_match", "cosine_top1", "activation_correlation"))
        assert int(sae_match["n_distinct_targets"]) == 512 and float(sae_match["agreement"]) == 1.0
        assert int(cosine["n_distinct_targets"]) < 512
        for r in (sae_match, cosine, correlation):
            assert float(r["matching_score"]) > 5 * float(r["random_matching_score"])
        assert float(correlation["matching_score"]) > 1.5 * float(sae_match["matching_score"])  # fitted to co-activation
        assert float(sae_match["mean_cost"]) < float(correlation["mean_cost"])  # SAE Match minimises the cost
    assert {p.name for p in tmp_path.iterdir()} == {"parameter_curves.png", "layer_pruning.png"}


@pytest.mark.slow
def test_feature_flow_tutorial(tmp_path, world_root):
    out = _execute("03_feature_flow_on_the_world.ipynb", tmp_path)
    counts = _table(out, "layer n_features translated")
    assert [int(r["layer"]) for r in counts] == [0, 1, 2, 3]
    for r in counts:  # every residual feature has exactly one class
        assert sum(int(r[c]) for c in ("translated", "attention", "mlp", "mix", "born")) == int(r["n_features"]) == 512
    assert int(counts[0]["translated"]) == 0 and int(counts[0]["mix"]) == 0  # layer 0 has no residual predecessor
    thresholds = ast.literal_eval(re.search(r"thresholds: (\{.*\})", out).group(1))
    assert "residual" not in thresholds[0] and all(0.3 < t < 0.9 for layer in thresholds.values() for t in layer.values())
    # the backward walk: every edge passes its (layer, module) threshold and leads back towards the feature
    node = re.search(r"feature Node\(layer=(\d+), module='residual', feature=(\d+)\) class: (\w+)", out)
    walk = re.findall(r"  (\d+)/(\w+)/(\d+) -> (\d+)/residual/(\d+)  cosine ([\d.]+)", out.split("forward from")[0])
    assert walk and (int(walk[0][3]), int(walk[0][4])) == (int(node.group(1)), int(node.group(2)))
    for source_layer, module, _, target_layer, _, score in walk:
        assert int(source_layer) in (int(target_layer), int(target_layer) - 1)
        assert float(score) >= thresholds[int(target_layer)][module] - 1e-3
    assert node.group(3) != "born"
    assert _number(r"splits: (\d+)", out) > 0 and _number(r"merges: (\d+)", out) > 0
    # the causal check: deactivating a predecessor lowers its target far more than a random feature (README: 91 %)
    causal = {r["target_class"]: r for r in _table(out, "target_class n_edges fraction_validated")}
    assert int(causal["all"]["n_edges"]) == 24
    assert float(causal["all"]["fraction_validated"]) >= 0.8
    assert float(causal["all"]["mean_relative_effect"]) > 10 * abs(float(causal["all"]["mean_relative_random_effect"]))
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_lfp_tutorial(tmp_path, world_root):
    out = _execute("04_lfp_on_the_world.ipynb", tmp_path)
    assert _number(r"(\d+) triples, e\.g\.", out) > 100
    # part 1: the two most-changed MLP layers are studied, with dictionaries that reconstruct held-out tokens
    divergence = ast.literal_eval(re.search(r"divergence per layer: (\{.*?\})", out).group(1))
    layers = ast.literal_eval(re.search(r"-> layers (\[.*?\])", out).group(1))
    assert layers == [int(k) for k in sorted(divergence, key=divergence.get, reverse=True)[:2]] and all(v > 0 for v in divergence.values())
    for layer in layers:
        assert _number(rf"layer {layer} \(blocks\.{layer}\.hook_mlp_out\): n-dictionary L0 \S+ explained variance ([\d.]+)", out.replace(",", "")) > 0.9
    # part 2: the probe recovers VADER's order and signs on held-out words, the base model does as well (README)
    probes = {r["model"]: r for r in _table(out, "model kendall_tau kendall_p")}
    for name in ("tuned", "base"):
        assert float(probes[name]["kendall_tau"]) > 0.25 and float(probes[name]["kendall_p"]) < 0.01
        assert float(probes[name]["sign_accuracy_positive"]) == float(probes[name]["sign_accuracy_negative"]) == 1.0
    assert abs(float(probes["tuned"]["kendall_tau"]) - float(probes["base"]["kendall_tau"])) < 0.1
    assert _number(r"(\d+) held-out words of", out) >= 20
    related = _number(r"(\d+) of 20 top-overlap features labelled related \(heuristic", out)
    assert 1 <= related <= 20
    assert 0 <= _number(r"related features at percentile ([\d.]+)", out) <= 1
    ablation = {r["features"]: r for r in _table(out, "features n_features reward_before")}
    assert {"related", "attributed", "random"} <= ablation.keys()
    assert int(ablation["related"]["n_features"]) == int(ablation["random"]["n_features"]) == related
    assert len({r["reward_before"] for r in ablation.values()}) == 1  # the same completions before ablation
    # model diffing: two base dictionaries of different seeds differ more than tuned vs base of one seed
    for changed, control in re.findall(r"([\d.]+)% of tuned features unmatched .*?: ([\d.]+)%", out):
        assert float(changed) < float(control)
    assert {p.name for p in tmp_path.iterdir()} == {"lfp_run"} and (tmp_path / "lfp_run" / "index.html").is_file()
