"""The demo world's training process (``python -m sweeps.demo._train_process``).

``world._train_world`` starts it with the kernels pinned in its environment and one JSON
request on stdin: ``{"root", "recipe", "seed", "key", "progress"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    """Train the requested world into its staging directory."""
    from sweeps.demo.world import WorldRecipe, train_here

    request = json.loads(sys.stdin.read())
    train_here(
        Path(request["root"]),
        recipe=WorldRecipe.from_json(request["recipe"]),
        seed=int(request["seed"]),
        key=str(request["key"]),
        progress=bool(request["progress"]),
    )


if __name__ == "__main__":
    main()
