import json

from sae_lens_match.cli import main
from sae_lens_match.matching import Matching
from tests.helpers import assert_png


def test_demo_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--synthetic", "--layers", "3", "--d-in", "16", "--d-sae", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy on persisting features vs planted truth" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_type"] == "cost_summary" and summary["config"]["unmatched_rule"]["random_ratio"] == 0.5
    rows = summary["rows"]
    assert [r["pair"] for r in rows] == [0, 1]
    for r in rows:
        # ~85 % of features persist in the planted stack, and those are the cheap pairs
        assert 0.7 < r["fraction_matched"] < 0.98
        assert r["mean_cost"] < r["random_pair_cost"]
    assert (out / "summary.csv").read_text().startswith("pair,")
    assert "<html" in (out / "report.html").read_text()[:200]
    assert_png(out / "report.png")  # the report's two plots
    pair = Matching.load(out / "pair_000.safetensors")
    assert pair.d_sae_a == 64 and pair.target["index"] == 1

    assert main(["match", str(out / "saes" / "layer_0"), str(out / "saes" / "layer_1"), "--out", str(tmp_path / "m"), "--quantile", "0.5"]) == 0
    rows = json.loads((tmp_path / "m" / "summary.json").read_text())["rows"]
    assert rows[0]["fraction_matched"] == 0.5


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    assert main(["match", "nope:x", "nope:y", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Unknown SAELens release 'nope'" in err and "Traceback" not in err


def test_world_cache_dir_help_names_the_folder_the_code_uses(tmp_path, monkeypatch, capsys):
    from sae_lens_match.world import default_cache_dir, world_dir

    monkeypatch.setenv("SAE_LENS_MATCH_CACHE", str(tmp_path / "cache"))
    with __import__("pytest").raises(SystemExit):
        main(["world", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps long paths
    assert str(default_cache_dir()) in help_text and str(tmp_path / "cache" / "world") in help_text
    assert main(["world", "path"]) == 0
    assert capsys.readouterr().out.startswith(str(world_dir()))
    assert world_dir().parent == default_cache_dir() == tmp_path / "cache" / "world"
