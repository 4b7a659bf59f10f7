"""Learned Feedback Patterns (Marks et al.): do a tuned LM's activations encode its feedback?

In data-flow order: ``reward.py`` (VADER and a reward registry), ``finetune.py`` (TRL: RL,
DPO, TR-DPO), ``divergence.py`` (the most-changed layers), ``dictionaries.py`` (n and 2n
dictionaries), ``overlap.py`` (features both agree on), ``pipeline.py`` (part 1 end to end on
any model and :class:`~sae_lens_match.lfp.pipeline.FeedbackData`); ``preference_eval.py``
judges a tuned policy against its base model on held-out data (implicit-reward accuracy and
margin, KL, reward of sampled completions). Models, activations and
hub datasets come from :mod:`sae_lens_match.sources`; the embedded world is never imported.
"""
