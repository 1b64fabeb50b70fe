"""Fixtures shared by every test package."""

from __future__ import annotations

import os

# Nothing may reach a hub: set before any test imports `datasets` or `transformers`.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
