"""Careless calls and damaged files get one clear line naming the problem, before any work.

Each test is a user's action (a wrong call, a damaged file, a bad option) and asserts what
they see. See also tests/reliability/test_reruns.py for resumes.
"""

import json
import logging
import os

import pytest
import torch
from safetensors.torch import save_file

from sae_lens_match import Matching, MatchingFileError, fold, load_sae, match, match_layers, permute, world
from sae_lens_match.cli import main
from sae_lens_match.lfp.divergence import top_layers
from sae_lens_match.lfp.pipeline import LFPConfig
from sae_lens_match.matching import make_stack
from tests.helpers import random_sae


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pair") / "pair.safetensors"
    match(random_sae("jumprelu", seed=0), random_sae("jumprelu", seed=1)).save(path)
    return path


def damaged(pair_file, tmp_path, how):
    data = bytearray(pair_file.read_bytes())
    path = tmp_path / f"{how}.safetensors"
    if how == "flipped":
        data[-4:] = bytes(b ^ 0xFF for b in data[-4:])  # the tensors' last bytes; the header is intact
    elif how == "truncated":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = b""
    elif how == "random":
        data = os.urandom(len(data))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how, message", [
    ("flipped", "is damaged: its tensors do not match the checksum"),
    ("truncated", "not a readable safetensors file"),
    ("empty", "not a readable safetensors file"),
    ("random", "not a readable safetensors file"),
])
def test_a_damaged_matching_file_is_named_not_read(pair_file, tmp_path, how, message):
    path = damaged(pair_file, tmp_path, how)
    with pytest.raises(MatchingFileError, match=message) as info:
        Matching.load(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_matching_files_that_are_not_matchings(pair_file, tmp_path):
    with pytest.raises(MatchingFileError, match="is a directory"):
        Matching.load(tmp_path)
    with pytest.raises(MatchingFileError, match="is missing"):
        Matching.load(tmp_path / "nope.safetensors")
    m = Matching.load(pair_file)
    save_file({"permutation": m.permutation, "cost": m.cost}, tmp_path / "bare.safetensors", metadata={"format": "sae-lens-match/matching", "format_version": "2"})
    with pytest.raises(MatchingFileError, match="lacks 'info'"):
        Matching.load(tmp_path / "bare.safetensors")
    save_file({"permutation": m.permutation, "cost": m.cost}, tmp_path / "future.safetensors", metadata={"format": "sae-lens-match/matching", "format_version": "99"})
    with pytest.raises(MatchingFileError, match="format version 99, newer than this sae-lens-match reads"):
        Matching.load(tmp_path / "future.safetensors")


def test_an_sae_with_an_unknown_architecture_is_named(tmp_path):
    random_sae("jumprelu").save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "architecture": "mystery"}))
    with pytest.raises(ValueError, match=r"architecture 'mystery', which SAELens has no class for; registered: \[.*'jumprelu'.*'tied'"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match="cfg.json is not valid JSON"):
        load_sae(tmp_path)


def test_wrong_types_at_the_api_say_what_was_expected(tmp_path):
    sae, model = random_sae("jumprelu"), torch.nn.Linear(2, 2)
    calls = {
        "match(model, sae)": (lambda: match(model, sae), "sae_a must be a SAELens SAE, got Linear"),
        "match(sae, 'path')": (lambda: match(sae, "path"), "sae_b must be a SAELens SAE, got str .load it first"),
        "fold(model)": (lambda: fold(model), "fold's sae must be a SAELens SAE, got Linear"),
        "match_layers('path')": (lambda: match_layers("path", progress=False), "match_layers takes a sequence of SAEs"),
        "match_layers([sae, model])": (lambda: match_layers([sae, model], progress=False), "SAE 1 of the stack is a Linear"),
        "match_layers([sae, loader])": (lambda: match_layers([sae, lambda: model], progress=False), "loader for SAE 1 returned Linear"),
        "permute(sae, matching)": (lambda: permute(sae, match(sae, sae)), "pass matching.permutation"),
    }
    for name, (call, message) in calls.items():
        with pytest.raises(TypeError, match=message):
            call()


@pytest.mark.parametrize("dtype, theta", [(torch.float16, 1e-6), (torch.float32, 1e-40)])
def test_folding_a_threshold_too_small_for_the_dtype_is_refused(dtype, theta):
    sae = random_sae("jumprelu").to(dtype=dtype)
    with torch.no_grad():
        sae.threshold[[3, 7]] = theta
    with pytest.raises(ValueError, match=rf"Folding overflows {dtype} for 2 feature\(s\) \[3, 7\]"):
        fold(sae)
    with pytest.raises(ValueError, match="Folding overflows"):
        match(sae, random_sae("jumprelu", seed=1).to(dtype=dtype))
    folded = fold(sae.to(torch.float64))  # the way out the message names works
    assert torch.isfinite(folded.W_enc).all()


def test_degenerate_lfp_settings_are_refused_before_any_work():
    for field, value in [("finetune_steps", 0), ("top_k", 0), ("learning_rate", 0.0), ("finetune_batch_size", 0)]:
        with pytest.raises(ValueError, match=field):
            LFPConfig(**{field: value})


def test_a_divergence_tie_is_warned_and_no_change_is_refused(caplog):
    with caplog.at_level(logging.WARNING, logger="sae_lens_match"):
        assert top_layers({0: 1.0, 1: 2.0, 2: 1.0}, 2) == [1, 0]
    assert "tie in divergence" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sae_lens_match"):
        top_layers({0: 1.0, 1: 2.0, 2: 0.5}, 2)
    assert "tie" not in caplog.text
    with pytest.raises(ValueError, match="changed no layer"):
        top_layers({0: 0.0, 1: 0.0}, 1)
    with pytest.raises(ValueError, match="top 3 of 2 layers"):
        top_layers({0: 1.0, 1: 2.0}, 3)


@pytest.fixture(scope="module")
def sae_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("saes")
    paths = []
    for i, sae in enumerate(make_stack(n_layers=2, d_in=8, d_sae=16, seed=0).saes):
        sae.save_model(root / f"layer_{i}")
        paths.append(str(root / f"layer_{i}"))
    return paths


def one_line_error(capsys, argv, message):
    """The command exits with code 2 and a short message on stderr containing ``message``."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse refuses bad options this way
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    return err


def test_cli_bad_options_are_refused_in_one_line_naming_the_option(sae_dirs, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    cases = [
        (["compare", *sae_dirs, "--matchers", "sae_match,bogus", *out], "--matchers: unknown matcher(s) ['bogus']"),
        (["evaluate", "--world", "--n-texts", "0", *out], "--n-texts: must be at least 1"),
        (["evaluate", "--world", "--bos-token-id", "abc", *out], "--bos-token-id: expected 'auto', 'none' or a token id"),
        (["evaluate", *sae_dirs, "--quantile", "2", *out], "--quantile: must lie in [0, 1]"),
        (["match", *sae_dirs, "--random-ratio", "-1", *out], "--random-ratio: must be > 0"),
        (["match", *sae_dirs, "--solver", "hungarian", *out], "--solver: unknown solver 'hungarian'"),
        (["match", *sae_dirs, "--weights", "W_dec=1,b_dec=1", *out], "--weights: weights look like"),
        (["lfp", "--top-k", "0", *out], "--top-k: must be at least 1"),
        (["lfp", "--steps", "0", *out], "--steps: must be at least 1"),
    ]
    for argv, message in cases:
        one_line_error(capsys, argv, message)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_cli_errors_at_run_time_are_one_line(sae_dirs, tmp_path, capsys, monkeypatch):
    from sae_lens_match.assignment import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1024)  # a machine with no memory to spare
    one_line_error(capsys, ["match", *sae_dirs, "--solver", "dense", "--out", str(tmp_path / "m")], "solver='dense' needs about")
    err = one_line_error(capsys, ["evaluate", *sae_dirs, "--model", "gpt-bogus-7", "--tokens", str(tmp_path / "t.pt"), "--out", str(tmp_path / "e")], "Unknown model 'gpt-bogus-7'")
    assert len(err) < 1000  # a few close names, not the whole list of models


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(sae_dirs, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    one_line_error(capsys, ["match", *sae_dirs, "--out", str(blocker)], f"The output folder {blocker} is a file")
    one_line_error(capsys, ["match", *sae_dirs, "--out", str(blocker / "sub")], f"Cannot write results to {blocker / 'sub'}")
    with pytest.raises(ValueError, match="is a file"):
        match_layers(sae_dirs, out_dir=blocker, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_any_work(sae_dirs, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    one_line_error(capsys, ["match", *sae_dirs, "--out", str(folder)], f"Cannot write results to {folder}")


def test_unfinished_or_damaged_activations_are_never_read_as_complete(world_root, tmp_path):
    from sae_lens_match.sources.activations import load_activations, save_activations
    from sae_lens_match.sources.tokens import TokenSet

    hook = "blocks.0.hook_resid_post"
    data = TokenSet(world.load_model("hooked"), world.tokens("test", 8), batch_size=1, progress=False)
    save_activations(data, [hook], tmp_path)
    shards = sorted(tmp_path.glob("shard_*.safetensors"))
    assert len(shards) == data.n_rows >= 2
    shards[-1].unlink()  # as if the run had been killed before its last batch
    with pytest.raises(ValueError, match=f"holds {data.n_rows - 1} of {data.n_rows} activation shards"):
        load_activations(tmp_path, hook)
    save_activations(data, [hook], tmp_path)  # the rerun finishes it
    assert load_activations(tmp_path, hook)[0].shape[0] == data.n_positions()
    shards[0].write_bytes(b"junk")
    with pytest.raises(ValueError, match=f"Cannot read activation shard {shards[0]}"):
        load_activations(tmp_path, hook)


def test_token_files_that_hold_no_tokens_are_named(world_root, tmp_path):
    from sae_lens_match.sources.tokens import load_tokens, pack_texts

    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="Cannot read tokens from .*junk.pt"):
        load_tokens(tmp_path / "junk.pt")
    torch.save(torch.randn(3, 4), tmp_path / "floats.pt")
    with pytest.raises(ValueError, match=r"holds a torch.float32 tensor of shape \(3, 4\), not token ids"):
        load_tokens(tmp_path / "floats.pt")
    with pytest.raises(ValueError, match="non-empty sequence of texts"):
        pack_texts(world.load_tokenizer(), [], 16)


def test_matchings_given_for_the_wrong_layer_pair_are_refused_everywhere():
    from sae_lens_match import agreement, feature_paths
    from sae_lens_match.evaluation.inputs import check_stack

    saes = make_stack(n_layers=3, d_in=8, d_sae=16, seed=0).saes
    m01, m12 = match_layers(saes, progress=False)
    with pytest.raises(ValueError, match="give the matchings in layer order"):
        feature_paths([m12, m01])
    with pytest.raises(ValueError, match="agreement needs two matchings between the same pair of SAEs, but their sources differ in hook_name"):
        agreement(m01, m12)
    assert agreement(m01, m01) == 1.0
    with pytest.raises(ValueError, match="was it made for these SAEs, in this direction"):
        check_stack(saes, {"sae_match": [match(saes[1], saes[2]), match(saes[0], saes[1])]})


def test_lfp_on_a_hub_model_offline_names_the_data_it_needs(tmp_path, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    err = one_line_error(capsys, ["lfp", "--model", "pythia-70m-deduped", "--out", str(tmp_path / "o")], "imdb")
    assert "hub" in err.lower() or "offline" in err.lower()
    one_line_error(capsys, ["lfp", "--model", "pythia-70m-deduped", "--recipe", "dpo", "--preferences", "toxic", "--out", str(tmp_path / "o")], "toxic-dpo")
