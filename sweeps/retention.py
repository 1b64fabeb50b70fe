"""What a stored trial says its policy kept: forgetting and correctness retention.

Read from a trial's stored ``benchmarks`` and ``stability`` records (``sweeps.trial`` writes
them), with the same names in the report (``report.json``, the front table) and in
``GET /sweeps/{id}/pareto``. Imports nothing heavy: the service's hot reads use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["correctness_retention_of", "forgetting_of"]


def forgetting_of(benchmarks: Mapping[str, Any] | None) -> dict[str, float]:
    """``forgetting_init`` (the initial actor) and ``forgetting_after`` (the mean over the
    seeds' trained policies), whichever were measured (see ``docs/stability-metrics.md``)."""
    benchmarks = benchmarks or {}
    out: dict[str, float] = {}
    if isinstance(benchmarks.get("forgetting_init"), int | float):
        out["forgetting_init"] = float(benchmarks["forgetting_init"])
    after = [
        float(run["forgetting"])
        for run in benchmarks.get("after") or []
        if isinstance(run.get("forgetting"), int | float)
    ]
    if after:
        out["forgetting_after"] = sum(after) / len(after)
    return out


def correctness_retention_of(stability: Mapping[str, Any] | None) -> float | None:
    """The mean correctness retention over the probe's seeds (None when it was not recorded:
    some prompt had no known answer)."""
    value = (stability or {}).get("correctness_retention")
    return float(value) if isinstance(value, int | float) else None
