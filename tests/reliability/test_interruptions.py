"""Fault injection: each long command is killed (SIGKILL as a crash would, SIGTERM as a job
scheduler or an impatient user would) at random points of its run, rerun into the same folder, and must end with exactly the results
of an uninterrupted run and no temporary files left behind."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

KILLS = 3  # interruptions per command; each at a random point of the run (seeded)

COMMANDS = {
    "match": ["demo", "--synthetic", "--layers", "5", "--d-in", "64", "--d-sae", "1024"],
    "demo": ["demo", "--no-lfp", "--n-texts", "4", "--causal-edges", "4", "--matchers", "sae_match,cosine_top1"],
    "evaluate": ["evaluate", "--world", "--n-texts", "8", "--matchers", "sae_match,cosine_top1"],
    "lfp": ["lfp", "--steps", "2", "--n-texts", "24", "--top-k", "1", "--dictionary-tokens", "2000", "--triples", "60", "--ablation-prompts", "6"],
}
# What each command's result is: its JSON tables (timings excluded) and its tensors.
RESULTS = {
    "match": ["summary.json"],
    "demo": ["matching/summary.json", "evaluation/compare.json", "evaluation/parameter_curves.json", "flow/graph.json", "connections/summary.json", "feature_cards/verdicts.json"],
    "evaluate": ["layer_pruning.json", "parameter_curves.json"],
    "lfp": ["summary.json", "divergence.json"],
}


def command(out: Path, argv: list[str]) -> list[str]:
    out_option = [] if argv == ["--help"] else ["--out", str(out)]
    return [sys.executable, "-c", "import sys; from sae_lens_match.cli import main; sys.exit(main())", *argv, *out_option]


def run(out: Path, argv: list[str], kill_after: float | None = None, sig: int = signal.SIGKILL) -> float:
    """Run the command; send ``sig`` after ``kill_after`` seconds (if still running). Returns its wall time."""
    start = time.perf_counter()
    # one thread: the tests run in parallel on the machine's cores, and OpenMP threads that wait at barriers for a busy core thrash
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(command(out, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        _, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        proc.communicate()
        return time.perf_counter() - start
    assert proc.returncode == 0, err.decode()[-2000:]
    return time.perf_counter() - start


def without_timings(value):
    """``value`` without wall-clock fields, the only part of a result that may differ between runs."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not (k == "seconds" or k.endswith(("_seconds", "_runtime")))}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def results(out: Path, name: str) -> dict:
    found = {f: without_timings(json.loads((out / f).read_text())) for f in RESULTS[name]}
    for path in sorted(out.rglob("*.safetensors")):
        if "checkpoints" not in path.parts:
            # NaN (unmatched) as None, so equal tensors compare equal
            found[str(path.relative_to(out))] = {k: v.nan_to_num(-1e300).tolist() if v.is_floating_point() else v.tolist() for k, v in load_file(str(path)).items()}
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_killed_commands_resume_to_the_uninterrupted_result(world_root, tmp_path, name):
    argv = COMMANDS[name]
    startup = run(tmp_path / "help", ["--help"])  # imports: killing there tests nothing
    duration = run(tmp_path / "clean", argv)
    expected = results(tmp_path / "clean", name)
    rng = random.Random(f"kills/{name}")
    out = tmp_path / "interrupted"
    for k in range(KILLS):
        run(out, argv, kill_after=rng.uniform(startup, duration), sig=(signal.SIGKILL, signal.SIGTERM)[k % 2])
    run(out, argv)
    got = results(out, name)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], f"{name}: {key} differs after interruptions"
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
