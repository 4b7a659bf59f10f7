"""``python -m sae_lens_match.world {build,info,path}``: build or inspect the embedded world.

- ``build [--seed S] [--force] [--cache-dir DIR]``: build (or, with ``--force``, rebuild)
  the world and print its directory.
- ``info``: print the world's metrics (building it first if needed).
- ``path``: print where the world lives, without building it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sae_lens_match.world.build import build_world, is_built, world_dir
from sae_lens_match.world.load import manifest


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m sae_lens_match.world", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "info", "path"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="build: rebuild even if cached")
    parser.add_argument("--cache-dir", default=None, help="directory holding worlds (default: $SAE_LENS_MATCH_CACHE/world)")
    args = parser.parse_args(argv)
    if args.command == "path":
        where = world_dir(args.seed, args.cache_dir)
        print(f"{where}{'' if is_built(where) else '  (not built yet)'}")
    elif args.command == "build":
        print(build_world(seed=args.seed, force=args.force, cache_dir=args.cache_dir))
    else:
        info = manifest(seed=args.seed, cache_dir=args.cache_dir)
        info["lm"].pop("samples")
        json.dump({k: info[k] for k in ("seed", "build_seconds", "lm", "saes")}, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
