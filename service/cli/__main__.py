"""``python -m service.cli``: the ``bai-sweep`` command line (used to spawn the worker)."""

from __future__ import annotations

from service.cli import main

main()
