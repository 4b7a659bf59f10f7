"""match_layers spread over torch.distributed ranks (gloo on CPU, two processes)."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sae_lens_match import Matching, match_layers
from sae_lens_match.matching.synthetic import make_stack


def _rank_main(rank: int, world: int, init_file: str, out_dir: str, result_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        stack = make_stack(n_layers=5, d_in=16, d_sae=48, seed=3)  # same stack on every rank
        matchings = match_layers(stack.saes, out_dir=out_dir, progress=False)
        torch.save({"perms": [m.permutation for m in matchings]}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_match_layers_spreads_pairs_over_ranks(tmp_path):
    out_dir, result_dir = tmp_path / "pairs", tmp_path / "results"
    out_dir.mkdir()
    result_dir.mkdir()
    mp.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(out_dir), str(result_dir)), nprocs=2, join=True)

    serial = match_layers(make_stack(n_layers=5, d_in=16, d_sae=48, seed=3).saes, progress=False)
    assert sorted(os.listdir(out_dir)) == [f"pair_{i:03d}.safetensors" for i in range(4)]
    for rank in range(2):
        got = torch.load(result_dir / f"rank{rank}.pt")
        # Every rank returns the whole stack, identical to a single-process run.
        assert len(got["perms"]) == 4
        for mine, ref in zip(got["perms"], serial):
            assert torch.equal(mine, ref.permutation)
    for i in range(4):
        assert Matching.load(out_dir / f"pair_{i:03d}.safetensors").source["index"] == i


def test_match_layers_in_a_world_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        # A world of one behaves like no world at all.
        stack = make_stack(n_layers=3, d_in=16, d_sae=32, seed=1)
        assert len(match_layers(stack.saes, progress=False)) == 2
    finally:
        dist.destroy_process_group()
