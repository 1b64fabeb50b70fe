"""Nightly regression check: compare a sweep's front with a previous sweep's.

Two numbers are compared, each with the same absolute ``tolerance``:

- the hypervolume, against the same fixed reference point (only when both sweeps declare the
  same objectives, directions and references; otherwise the hypervolumes are not comparable and
  only the best values are compared);
- the best value of each objective the two sweeps share.

A drop beyond the tolerance is a regression (``bai-sweep run`` then exits with
:data:`EXIT_REGRESSION`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sweeps.reports import SweepReportData

#: ``bai-sweep run`` exit codes.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REGRESSION = 3


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing a sweep with a previous one."""

    previous_sweep_id: str | None
    tolerance: float
    hypervolume: float
    previous_hypervolume: float | None = None
    hypervolume_comparable: bool = True
    best: dict[str, float] = field(default_factory=dict)
    previous_best: dict[str, float] = field(default_factory=dict)
    regressions: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        """True if anything dropped by more than the tolerance."""
        return bool(self.regressions)

    def lines(self) -> list[str]:
        """A human summary, one finding per line."""
        if self.previous_sweep_id is None:
            return [f"hypervolume {self.hypervolume:.4f}; no previous successful sweep to compare"]
        out = []
        if self.hypervolume_comparable and self.previous_hypervolume is not None:
            delta = self.hypervolume - self.previous_hypervolume
            out.append(
                f"hypervolume {self.hypervolume:.4f} vs {self.previous_hypervolume:.4f} "
                f"(sweep {self.previous_sweep_id}, {delta:+.4f})"
            )
        else:
            out.append(
                f"hypervolume {self.hypervolume:.4f}: not comparable with sweep "
                f"{self.previous_sweep_id} (different objectives or reference point)"
            )
        for name, previous in self.previous_best.items():
            current = self.best.get(name)
            shown = "none" if current is None else f"{current:.4f}"
            out.append(f"best {name} {shown} vs {previous:.4f}")
        out += [f"REGRESSION: {r}" for r in self.regressions]
        return out


def compare_sweeps(
    current: SweepReportData, previous: SweepReportData | None, *, tolerance: float
) -> Comparison:
    """Compare ``current`` with ``previous`` (see the module docstring)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    hypervolume = current.hypervolume()
    best = current.best_values()
    if previous is None:
        return Comparison(None, tolerance, hypervolume, best=best)
    comparable = [(o.name, o.direction, o.reference) for o in current.objectives] == [
        (o.name, o.direction, o.reference) for o in previous.objectives
    ]
    previous_hypervolume = previous.hypervolume()
    regressions = []
    if comparable and hypervolume < previous_hypervolume - tolerance:
        regressions.append(
            f"hypervolume fell from {previous_hypervolume:.4f} to {hypervolume:.4f} "
            f"(tolerance {tolerance:g})"
        )
    directions = {o.name: o.direction for o in current.objectives}
    previous_best = {
        name: value for name, value in previous.best_values().items() if name in directions
    }
    for name, old in previous_best.items():
        new = best.get(name)
        if new is None:
            regressions.append(f"no trial completed, so no {name} to compare with {old:.4f}")
            continue
        worse = old - new if directions[name] == "maximize" else new - old
        if worse > tolerance:
            regressions.append(
                f"best {name} went from {old:.4f} to {new:.4f} (tolerance {tolerance:g})"
            )
    return Comparison(
        previous_sweep_id=previous.sweep_id,
        tolerance=tolerance,
        hypervolume=hypervolume,
        previous_hypervolume=previous_hypervolume,
        hypervolume_comparable=comparable,
        best=best,
        previous_best=previous_best,
        regressions=regressions,
    )


def exit_code(status: str, comparison: Comparison | None) -> int:
    """``bai-sweep run``'s exit code for a sweep's final status and its comparison."""
    if status != "succeeded":
        return EXIT_FAILED
    if comparison is not None and comparison.regressed:
        return EXIT_REGRESSION
    return EXIT_OK
