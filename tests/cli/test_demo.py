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
    assert {"world", "matching", "evaluation", "flow", "feature cards", "total"} <= steps
    size = sum(p.stat().st_size for p in demo_out.rglob("*") if p.is_file())
    assert size < SIZE_LIMIT, f"demo folder is {size / 2**20:.1f} MiB"


def test_demo_page_works_in_a_real_browser(demo_out):
    facts = check_site(demo_out / "index.html")
    assert facts["layers"] == [0, 1, 2, 3] and facts["nodes"] == 12 * 512  # every SAE's every feature
    assert facts["card_contexts"] >= 1 and facts["console"] == []


def test_demo_rerun_reuses_every_step(demo_out, tmp_path):
    if os.environ.get("SAE_LENS_MATCH_DEMO_OUT"):
        args = []  # the CI demo's own options: the defaults
    else:
        args = SMALL
    assert main(["demo", *args, "--out", str(demo_out)]) == 0
    timings = json.loads((demo_out / "timings.json").read_text())
    assert all(t["reused"] for t in timings), timings
