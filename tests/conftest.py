"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sweeps.demo import DemoWorld

REPO_ROOT = Path(__file__).resolve().parent.parent
# Nothing may reach a hub: set before any test imports `datasets` or `transformers`.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def demo_world() -> DemoWorld:
    """The demo world of seed 0, built once into ``<repo>/.bai-sweep/demo-world`` and reused.

    The same cache ``bai-sweep demo`` uses when run from the repository root; the first build
    takes a few minutes, later sessions load it in milliseconds.
    """
    from sweeps.demo import build_world

    return build_world(REPO_ROOT / ".bai-sweep" / "demo-world", seed=0, progress=False)
