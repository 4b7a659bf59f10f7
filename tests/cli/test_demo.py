"""The main job: ``sae-lens-match demo`` on the embedded world, its folder, its page in a real browser, its rerun.

CI runs the full demo first and points ``SAE_LENS_MATCH_DEMO_OUT`` at its folder, so these tests
check that very folder; elsewhere they run a smaller demo (no LFP, fewer texts) of their own.
"""

import gzip
import json
import os
from pathlib import Path

import pytest

from sae_lens_match.cli import main
from sae_lens_match.cli.demo import load_connections
from sae_lens_match.matching.matchers import MATCHERS
from tests.report.browser import check_site

SIZE_LIMIT = 15 * 2**20
SMALL = ["--no-lfp", "--n-texts", "12", "--causal-edges", "20"]


@pytest.fixture(scope="module")
def demo_out(world_root, tmp_path_factory) -> Path:
    given = os.environ.get("SAE_LENS_MATCH_DEMO_OUT")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", *SMALL, "--out", str(out)]) == 0
    return out


def test_demo_folder_holds_every_step(demo_out):
    for name in MATCHERS.names():
        assert len(list((demo_out / "matching" / name).glob("pair_*.safetensors"))) == 3, name
    compare = json.loads((demo_out / "evaluation" / "compare.json").read_text())["rows"]
    assert {r["method"] for r in compare} >= set(MATCHERS.names()) | {"layer_drop"}
    sae_match = [r for r in compare if r["method"] == "sae_match"]
    assert all(r["mean_cost"] < json.loads((demo_out / "matching" / "summary.json").read_text())["rows"][r["pair"]]["random_pair_cost"] for r in sae_match)
    cards = sorted(p.name for p in (demo_out / "feature_cards").glob("*-*.json.gz"))
    assert cards == sorted(f"{layer}-{module}.json.gz" for layer in range(4) for module in ("residual", "attention", "mlp"))
    card = json.loads(gzip.decompress((demo_out / "feature_cards" / "2-residual.json.gz").read_bytes()))
    assert card["hook"] == "blocks.2.hook_resid_post" and len(card["features"]) == 512
    steps = {t["step"] for t in json.loads((demo_out / "timings.json").read_text())}
    assert {"world", "matching", "evaluation", "flow", "connections", "feature cards", "total"} <= steps
    # learned connections: every module pair, read back, beating the shuffled control; agreement tables and plot
    summary = json.loads((demo_out / "connections" / "summary.json").read_text())
    found = load_connections(demo_out)
    assert [str(k) for k in found] == [r["pair"] for r in summary] and len(found) == 4 * 3 - 1 + 3  # attention, MLP, residual before -> residual; residual before -> MLP
    for row, conn in zip(summary, found.values()):
        assert conn.summary()["fraction_linear"] == row["fraction_linear"] and conn.target["hook_name"].startswith(f"blocks.{row['target_layer']}.")
        if conn.config["sparsity"] == "topk":
            assert (conn.n_upstream() <= conn.config["k"]).all()
    residual = [r for r in summary if r["source_module"] == r["target_module"] == "residual"]
    assert all(r["fraction_linear"] > r["control_fraction_linear"] + 0.2 for r in residual)
    assert all(r["sae_match_agreement"] > 10 * r["chance"] for r in residual)
    agreement = json.loads((demo_out / "connections" / "agreement.json").read_text())
    assert {(a["reference"], a["linear_only"]) for a in agreement} == {(ref, lin) for ref in ("sae_match", "flow_graph") for lin in (False, True)}
    assert (demo_out / "connections" / "connections.png").read_bytes()[:4] == b"\x89PNG"
    page = (demo_out / "index.html").read_text()
    assert 'id="connections"' in page and "connections/summary.csv" in page and "connections/agreement.json" in page
    assert "Learned connections:" in page  # the headline figure in the overview
    size = sum(p.stat().st_size for p in demo_out.rglob("*") if p.is_file())
    assert size < SIZE_LIMIT, f"demo folder is {size / 2**20:.1f} MiB"


def test_demo_page_works_in_a_real_browser(demo_out):
    facts = check_site(demo_out / "index.html")
    assert facts["layers"] == [0, 1, 2, 3] and facts["nodes"] == 12 * 512  # every SAE's every feature
    assert facts["card_contexts"] >= 1 and facts["console"] == []
    assert facts["controls"]["learned_edges"] > 0 and facts["learned_card"] is not None  # learned connections drawn, toggled, on a card


def test_demo_rerun_reuses_every_step(demo_out, tmp_path):
    if os.environ.get("SAE_LENS_MATCH_DEMO_OUT"):
        args = []  # the CI demo's own options: the defaults
    else:
        args = SMALL
    assert main(["demo", *args, "--out", str(demo_out)]) == 0
    timings = json.loads((demo_out / "timings.json").read_text())
    assert all(t["reused"] for t in timings), timings
