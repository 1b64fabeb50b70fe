"""Nightly regression check: compare a sweep's front with a previous sweep's, by the intervals.

Two kinds of number are compared, each with its 95% interval (:mod:`sweeps.statistics`):

- the hypervolume of the feasible trials, with its bootstrap interval over the trials' seeds
  (only when both sweeps declare the same objectives, directions and references; otherwise the
  hypervolumes are not comparable and only the best values are compared);
- for each objective the two sweeps share, the best mean over the feasible trials, with the
  interval of the trial that reached it.

A number *regressed* when the current interval lies wholly on the worse side of the previous
one, further than ``margin`` (``--tolerance``, default the spec's ``nightly.tolerance``, 0)::

    maximized:  current.high + margin < previous.low
    minimized:  current.low - margin > previous.high

The ``length_at_horizon`` objective forecasts the length at ``probe.forecast_horizon`` updates:
when the two sweeps forecast at different horizons, neither that objective nor the hypervolume
is compared (the reason is listed in ``not_compared``).

A drop inside the intervals is noise, not a regression. A trial without an interval (one seed
and no lm-eval error) counts as its mean on both sides, so two single-seed sweeps fall back to
"a drop beyond the margin". A sweep with no feasible trial regresses against one that had some.
``bai-sweep run`` exits with :data:`EXIT_REGRESSION` on a regression.

**Warm start** (:func:`warm_start_spec`): before a nightly sweep runs, the previous successful
sweep's feasible front ratios are added to the new spec's explicit seed points, so they are
re-evaluated first and the two nights' fronts share candidates; :func:`same_candidates` pairs
them for the comparison's report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeps.forecast import forecasts_of
from sweeps.pareto import Direction
from sweeps.reports import SweepReportData, TrialRecord
from sweeps.search_space import Candidate
from sweeps.spec import ExplicitSeedPoint, SweepSpec
from sweeps.statistics import Interval

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "Comparison",
    "WarmStart",
    "compare_sweeps",
    "exit_code",
    "regressed",
    "same_candidates",
    "warm_start_spec",
]

#: ``bai-sweep run`` exit codes.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REGRESSION = 3


def regressed(
    current: Interval, previous: Interval, direction: Direction, *, margin: float = 0.0
) -> bool:
    """Whether ``current``'s interval lies wholly on the worse side of ``previous``'s, by more
    than ``margin`` (see the module docstring)."""
    current_low, current_high = current.bounds()
    previous_low, previous_high = previous.bounds()
    if direction == "maximize":
        return current_high + margin < previous_low
    return current_low - margin > previous_high


def _fmt(interval: Interval) -> str:
    if interval.low is None or interval.high is None:
        return f"{interval.mean:.4f}"
    return f"{interval.mean:.4f} [{interval.low:.4f}, {interval.high:.4f}]"


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing a sweep with a previous one."""

    previous_sweep_id: str | None
    tolerance: float
    """The extra margin beyond the intervals."""
    hypervolume: Interval
    previous_hypervolume: Interval | None = None
    hypervolume_comparable: bool = True
    best: dict[str, Interval] = field(default_factory=dict)
    previous_best: dict[str, Interval] = field(default_factory=dict)
    regressions: list[str] = field(default_factory=list)
    same_candidates: list[tuple[TrialRecord, TrialRecord]] = field(default_factory=list)
    """(previous, current) trials of the same (w, alpha), complete in both sweeps."""
    drifts: list[str] = field(default_factory=list)
    """Objectives of a candidate evaluated in both sweeps whose intervals came apart, worse
    (reported, not a regression: the front may have moved elsewhere)."""
    not_compared: dict[str, str] = field(default_factory=dict)
    """Shared objectives the two sweeps measured differently, with why."""

    @property
    def regressed(self) -> bool:
        """True if any interval fell wholly below the previous one (beyond the margin)."""
        return bool(self.regressions)

    def lines(self) -> list[str]:
        """A human summary, one finding per line."""
        if self.previous_sweep_id is None:
            return [
                f"hypervolume {_fmt(self.hypervolume)}; no previous successful sweep to compare"
            ]
        out = []
        if self.hypervolume_comparable and self.previous_hypervolume is not None:
            delta = self.hypervolume.mean - self.previous_hypervolume.mean
            out.append(
                f"hypervolume {_fmt(self.hypervolume)} vs {_fmt(self.previous_hypervolume)} "
                f"(sweep {self.previous_sweep_id}, {delta:+.4f})"
            )
        else:
            out.append(
                f"hypervolume {_fmt(self.hypervolume)}: not comparable with sweep "
                f"{self.previous_sweep_id} (different objectives, reference point or forecast "
                "horizon)"
            )
        for name, previous in self.previous_best.items():
            current = self.best.get(name)
            shown = "none" if current is None else _fmt(current)
            out.append(f"best {name} {shown} vs {_fmt(previous)}")
        if self.same_candidates:
            out.append(f"{len(self.same_candidates)} candidate(s) evaluated in both sweeps")
        out += [f"{name} not compared: {why}" for name, why in self.not_compared.items()]
        out += [f"worse on the same candidate: {d}" for d in self.drifts]
        out += [f"REGRESSION: {r}" for r in self.regressions]
        return out

    def to_json(self) -> dict[str, Any]:
        """The comparison as JSON data (``comparison.json``)."""
        return {
            "previous_sweep_id": self.previous_sweep_id,
            "rule": "regression when the current 95% interval lies wholly on the worse side of "
            "the previous one by more than the tolerance",
            "tolerance": self.tolerance,
            "hypervolume": self.hypervolume.mean,
            "hypervolume_interval": self.hypervolume.to_json(),
            "previous_hypervolume": (
                self.previous_hypervolume.mean if self.previous_hypervolume else None
            ),
            "previous_hypervolume_interval": (
                self.previous_hypervolume.to_json() if self.previous_hypervolume else None
            ),
            "hypervolume_comparable": self.hypervolume_comparable,
            "best": {name: i.to_json() for name, i in self.best.items()},
            "previous_best": {name: i.to_json() for name, i in self.previous_best.items()},
            "same_candidates": [
                {
                    "weights": list(current.weights),
                    "alpha": current.alpha,
                    "previous_trial": old.number,
                    "trial": current.number,
                    "previous_objectives": old.objectives,
                    "objectives": current.objectives,
                }
                for old, current in self.same_candidates
            ],
            "drifts": self.drifts,
            "not_compared": self.not_compared,
            "regressions": self.regressions,
        }


def compare_sweeps(
    current: SweepReportData, previous: SweepReportData | None, *, tolerance: float = 0.0
) -> Comparison:
    """Compare ``current`` with ``previous`` (see the module docstring).

    Args:
        tolerance: Extra margin beyond the intervals, in each number's own units (>= 0).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    hypervolume = current.hypervolume_interval()
    best = current.best_intervals()
    if previous is None:
        return Comparison(None, tolerance, hypervolume, best=best)
    not_compared = _measured_differently(current, previous)
    comparable = not not_compared and [
        (o.name, o.direction, o.reference) for o in current.objectives
    ] == [(o.name, o.direction, o.reference) for o in previous.objectives]
    previous_hypervolume = previous.hypervolume_interval()
    regressions = []
    if comparable and regressed(hypervolume, previous_hypervolume, "maximize", margin=tolerance):
        regressions.append(
            f"hypervolume fell from {_fmt(previous_hypervolume)} to {_fmt(hypervolume)} "
            f"(intervals apart, tolerance {tolerance:g})"
        )
    directions = {o.name: o.direction for o in current.objectives}
    previous_best = {
        name: interval
        for name, interval in previous.best_intervals().items()
        if name in directions and name not in not_compared
    }
    for name, old in previous_best.items():
        new = best.get(name)
        if new is None:
            regressions.append(
                f"no feasible trial completed, so no {name} to compare with {_fmt(old)}"
            )
        elif regressed(new, old, directions[name], margin=tolerance):
            regressions.append(
                f"best {name} went from {_fmt(old)} to {_fmt(new)} "
                f"(intervals apart, tolerance {tolerance:g})"
            )
    pairs = same_candidates(current, previous)
    drifts = []
    for old_trial, new_trial in pairs:
        before = _intervals_by_name(previous, old_trial)
        after = _intervals_by_name(current, new_trial)
        for objective in current.objectives:
            if objective.name in not_compared:
                continue
            was, now = before.get(objective.name), after.get(objective.name)
            if was and now and regressed(now, was, objective.direction, margin=tolerance):
                drifts.append(f"{new_trial.label()} {objective.name} {_fmt(was)} -> {_fmt(now)}")
    return Comparison(
        previous_sweep_id=previous.sweep_id,
        tolerance=tolerance,
        hypervolume=hypervolume,
        previous_hypervolume=previous_hypervolume,
        hypervolume_comparable=comparable,
        best=best,
        previous_best=previous_best,
        regressions=regressions,
        same_candidates=pairs,
        drifts=drifts,
        not_compared=not_compared,
    )


def _forecast_horizons(data: SweepReportData) -> set[int]:
    """The horizons of the length forecasts the sweep's scored trials recorded."""
    horizons = set()
    for trial, _ in data.scored_trials():
        horizon = forecasts_of(trial.stability).get("length_at_horizon", {}).get("horizon")
        if horizon is not None:
            horizons.add(horizon)
    return horizons


def _measured_differently(current: SweepReportData, previous: SweepReportData) -> dict[str, str]:
    """Shared objectives the two sweeps do not measure alike: ``length_at_horizon`` forecast
    at different horizons."""
    name = "length_at_horizon"
    shared = {o.name for o in current.objectives} & {o.name for o in previous.objectives}
    if name not in shared:
        return {}
    now, before = _forecast_horizons(current), _forecast_horizons(previous)
    if not now or not before or now == before:
        return {}
    return {
        name: f"forecast at update {', '.join(map(str, sorted(now)))} here but "
        f"{', '.join(map(str, sorted(before)))} in sweep {previous.sweep_id}"
    }


def _intervals_by_name(data: SweepReportData, trial: TrialRecord) -> dict[str, Interval]:
    intervals = trial.intervals(data.objectives) or []
    return {o.name: i for o, i in zip(data.objectives, intervals, strict=False)}


def _key(weights: Sequence[float], alpha: float) -> tuple[float, ...]:
    return (*(round(w, 6) for w in weights), round(alpha, 6))


def same_candidates(
    current: SweepReportData, previous: SweepReportData
) -> list[tuple[TrialRecord, TrialRecord]]:
    """(previous, current) complete trials at the same (w, alpha), in current trial order."""
    old = {_key(t.weights, t.alpha): t for t, _ in previous.scored_trials()}
    return [
        (old[_key(t.weights, t.alpha)], t)
        for t, _ in current.scored_trials()
        if _key(t.weights, t.alpha) in old
    ]


@dataclass(frozen=True)
class WarmStart:
    """What :func:`warm_start_spec` added to a spec."""

    source_sweep_id: str | None
    added: list[tuple[tuple[float, ...], float]] = field(default_factory=list)
    """The (weights, alpha) added as explicit seed points."""
    skipped: list[str] = field(default_factory=list)
    """Why front ratios were not added, one line each."""

    def lines(self) -> list[str]:
        """A human summary."""
        if self.source_sweep_id is None:
            return ["warm start: no previous successful sweep"]
        shown = "; ".join(
            f"w=({', '.join(f'{w:.3f}' for w in weights)}) a={alpha:.3f}"
            for weights, alpha in self.added
        )
        out = [
            f"warm start: {len(self.added)} front ratio(s) of sweep {self.source_sweep_id} "
            f"added as seed points" + (f": {shown}" if shown else "")
        ]
        return out + [f"warm start: {line}" for line in self.skipped]

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "source_sweep_id": self.source_sweep_id,
            "added": [{"weights": list(w), "alpha": a} for w, a in self.added],
            "skipped": self.skipped,
        }


def warm_start_spec(
    spec: SweepSpec, previous: SweepReportData | None
) -> tuple[SweepSpec, WarmStart]:
    """A new spec whose seed points start with ``previous``'s feasible front ratios.

    The recommended trial comes first, then the front in its report order. Ratios already
    among the spec's seed points are not repeated (they keep their kind); ratios outside the
    spec's search space (other bounds, fixed weights or number of SFT models) are skipped; so
    are those beyond the trial budget (``search.n_trials`` minus the spec's own seed points).
    ``spec`` itself is not changed.
    """
    if previous is None:
        return spec, WarmStart(None)
    space = spec.search_space()
    chosen = previous.recommendation()
    ordered = ([chosen.trial] if chosen else []) + previous.front()
    existing = {_key(p.candidate.weights, p.candidate.alpha) for p in spec.seed_points()}
    room = spec.search.n_trials - len(existing)
    added: list[tuple[tuple[float, ...], float]] = []
    skipped: list[str] = []
    seen: set[tuple[float, ...]] = set()
    for trial in ordered:
        key = _key(trial.weights, trial.alpha)
        if key in seen or key in existing:
            continue
        seen.add(key)
        if not space.contains(Candidate(tuple(trial.weights), trial.alpha)):
            skipped.append(f"{trial.label()} lies outside this spec's search space")
        elif len(added) >= room:
            skipped.append(f"{trial.label()}: no room in search.n_trials={spec.search.n_trials}")
        else:
            added.append((tuple(trial.weights), trial.alpha))
    if not added:
        return spec, WarmStart(previous.sweep_id, [], skipped)
    raw = spec.search.seed_points
    presets: list[Any] = [] if raw == "none" else [raw] if isinstance(raw, str) else list(raw)
    points = [ExplicitSeedPoint(weights=list(w), alpha=a) for w, a in added]
    data = spec.model_dump(mode="json")
    data["search"]["seed_points"] = [p.model_dump(mode="json") for p in points] + [
        p.model_dump(mode="json") if isinstance(p, ExplicitSeedPoint) else p for p in presets
    ]
    return SweepSpec.model_validate(data), WarmStart(previous.sweep_id, added, skipped)


def exit_code(status: str, comparison: Comparison | None) -> int:
    """``bai-sweep run``'s exit code for a sweep's final status and its comparison."""
    if status != "succeeded":
        return EXIT_FAILED
    if comparison is not None and comparison.regressed:
        return EXIT_REGRESSION
    return EXIT_OK
