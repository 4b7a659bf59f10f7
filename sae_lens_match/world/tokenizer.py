"""A small byte-level BPE tokenizer trained on the world corpus (GPT-NeoX style).

Like Pythia's tokenizer it is byte-level (every string round-trips) and uses
``<|endoftext|>`` as BOS, EOS and UNK; ``<|padding|>`` pads. Unlike Pythia's, it
prepends BOS when asked for special tokens, because the world model is trained on
rows that start with BOS (as TransformerLens and SAELens feed them).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
SPECIAL_TOKENS = (BOS_TOKEN, PAD_TOKEN)  # ids 0 and 1, as in Pythia


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``.

    Args:
        texts: training text (the world corpus).
        vocab_size: target vocabulary size including the 256 byte symbols and the two
            special tokens.

    Returns:
        A ``PreTrainedTokenizerFast`` whose ``bos/eos/unk`` is ``<|endoftext|>`` (id 0)
        and ``pad`` is ``<|padding|>`` (id 1); encoding with special tokens prepends BOS.
    """
    if vocab_size < 258 + 16:
        raise ValueError(f"vocab_size must leave room for merges beyond 258 base symbols, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=BOS_TOKEN,
        unk_token=BOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",  # generation from a batch of prompts pads on the left
    )
