"""Time of each step of ``sae-lens-match demo``: cold (world built from scratch), warm (world
cached, fresh results folder) and a rerun into the same folder, against the targets.

    python benchmarks/demo_timing.py                # cold, warm and rerun (about 20 minutes on 2 cores)
    python benchmarks/demo_timing.py --skip-cold    # warm and rerun, with the world cache in place

Prints one table per run (seconds per step, from the demo's own ``timings.json``), the wall
time including start-up, and the results folder's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"cold": 15 * 60, "warm": 10 * 60, "rerun": 60}
SIZE_TARGET = 15 * 2**20


def run_demo(out: Path, env: dict[str, str], extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sae_lens_match.cli", "demo", "--out", str(out), *extra], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cold", action="store_true", help="use the world cache in place (no cold run)")
    parser.add_argument("--demo-args", default="", help="extra demo options, e.g. '--no-lfp'")
    args = parser.parse_args()
    extra = args.demo_args.split()
    scratch = Path(tempfile.mkdtemp(prefix="demo_timing_"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    runs = [("warm", scratch / "warm"), ("rerun", scratch / "warm")]
    if not args.skip_cold:
        env["SAE_LENS_MATCH_CACHE"] = str(scratch / "cache")
        runs.insert(0, ("cold", scratch / "cold"))
    print(f"{os.cpu_count()} CPUs; results under {scratch}")
    for name, out in runs:
        wall = run_demo(out, env, extra)
        steps = json.loads((out / "timings.json").read_text())
        print(f"\n{name}: {wall:.0f} s wall (target {TARGETS[name]} s: {'met' if wall <= TARGETS[name] else 'MISSED'})")
        for s in steps:
            print(f"  {s['step']:<40} {s['seconds']:>8.1f} s{'  (reused)' if s['reused'] else ''}")
    size = folder_size(scratch / "warm")
    print(f"\nresults folder: {size / 2**20:.1f} MiB (target {SIZE_TARGET / 2**20:.0f} MiB: {'met' if size <= SIZE_TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
