"""The plain training loop of the world language model."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from transformers import GPTNeoXForCausalLM


def train_lm(
    model: GPTNeoXForCausalLM,
    rows: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup_steps: int = 30,
    weight_decay: float = 0.01,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place with AdamW on random batches of ``rows [n, ctx]``.

    Linear warm-up then cosine decay to 10% of ``lr``. Batches are drawn (with
    replacement across epochs, without within one) by a generator seeded with
    ``seed``, so the run is a function of its arguments.

    Returns:
        The training loss of every step.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    losses: list[float] = []
    order = torch.randperm(len(rows), generator=gen)
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(rows), generator=gen), 0
        batch = rows[order[cursor : cursor + batch_size]]
        cursor += batch_size
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses
