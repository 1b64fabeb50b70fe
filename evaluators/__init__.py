"""Scoring a model: the RLHF stability probe and the lm-eval benchmark runner."""
