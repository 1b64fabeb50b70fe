"""Force Hugging Face libraries offline: nothing the evaluators run may reach a hub.

``datasets`` and ``huggingface_hub`` read their offline switches once, at import time, so the
environment variables must be set before either is imported. :func:`force_offline` sets them and,
for a library that a caller already imported, also flips the module-level switch it consults.
It is called where the evaluators load models or tasks, never at import: importing a config
model must not change the process's environment.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def force_offline() -> None:
    """Put ``huggingface_hub``, ``datasets`` and ``transformers`` in offline mode (idempotent)."""
    os.environ.update(_ENV)
    hub_constants: Any = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True
    datasets_config: Any = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
        datasets_config.HF_DATASETS_OFFLINE = True
