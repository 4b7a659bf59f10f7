"""Does VADER-reward RL raise the reward of sampled completions? (LFP step 1 on the embedded world)

For each seed: fine-tune the world model with ``sentiment_rl`` (RLOO, VADER reward), then
sample completions of held-out review prefixes from the base and the tuned model with the
same sampling seeds (plain sampling, one seed per prefix:
:func:`~sae_lens_match.lfp.preference_eval.sample_completions`) and compare their mean VADER reward. The base model is the baseline,
measured in the same run.

    python benchmarks/lfp_rl_reward.py [--seeds 0 1 2 --steps 60 --samples 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from sae_lens_match.lfp.finetune import sentiment_rl
from sae_lens_match.lfp.preference_eval import completion_reward
from sae_lens_match.world import load_model, load_tokenizer, review_prefixes


def mean_completion_reward(model, tokenizer, prompts: list[str], seed: int, max_new_tokens: int = 24) -> float:
    """Mean VADER reward of one sampled completion per prompt, the completion scored alone."""
    return float(completion_reward(model, tokenizer, prompts, scope="completion", max_new_tokens=max_new_tokens, seed=seed).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--samples", type=int, default=128)
    args = parser.parse_args()

    tokenizer = load_tokenizer()
    prompts = review_prefixes(args.samples, seed=0, split="test")
    base = mean_completion_reward(load_model("hf"), tokenizer, prompts, seed=1234)
    print(f"base model: mean VADER reward of {args.samples} sampled completions = {base:+.3f}")
    gains = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            tuned = sentiment_rl(
                load_model("hf").train(), tokenizer, review_prefixes(256, seed=seed, split="train"),
                output_dir=tmp, steps=args.steps, batch_size=16, learning_rate=2e-5, seed=seed,
            ).model.eval()
        reward = mean_completion_reward(tuned, tokenizer, prompts, seed=1234)
        gains.append(reward - base)
        print(f"seed {seed}: tuned {reward:+.3f}  gain over base {reward - base:+.3f}")
    mean = statistics.fmean(gains)
    spread = statistics.stdev(gains) if len(gains) > 1 else float("nan")
    print(f"mean gain {mean:+.3f} (sd {spread:.3f} over {len(gains)} seeds)")


if __name__ == "__main__":
    main()
