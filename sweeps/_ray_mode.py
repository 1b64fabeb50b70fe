"""Which Ray connection modes a sweep may use (no Ray import: the CLI checks before starting)."""

from __future__ import annotations

import os

from sweeps.exceptions import SweepRunError

RAY_CLIENT_REFUSED = (
    "Ray Client addresses (ray://...) are not supported: Ray Tune would run the sweep's "
    "driver on the head node, where its recorder does not exist. Join the cluster by its GCS "
    "address instead (RAY_ADDRESS=host:6379, the port of `ray start --head --port`)."
)


def check_ray_address(address: str | None) -> None:
    """Refuse a Ray Client address (argument or ``RAY_ADDRESS``) before any work starts.

    Raises:
        SweepRunError: The address is a ``ray://`` one.
    """
    for candidate in (address, os.environ.get("RAY_ADDRESS")):
        if candidate and candidate.strip().lower().startswith("ray://"):
            raise SweepRunError(f"{RAY_CLIENT_REFUSED} Got {candidate!r}.")
