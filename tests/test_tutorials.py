"""Every tutorial runs offline from start to finish and prints what it promises."""

import re
import runpy
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).parent.parent / "tutorials"


def _run(name: str, capsys) -> str:
    runpy.run_path(str(TUTORIALS / name), run_name="__main__")
    return capsys.readouterr().out


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the tutorial's output:\n{text}"
    return float(found.group(1))


def test_every_tutorial_is_tested():
    assert sorted(p.name for p in TUTORIALS.glob("*.py")) == ["01_sae_match.py"]


@pytest.mark.slow
def test_sae_match_tutorial(capsys):
    out = _run("01_sae_match.py", capsys)
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
