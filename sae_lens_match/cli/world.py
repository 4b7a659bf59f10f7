"""``sae-lens-match world build|path|info``: the embedded default world."""

from __future__ import annotations

import argparse
import json
import sys

from sae_lens_match import world


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("world", help="the embedded default world (built on first use)")
    p.add_argument("action", choices=["build", "path", "info"], help="build (or rebuild with --force) / print its directory / print its metrics")
    p.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    p.add_argument("--force", action="store_true", help="build: rebuild even if it is cached")
    p.add_argument("--cache-dir", default=None, help=f"directory holding worlds (default: {world.default_cache_dir()}, from $SAE_LENS_MATCH_CACHE)")
    p.set_defaults(run=run_world)


def run_world(args: argparse.Namespace) -> None:
    if args.action == "path":
        where = world.world_dir(args.seed, args.cache_dir)
        print(f"{where}{'' if world.is_built(where) else '  (not built yet)'}")
    elif args.action == "build":
        print(world.build_world(seed=args.seed, force=args.force, cache_dir=args.cache_dir))
    else:
        info = world.manifest(seed=args.seed, cache_dir=args.cache_dir)
        info["lm"].pop("samples")
        json.dump({k: info[k] for k in ("seed", "build_seconds", "lm", "saes")}, sys.stdout, indent=2)
        print()
