"""Learned Feedback Patterns (Marks et al.): do a tuned LM's activations encode its feedback?"""
