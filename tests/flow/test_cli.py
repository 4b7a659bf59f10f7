"""``sae-lens-match flow``: SAE folders without data, bad options at parse time, and the world end to end."""

import json

import pytest

from sae_lens_match.cli import main
from sae_lens_match.flow import FlowGraph, make_flow_stack


def test_flow_command_on_sae_folders(tmp_path, capsys):
    planted = make_flow_stack(n_layers=3, d_in=16, d_sae=48, seed=0)
    specs = {}
    for module, saes in (("residual", planted.stack.residual), ("mlp", planted.stack.mlp)):
        specs[module] = []
        for layer, sae in enumerate(saes):
            sae.save_model(tmp_path / module / str(layer))
            specs[module].append(str(tmp_path / module / str(layer)))
    out = tmp_path / "out"
    args = ["flow", "--residual", *specs["residual"], "--mlp", "none", *specs["mlp"][1:], "--out", str(out)]
    assert main(args) == 0
    graph = FlowGraph.load(out / "graph.json")
    assert graph.n_layers == 3 and set(graph.layers[0].thresholds) == set()  # layer 0 has no source at all
    assert set(graph.layers[2].thresholds) == {"residual", "mlp"}
    counts = json.loads((out / "class_counts.json").read_text())
    assert [r["layer"] for r in counts] == [0, 1, 2] and counts[0]["born"] == 48
    assert (out / "class_counts.csv").read_text().startswith("layer,")
    assert not (out / "causal_summary.json").exists()  # no data, no causal check
    assert "translated" in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad, message",
    [(["--similarity", "dot"], "invalid choice"), (["--null-quantile", "1"], "strictly between"), (["--steer", "x"], "LAYER:FEATURE"), (["--causal-edges", "-1"], ">= 0")],
)
def test_bad_options_are_refused_at_parse_time(bad, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["flow", "--world", "--out", str(tmp_path), *bad])
    assert message in capsys.readouterr().err


def test_mismatched_stacks_are_one_line_errors(tmp_path, capsys):
    planted = make_flow_stack(n_layers=2, d_in=16, d_sae=32, seed=0)
    for layer, sae in enumerate(planted.stack.residual):
        sae.save_model(tmp_path / str(layer))
    assert main(["flow", "--residual", str(tmp_path / "0"), str(tmp_path / "1"), "--mlp", "none", "--out", str(tmp_path / "o")]) == 2
    assert "one per layer" in capsys.readouterr().err


@pytest.mark.slow
def test_flow_command_on_the_world(world_root, tmp_path, capsys):
    out = tmp_path / "world"
    assert main(["flow", "--world", "--n-texts", "8", "--causal-edges", "12", "--steer", "2:0", "--prefixes", "2", "--seeds", "1",
                 "--max-new-tokens", "4", "--out", str(out)]) == 0
    graph = FlowGraph.load(out / "graph.json")
    assert [info.hooks.get("mlp") for info in graph.layers] == [f"blocks.{L}.hook_mlp_out" for L in range(graph.n_layers)]
    assert [info.hooks.get("attention") for info in graph.layers] == [f"blocks.{L}.hook_attn_out" for L in range(graph.n_layers)]
    summary = json.loads((out / "causal_summary.json").read_text())
    assert any(r["layer"] == "all" and r["target_class"] == "all" and r["n_edges"] > 0 for r in summary)
    steering = json.loads((out / "steering_summary.json").read_text())
    assert {r["mode"] for r in steering} == {"none", "layer", "flow", "random_layer", "random_flow"}


def test_releases_offline_fail_naming_the_release(tmp_path, capsys):
    release = "gemma-scope-2b-pt-res-canonical"
    specs = [f"{release}:layer_{L}/width_16k/canonical" for L in (11, 12)]
    assert main(["flow", "--residual", *specs, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert release in err and len(err.strip().splitlines()) == 1
