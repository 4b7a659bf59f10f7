"""Build the embedded world into a cache directory: corpus -> tokenizer -> LM -> SAEs.

The world is built on first use, not shipped (it would be ~9 MB of weights; building it
keeps the package text-only and shows it is reproducible): ``build_world()`` writes it to
``<cache>/<key>/`` where ``<cache>`` is ``$SAE_LENS_MATCH_CACHE/world`` (default
``~/.cache/sae_lens_match/world``) and ``<key>`` hashes the format version, the seed and
the ``WorldConfig``. The build runs in a temporary sibling directory that is renamed
into place only when complete, under a file lock, so a half-built world is never
visible and concurrent builders wait for each other. Layout::

    <key>/world.json                      config, metrics, hashes, build time
    <key>/model/                          HF checkpoint + tokenizer (save_pretrained)
    <key>/saes/blocks.L.hook_resid_post/  SAELens format (cfg.json + safetensors)
    <key>/saes/blocks.L.hook_mlp_out/
    <key>/saes/blocks.L.hook_attn_out/

Same seed and config on the same machine type and thread count give bitwise the same
weights (``world.json`` records their SHA-256).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GPTNeoXForCausalLM

from sae_lens_match.fingerprints import sha256_tensors
from sae_lens_match.sources.activations import collect_activations
from sae_lens_match.sources.hooks import hook_name
from sae_lens_match.sources.models import hooked_from_hf, load_tokenizer
from sae_lens_match.sources.tokens import TokenSet, pack_texts
from sae_lens_match.sources.training import seeded
from sae_lens_match.version import __version__
from sae_lens_match.world.corpus import corpus, review_prefixes, reviews
from sae_lens_match.world.lm_metrics import mean_loss, sample_completions, sentiment_margin
from sae_lens_match.world.lm_training import train_lm
from sae_lens_match.world.model import WORLD_MODEL_NAME, model_config
from sae_lens_match.world.saes import SAETrainingConfig, sae_stats, train_world_sae
from sae_lens_match.world.tokenizer import train_tokenizer

logger = logging.getLogger(__name__)

# Bump when the corpus, training code or on-disk layout changes: old caches are ignored.
WORLD_FORMAT = 1
MANIFEST = "world.json"


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines the world besides the seed.

    The defaults are the embedded default world: about 5 minutes to build on a 2-core
    machine (most of it is the LM's 600 steps).
    """

    # corpus and tokenizer
    train_reviews: int = 60_000
    eval_reviews: int = 400
    tokenizer_reviews: int = 5_000
    vocab_size: int = 2048
    # language model (Pythia architecture)
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 64
    lm_steps: int = 600
    lm_batch_size: int = 64
    lm_lr: float = 5e-3
    # SAEs, one per layer and hook kind
    sae_hooks: tuple[str, ...] = ("resid_post", "mlp_out", "attn_out")
    sae_train_tokens: int = 200_000
    sae: SAETrainingConfig = field(
        default_factory=lambda: SAETrainingConfig(
            expansion=4,
            steps=400,
            batch_size=1024,
            lr=5e-3,
            l0_coefficient=1.0,
            init_threshold=0.1,
            bandwidth=0.1,
        )
    )
    # CPU threads used by the build, at most the cores this process may use (see
    # ``effective``). Part of the config because float reductions, and so the weights' last
    # bits, depend on it (one and two threads give different, each reproducible, weights).
    # Two: the LM trains 1.7x faster than on one; more gains little at this size.
    threads: int = 2

    def effective(self) -> "WorldConfig":
        """This config with ``threads`` capped at the cores available: what is built, and keyed."""
        return replace(self, threads=max(1, min(self.threads, available_cores())))

    def key(self, seed: int) -> str:
        """Cache key: format version, seed and a hash of this config."""
        blob = json.dumps({"format": WORLD_FORMAT, **asdict(self)}, sort_keys=True)
        return f"v{WORLD_FORMAT}-seed{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_cache_dir() -> Path:
    """``$SAE_LENS_MATCH_CACHE/world`` or ``~/.cache/sae_lens_match/world``."""
    root = os.environ.get("SAE_LENS_MATCH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "sae_lens_match"
    return base / "world"


def world_dir(seed: int = 0, cache_dir: str | Path | None = None, config: WorldConfig | None = None) -> Path:
    """Where the world for ``(seed, config)`` lives (whether built or not)."""
    config = (config or WorldConfig()).effective()
    return Path(cache_dir or default_cache_dir()).expanduser() / config.key(seed)


def is_built(directory: Path) -> bool:
    """True when ``directory`` holds a complete world (its manifest is written last)."""
    return (directory / MANIFEST).is_file()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    # One builder per world; others block here, then find it built. POSIX only: where
    # fcntl is missing the atomic rename below still keeps a half-built world hidden.
    # Yields whether the lock really excludes other builders.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            import fcntl
        except ImportError:
            yield False
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_deterministic)


def build_world(
    seed: int = 0,
    force: bool = False,
    cache_dir: str | Path | None = None,
    config: WorldConfig | None = None,
    progress: bool = True,
) -> Path:
    """Build the world for ``seed`` unless it is already cached; return its directory.

    Args:
        seed: seeds the corpus, the tokenizer data, LM initialisation and batch order,
            and every SAE.
        force: rebuild even if a complete world is cached (replaced atomically).
        cache_dir: directory holding worlds (default ``default_cache_dir()``).
        config: sizes and hyperparameters (default ``WorldConfig()``).
        progress: show tqdm progress bars on stderr.
    """
    config = (config or WorldConfig()).effective()
    target = world_dir(seed, cache_dir, config)
    with _file_lock(target.with_name(target.name + ".lock")) as exclusive:
        if exclusive:  # no builder of this world is alive: hidden build folders are a killed build's
            for orphan in target.parent.glob(f".{target.name}.*"):
                shutil.rmtree(orphan, ignore_errors=True)
        if is_built(target) and not force:
            return target
        logger.warning("building the embedded world (seed %s) into %s; this takes a few minutes, once.", seed, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; a cache may be shared
        try:
            _build_into(tmp, seed, config, progress)
            if target.exists():  # rename cannot replace a non-empty directory: swap
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def rebuild(seed: int = 0, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Rebuild the default world from scratch, replacing the cached one; return its directory."""
    return build_world(seed=seed, force=True, cache_dir=cache_dir, progress=progress)


def _build_into(out: Path, seed: int, cfg: WorldConfig, progress: bool) -> None:
    start, start_cpu = time.perf_counter(), time.process_time()

    def bar(total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=f"world: {desc}", disable=not progress, file=sys.stderr, leave=False)

    with _torch_settings(cfg.threads), seeded(seed):
        with bar(2, "corpus + tokenizer") as pbar:
            train_texts = corpus("train", cfg.train_reviews, seed)
            pbar.update()
            tokenizer = train_tokenizer(train_texts[: cfg.tokenizer_reviews], cfg.vocab_size)
            pbar.update()
        rows = pack_texts(tokenizer, train_texts, cfg.n_ctx)
        held_out = reviews(cfg.eval_reviews, seed, "test")
        eval_rows = pack_texts(tokenizer, [r.text for r in held_out], cfg.n_ctx)

        lm_config = model_config(
            len(tokenizer), cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_mlp, cfg.n_ctx, tokenizer.bos_token_id
        )
        lm = GPTNeoXForCausalLM(lm_config)
        loss_before = mean_loss(lm, eval_rows)
        with bar(cfg.lm_steps, "training LM") as pbar:

            def on_step(step: int, loss: float) -> None:
                pbar.update()
                pbar.set_postfix(loss=f"{loss:.3f}", refresh=False)

            losses = train_lm(lm, rows, cfg.lm_steps, cfg.lm_batch_size, cfg.lm_lr, seed, on_step=on_step)
        model_dir = out / "model"
        lm.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        tokenizer = load_tokenizer(model_dir)  # TransformerLens needs the saved name_or_path
        prefixes = review_prefixes(6, seed)
        lm_metrics = {
            "n_params": sum(p.numel() for p in lm.parameters()),
            "train_tokens": cfg.lm_steps * cfg.lm_batch_size * cfg.n_ctx,
            "eval_loss_before": loss_before,
            "eval_loss_after": mean_loss(lm, eval_rows),
            "train_loss_last_50": sum(losses[-50:]) / len(losses[-50:]),
            "sentiment_margin": sentiment_margin(lm, tokenizer, held_out),
            "samples": dict(zip(prefixes, sample_completions(lm, tokenizer, prefixes, seed=seed))),
        }

        hooked = hooked_from_hf(model_dir, lm, tokenizer, model_name=WORLD_MODEL_NAME, default_prepend_bos=True)
        hooks = [hook_name(kind, layer) for kind in cfg.sae_hooks for layer in range(cfg.n_layers)]
        n_rows = -(-cfg.sae_train_tokens // (cfg.n_ctx - 1))  # BOS positions are dropped
        acts = collect_activations(TokenSet(hooked, rows[:n_rows], batch_size=32, progress=False), hooks)
        eval_acts = collect_activations(TokenSet(hooked, eval_rows, batch_size=32, progress=False), hooks)
        metadata = {
            "model_name": WORLD_MODEL_NAME,
            "context_size": cfg.n_ctx,
            "prepend_bos": True,
            "exclude_special_tokens": True,
            "dataset_path": f"sae-lens-match-world/seed{seed}",
        }
        sae_metrics, sae_hashes = {}, {}
        with bar(len(hooks), "training SAEs") as pbar:
            for i, hook in enumerate(hooks):
                saved = train_world_sae(acts.pop(hook), hook, cfg.sae, seed + 1 + i, metadata, out / "saes" / hook)
                sae_metrics[hook] = sae_stats(saved, eval_acts.pop(hook))
                if not sae_metrics[hook]["min_threshold"] > 0:  # folding divides by it
                    raise RuntimeError(f"SAE {hook} trained a non-positive threshold: {sae_metrics[hook]}")
                sae_hashes[hook] = sha256_tensors(saved.state_dict())
                pbar.update()

    manifest = {
        "format": WORLD_FORMAT,
        "seed": seed,
        "config": asdict(cfg),
        "sae_lens_match_version": __version__,
        "torch_version": torch.__version__,
        "build_seconds": time.perf_counter() - start,
        "build_cpu_seconds": time.process_time() - start_cpu,  # wall time on an idle core
        "hooks": hooks,
        "model_sha256": sha256_tensors(lm.state_dict()),
        "sae_sha256": sae_hashes,
        "lm": lm_metrics,
        "saes": sae_metrics,
    }
    # Written last: its presence marks the directory complete.
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
