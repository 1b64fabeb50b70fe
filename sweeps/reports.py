"""Sweep reports: ``report.md``, ``report.json`` and PNG figures, or one HTML page.

The input is plain data (:class:`SweepReportData`), built from the database by
:func:`sweeps.results.load_report_data` or by hand in tests, so the nightly CLI and the REST
service render the same report::

    report = build_report(data)
    report.write(directory)        # report.md, report.json, pareto.png, ratio_map.png, ...
    html = report.to_html()        # one self-contained page (figures inlined)
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evaluators.stability import DEFAULT_COLLAPSE_THRESHOLD
from sweeps.constraints import is_feasible
from sweeps.forecast import FORECAST_OBJECTIVES, forecasts_of
from sweeps.pareto import Direction, hypervolume, pareto_front
from sweeps.retention import correctness_retention_of, forgetting_of
from sweeps.spec import OBJECTIVE_BOUNDS
from sweeps.statistics import Interval, bootstrap_hypervolume, mean_interval, tied_set

#: Stability metrics shown in the front table when the probe reports them.
KEY_STABILITY_METRICS = (
    "length_retention",
    "length_trend",
    "reward_dip",
    "kl_final",
    "entropy_drop",
    "correctness_retention",
)
#: Forgetting columns of the front table (from the trials' benchmark records).
FORGETTING_COLUMNS = ("forgetting_init", "forgetting_after")
#: Per-step curves drawn for front members and baselines: (step key, axis label).
CURVES = (("length_mean", "mean response length"), ("reward_mean", "reward"), ("kl", "KL"))
FIGURE_NAMES = (
    "pareto.png",
    "hypervolume.png",
    "curves.png",
    "ratio_map.png",
    "objectives_by_ratio.png",
)
#: Benchmark objectives the recommendation ranks by, most preferred first.
RECOMMENDATION_BENCHMARKS = ("benchmark_after", "benchmark")
# The stability gate asks the seeds to show that the ratio keeps its length: no seed diverged
# and the 95% interval of the mean length retention lies at or above the collapse threshold.
# Gating on the point outcome of each seed (the rule until session 8: drop a trial when any
# seed collapsed) let a ratio whose retention sits at the threshold pass on one sweep's seeds
# and fail on another's, so two sweeps recommended different ratios; a ratio the seeds cannot
# tell from a collapsing one is not recommended, and the report says how close it came.
RECOMMENDATION_RULE = (
    "among the feasible front members and the feasible trials statistically tied with them "
    "(95% intervals "
    "overlapping), keep those whose seeds show they keep their length (no seed diverged, and "
    "the 95% interval of the mean length retention at or above the collapse threshold; with "
    "one seed, its retention at or above it); recommend the best mean {benchmark}, ties broken "
    "by the best mean stability, then the lower trial number; the runner-up is the next in "
    "that order"
)

_COLUMN_LEGEND = {
    "rung": "rung: the successive-halving rung of the probe (the front holds the top rung "
    "reached only: briefer probes of lower rungs never compete with it).",
    "correctness_retention": "correctness_retention: share of correct rollout answers over the "
    "probe's last window against its first (capped at 1; mean over seeds).",
    "forgetting_init": "forgetting_init / forgetting_after: mean score drop versus the base "
    "model on the retention tasks, of the initial actor / of the policy after RL (> 0: forgot).",
    "reward_asymptote": "reward_asymptote: the reward the probe's curve tends to (ScaleRL-style "
    "fit, docs/stability-metrics.md); mean over the seeds with a fit, '–' when none had one.",
    "length_at_horizon": "length_at_horizon: the mean response length the probe's fitted length "
    "curve predicts at the forecast horizon (docs/stability-metrics.md); mean over the seeds "
    "with a fit, '–' when none had one.",
}
#: Legend of a forecast *objective*'s column (its value falls back when a fit is refused).
_FORECAST_OBJECTIVE_LEGEND = (
    "{name} (objective): each seed's forecast ({what}), or its observed mean over the probe's "
    "last window when the fit was refused; '(fallback k/n)': k of the n seeds fell back "
    "(docs/stability-metrics.md)."
)
_FORECAST_WHAT = {
    "reward_asymptote": "the fitted reward asymptote",
    "length_at_horizon": "the fitted length curve at the forecast horizon",
}

_KIND_STYLE = {
    "paper": {"marker": "s", "color": "tab:orange", "label": "paper seed"},
    "baseline": {"marker": "^", "color": "tab:red", "label": "baseline (no BAI)"},
    "explicit": {"marker": "D", "color": "tab:purple", "label": "explicit seed"},
}


@dataclass(frozen=True)
class ObjectiveInfo:
    """An objective's name, direction and hypervolume reference value."""

    name: str
    direction: Direction
    reference: float


@dataclass(frozen=True)
class TrialRecord:
    """What a report needs to know about one trial."""

    number: int
    weights: tuple[float, ...]
    alpha: float
    state: str
    seed_kind: str | None = None
    objectives: dict[str, float] | None = None
    stability: dict[str, Any] | None = None
    benchmarks: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    #: Its successive-halving probe ``{rung, steps, repeats, candidate}``, None without.
    fidelity: dict[str, int] | None = None

    @property
    def rung(self) -> int:
        """Its successive-halving rung (0 without fidelity)."""
        return int((self.fidelity or {}).get("rung", 0))

    def values(self, objectives: Sequence[ObjectiveInfo]) -> tuple[float, ...] | None:
        """The objective values in ``objectives`` order, or None unless complete and finite."""
        if self.state != "complete" or not self.objectives:
            return None
        try:
            values = tuple(float(self.objectives[o.name]) for o in objectives)
        except (KeyError, TypeError, ValueError):
            return None
        return values if all(math.isfinite(v) for v in values) else None

    def intervals(self, objectives: Sequence[ObjectiveInfo]) -> list[Interval] | None:
        """Each objective's mean and interval over the seeds, or None unless complete.

        A trial recorded without per-seed statistics is one seed without an interval.
        """
        values = self.values(objectives)
        if values is None:
            return None
        stats = (self.stability or {}).get("objective_stats") or {}
        out = []
        for objective, value in zip(objectives, values, strict=True):
            entry = stats.get(objective.name)
            out.append(Interval.from_json(entry) if entry else mean_interval([value]))
        return out

    def forecast(self, name: str) -> Interval | None:
        """The forecast behind objective ``name`` of :data:`sweeps.forecast.FORECAST_OBJECTIVES`
        (the reward's asymptote, the length at the horizon) over the seeds with a fit (None
        without one)."""
        key, quantity = FORECAST_OBJECTIVES[name]
        forecast = (self.stability or {}).get(key)
        entry = forecast.get(quantity) if isinstance(forecast, dict) else None
        return Interval.from_json(entry) if entry else None

    def fallback_note(self, name: str) -> str:
        """`` (fallback k/n)`` when ``k`` of the ``n`` seeds' forecast objective ``name`` took
        the observed value, else empty."""
        note = forecasts_of(self.stability).get(name)
        if not note or not note["fallback"]:
            return ""
        return f" (fallback {note['seeds'] - note['seeds_fitted']}/{note['seeds']})"

    def feasible(self) -> bool:
        """Whether the trial met the sweep's constraints (see :mod:`sweeps.constraints`)."""
        return is_feasible(self.stability)

    def violations(self) -> dict[str, float]:
        """The constraints the trial broke, with their values (> 0)."""
        constraints = (self.stability or {}).get("constraints") or {}
        return {name: float(v) for name, v in constraints.items() if float(v) > 0}

    def _seed_records(self) -> list[dict[str, Any]]:
        """The per-seed stability records (a trial recorded without them: its own, as one)."""
        stability = self.stability or {}
        seeds = stability.get("seeds")
        if isinstance(seeds, list) and seeds and all(isinstance(s, dict) for s in seeds):
            return seeds
        return [stability]

    def collapsed_seeds(self) -> tuple[int, int]:
        """``(k, n)``: ``k`` of the probe's ``n`` seeds collapsed or diverged (a trial recorded
        without per-seed records counts as one seed, collapsed when its flags say so)."""
        seeds = self._seed_records()
        return sum(bool(s.get("collapsed")) or bool(s.get("diverged")) for s in seeds), len(seeds)

    def retention_interval(self) -> Interval | None:
        """The mean length retention over the seeds with its 95% interval (one seed: no
        interval), None for a trial recorded without one."""
        raw = [s.get("length_retention") for s in self._seed_records()]
        values = [float(v) for v in raw if isinstance(v, int | float) and math.isfinite(v)]
        if len(values) != len(raw):
            return None
        return mean_interval(values, bounds=(0.0, 1.0))

    def keeps_length(self, collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD) -> bool:
        """Whether the seeds show the probe keeps its length: the gate of
        :data:`RECOMMENDATION_RULE` (no seed diverged; the low end of the 95% interval of the
        mean length retention at or above ``collapse_threshold``; one seed: its retention; a
        trial recorded without retentions: its flags)."""
        if any(s.get("diverged") for s in self._seed_records()):
            return False
        interval = self.retention_interval()
        if interval is None:
            return self.collapsed_seeds()[0] == 0
        low = interval.mean if interval.low is None else interval.low
        return low >= collapse_threshold

    def forgetting(self) -> dict[str, float]:
        """``forgetting_init`` and ``forgetting_after``, whichever were measured
        (:func:`sweeps.retention.forgetting_of`)."""
        return forgetting_of(self.benchmarks)

    def correctness_retention(self) -> float | None:
        """The mean correctness retention over the seeds, if recorded."""
        return correctness_retention_of(self.stability)

    def label(self) -> str:
        """``#3 w=(0.50, 0.50) a=0.20``."""
        weights = ", ".join(f"{w:.2f}" for w in self.weights)
        rung = f" rung {self.rung}" if self.fidelity else ""
        return f"#{self.number} w=({weights}) a={self.alpha:.2f}{rung}"


@dataclass(frozen=True)
class SweepReportData:
    """A sweep and its trials, as plain data."""

    sweep_id: str
    name: str
    status: str
    objectives: list[ObjectiveInfo]
    trials: list[TrialRecord]
    n_trials: int
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD
    """The probe's collapse threshold (``probe.collapse_threshold`` of the sweep's spec)."""

    @property
    def directions(self) -> list[Direction]:
        """The objectives' directions."""
        return [o.direction for o in self.objectives]

    @property
    def reference_point(self) -> list[float]:
        """The hypervolume reference point."""
        return [o.reference for o in self.objectives]

    def scored_trials(self) -> list[tuple[TrialRecord, tuple[float, ...]]]:
        """Complete trials with finite values for every objective, in trial-number order, at
        the top rung reached (successive halving: a lower rung's briefer probes never compete
        with it; see :func:`sweeps.fidelity.final_ranking`). Every front, hypervolume, tie
        set, recommendation and nightly comparison is computed on these."""
        out = []
        for trial in sorted(self.trials, key=lambda t: t.number):
            values = trial.values(self.objectives)
            if values is not None:
                out.append((trial, values))
        top = max((trial.rung for trial, _ in out), default=0)
        return [(trial, values) for trial, values in out if trial.rung == top]

    def rung_lines(self) -> list[str]:
        """Per rung of a successive-halving sweep: its probes, their steps and seeds."""
        rungs: dict[int, list[TrialRecord]] = {}
        for trial in self.trials:
            if trial.fidelity:
                rungs.setdefault(trial.rung, []).append(trial)
        lines = []
        for rung, trials in sorted(rungs.items()):
            f = trials[0].fidelity or {}
            counts = ", ".join(
                f"{n} {state}" for state, n in sorted(Counter(t.state for t in trials).items())
            )
            lines.append(
                f"rung {rung}: {len(trials)} probe runs of {f.get('steps')} steps x "
                f"{f.get('repeats')} seeds ({counts})"
            )
        return lines

    def feasible_trials(self) -> list[tuple[TrialRecord, tuple[float, ...]]]:
        """The scored trials that met every constraint."""
        return [(t, v) for t, v in self.scored_trials() if t.feasible()]

    def infeasible(self) -> list[TrialRecord]:
        """Complete trials that broke a constraint, in trial-number order."""
        return [t for t, _ in self.scored_trials() if not t.feasible()]

    def front(self) -> list[TrialRecord]:
        """The feasible Pareto front's trials, sorted by the first objective (best first)."""
        scored = self.feasible_trials()
        indices = pareto_front([v for _, v in scored], self.directions)
        members = [scored[i] for i in indices]
        reverse = self.objectives[0].direction == "maximize"
        members.sort(key=lambda item: item[1][0], reverse=reverse)
        return [trial for trial, _ in members]

    def hypervolume(self) -> float:
        """The hypervolume of the feasible trials against the fixed reference point."""
        values = [v for _, v in self.feasible_trials()]
        return hypervolume(values, self.reference_point, self.directions)

    def hypervolume_interval(self, *, resamples: int = 500, seed: int = 0) -> Interval:
        """The hypervolume of the means with a parametric-bootstrap interval over the trials'
        seeds (see :func:`sweeps.statistics.bootstrap_hypervolume`)."""
        rows = [t.intervals(self.objectives) or [] for t, _ in self.feasible_trials()]
        return bootstrap_hypervolume(
            rows,
            self.reference_point,
            self.directions,
            bounds=[OBJECTIVE_BOUNDS.get(o.name) for o in self.objectives],
            resamples=resamples,
            seed=seed,
        )

    def tied(self) -> list[TrialRecord]:
        """Feasible trials off the front that no feasible trial clearly dominates."""
        scored = self.feasible_trials()
        intervals = [trial.intervals(self.objectives) or [] for trial, _ in scored]
        front = pareto_front([v for _, v in scored], self.directions)
        return [scored[i][0] for i in tied_set(intervals, front, self.directions)]

    def recommendation(self) -> Recommendation | None:
        """The recommended trial and its runner-up by :data:`RECOMMENDATION_RULE`.

        None when no trial on or tied with the front showed that it keeps its length.
        """
        return self.recommendation_and_gated()[0]

    def gated_out(self) -> list[TrialRecord]:
        """The front members and tied trials the recommendation's stability gate dropped (their
        seeds do not show they keep their length), in the recommendation's order."""
        return self.recommendation_and_gated()[1]

    def recommendation_and_gated(self) -> tuple[Recommendation | None, list[TrialRecord]]:
        """:meth:`recommendation` and :meth:`gated_out` from one ranking of the front members
        and tied trials (by :data:`RECOMMENDATION_RULE`'s benchmark, then stability), split by
        the stability gate."""
        names = [o.name for o in self.objectives]
        key_name = next((n for n in RECOMMENDATION_BENCHMARKS if n in names), names[0])
        key = names.index(key_name)
        sign = 1.0 if self.objectives[key].direction == "maximize" else -1.0
        stability = names.index("stability") if "stability" in names else None
        pool = {t.number: t for t in [*self.front(), *self.tied()]}
        scored = [(t, t.values(self.objectives)) for t in pool.values()]
        ranked = sorted(
            ((t, v) for t, v in scored if v is not None),
            key=lambda item: (
                -sign * item[1][key],
                -item[1][stability] if stability is not None else 0.0,
                item[0].number,
            ),
        )
        kept: list[TrialRecord] = []
        gated: list[TrialRecord] = []
        for trial, _ in ranked:
            (kept if trial.keeps_length(self.collapse_threshold) else gated).append(trial)
        if not kept:
            return None, gated
        chosen = Recommendation(
            trial=kept[0],
            runner_up=kept[1] if len(kept) > 1 else None,
            ranked_by=key_name,
            rule=RECOMMENDATION_RULE.format(benchmark=key_name),
        )
        return chosen, gated

    def hypervolume_history(self) -> list[tuple[int, float]]:
        """``(finished trials, hypervolume)`` after each finished trial, in finishing order."""
        finished = [t for t in self.trials if t.state in ("complete", "failed", "pruned")]
        far_future = datetime.max.replace(tzinfo=None)
        finished.sort(
            key=lambda t: (
                t.finished_at.replace(tzinfo=None) if t.finished_at else far_future,
                t.number,
            )
        )
        history = []
        values: dict[int, list[tuple[float, ...]]] = {}  # by rung: the top rung's counts
        for count, trial in enumerate(finished, start=1):
            value = trial.values(self.objectives)
            if value is not None and trial.feasible():
                values.setdefault(trial.rung, []).append(value)
            top = values[max(values)] if values else []
            history.append((count, hypervolume(top, self.reference_point, self.directions)))
        return history

    def best_values(self) -> dict[str, float]:
        """The best value reached by each objective over the feasible trials."""
        scored = self.feasible_trials()
        best: dict[str, float] = {}
        for k, objective in enumerate(self.objectives):
            column = [values[k] for _, values in scored]
            if column:
                best[objective.name] = (
                    max(column) if objective.direction == "maximize" else min(column)
                )
        return best

    def best_intervals(self) -> dict[str, Interval]:
        """Per objective, the interval of the feasible trial with the best mean."""
        scored = self.feasible_trials()
        best: dict[str, Interval] = {}
        for k, objective in enumerate(self.objectives):
            sign = 1.0 if objective.direction == "maximize" else -1.0
            ranked = sorted(scored, key=lambda item: (-sign * item[1][k], item[0].number))
            if ranked:
                intervals = ranked[0][0].intervals(self.objectives) or []
                best[objective.name] = intervals[k]
        return best

    def counts(self) -> dict[str, int]:
        """How many trials are in each state."""
        out: dict[str, int] = {}
        for trial in self.trials:
            out[trial.state] = out.get(trial.state, 0) + 1
        return out


@dataclass(frozen=True)
class Recommendation:
    """One recommended trial, the runner-up and the rule that chose them."""

    trial: TrialRecord
    runner_up: TrialRecord | None
    ranked_by: str
    rule: str


@dataclass
class Report:
    """A rendered report: the data, the front, the hypervolume and the PNG figures."""

    data: SweepReportData
    front: list[TrialRecord]
    hypervolume: float
    figures: dict[str, bytes]
    tied: list[TrialRecord] = field(default_factory=list)
    """Trials off the front that the intervals cannot tell from it."""
    hypervolume_interval: Interval | None = None
    recommendation: Recommendation | None = None
    gated_out: list[TrialRecord] = field(default_factory=list)
    """Front members and tied trials the recommendation's stability gate dropped."""

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (what ``report.json`` holds)."""
        data = self.data
        front_numbers = {t.number for t in self.front}
        return _json_safe(
            {
                "sweep_id": data.sweep_id,
                "name": data.name,
                "status": data.status,
                "error": data.error,
                "n_trials": data.n_trials,
                "counts": data.counts(),
                "rungs": data.rung_lines(),
                "objectives": [
                    {"name": o.name, "direction": o.direction, "reference": o.reference}
                    for o in data.objectives
                ],
                "reference_point": data.reference_point,
                "hypervolume": self.hypervolume,
                "hypervolume_interval": (
                    self.hypervolume_interval.to_json() if self.hypervolume_interval else None
                ),
                "tied": [t.number for t in self.tied],
                "infeasible": [
                    {"number": t.number, "violations": t.violations()} for t in data.infeasible()
                ],
                "recommendation": recommendation_json(data.objectives, self.recommendation),
                "gated_out": [ratio_json(data.objectives, t) for t in self.gated_out],
                "hypervolume_history": [[n, hv] for n, hv in data.hypervolume_history()],
                "best_values": data.best_values(),
                "front": [_trial_json(t) for t in self.front],
                "trials": [
                    {**_trial_json(t), "on_front": t.number in front_numbers}
                    for t in sorted(data.trials, key=lambda t: t.number)
                ],
                "figures": sorted(self.figures),
            }
        )

    def front_table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the front-member table (shared by Markdown, HTML and the CLI)."""
        names = [o.name for o in self.data.objectives]
        stability_keys = _stability_keys(self.front)
        forgetting_keys = [
            key for key in FORGETTING_COLUMNS if any(key in t.forgetting() for t in self.front)
        ]
        forecast_keys = [
            name
            for name in FORECAST_OBJECTIVES
            if name not in names and any(t.forecast(name) for t in self.front)
        ]
        rungs = ["rung"] if any(t.fidelity for t in self.front) else []
        header = [
            "trial",
            *rungs,
            "kind",
            "weights",
            "alpha",
            *names,
            *stability_keys,
            *forgetting_keys,
            *forecast_keys,
        ]
        rows = []
        for trial in self.front:
            objectives = trial.objectives or {}
            stability = trial.stability or {}
            known = trial.intervals(self.data.objectives)
            intervals: list[Interval | None] = list(known) if known else [None] * len(names)
            rows.append(
                [
                    f"#{trial.number}",
                    *(str(trial.rung) for _ in rungs),
                    trial.seed_kind or "sampled",
                    "(" + ", ".join(f"{w:.3f}" for w in trial.weights) + ")",
                    f"{trial.alpha:.3f}",
                    *(
                        _fmt_interval(objectives.get(n), i) + trial.fallback_note(n)
                        for n, i in zip(names, intervals, strict=True)
                    ),
                    *(_fmt(stability.get(k)) for k in stability_keys),
                    *(_fmt(trial.forgetting().get(k)) for k in forgetting_keys),
                    *(_fmt_forecast(trial.forecast(k)) for k in forecast_keys),
                ]
            )
        return header, rows

    def to_markdown(self, *, image_prefix: str = "") -> str:
        """``report.md``; figures are linked as ``{image_prefix}pareto.png`` etc."""
        data = self.data
        counts = ", ".join(f"{n} {state}" for state, n in sorted(data.counts().items()))
        lines = [
            f"# Sweep report: {data.name}",
            "",
            f"- sweep id: `{data.sweep_id}`",
            f"- status: **{data.status}**" + (f" ({data.error})" if data.error else ""),
            f"- trials: {len(data.trials)} of {data.n_trials} ({counts or 'none'})",
            *(f"- successive halving, {line}" for line in data.rung_lines()),
            "- objectives: "
            + ", ".join(
                f"{o.name} ({o.direction}, reference {o.reference:g})" for o in data.objectives
            ),
            f"- hypervolume: **{self.hypervolume:.4f}**"
            + _interval_note(self.hypervolume_interval),
            *_prompt_lines(data.trials),
            "",
            "## Recommendation",
            "",
            *self.recommendation_lines(),
            "",
            "## Pareto front",
            "",
            "Objectives as mean ± half the 95% interval over the probe seeds.",
            "",
        ]
        header, rows = self.front_table()
        legend = self.legend(header)
        if legend:
            lines += [*legend, ""]
        if rows:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(row) + " |" for row in rows]
        else:
            lines.append("No trial completed: the front is empty.")
        if self.tied:
            lines += [
                "",
                "Statistically tied with the front (intervals overlap): "
                + ", ".join(t.label() for t in self.tied),
            ]
        for name, title in (
            ("pareto.png", "Trials and Pareto front"),
            ("hypervolume.png", "Hypervolume against finished trials"),
            ("curves.png", "Probe curves of front members and baselines"),
            ("ratio_map.png", "Ratio map: every candidate's alpha and w_1"),
            ("objectives_by_ratio.png", "Each objective against alpha (and w_1), 95% intervals"),
        ):
            if name in self.figures:
                lines += ["", f"## {title}", "", f"![{title}]({image_prefix}{name})"]
        infeasible = data.infeasible()
        if infeasible:
            lines += ["", "## Infeasible trials (kept off the front)", ""]
            for trial in infeasible:
                broken = ", ".join(f"{n} by {v:.3g}" for n, v in trial.violations().items())
                lines.append(f"- {trial.label()}: breaks {broken}")
        failed = [t for t in data.trials if t.state in ("failed", "pruned")]
        if failed:
            lines += ["", "## Failed and pruned trials", ""]
            for trial in sorted(failed, key=lambda t: t.number):
                lines.append(f"- {trial.label()}: {trial.state} — {trial.error or 'no reason'}")
        return "\n".join(lines) + "\n"

    def legend(self, header: Sequence[str]) -> list[str]:
        """What the front table's less obvious columns mean."""
        objectives = {o.name for o in self.data.objectives}
        lines = []
        for key in header:
            if key in objectives and key in _FORECAST_WHAT:
                lines.append(_FORECAST_OBJECTIVE_LEGEND.format(name=key, what=_FORECAST_WHAT[key]))
            elif key in _COLUMN_LEGEND:
                lines.append(_COLUMN_LEGEND[key])
        return lines

    def recommendation_lines(self, *, rule: bool = True) -> list[str]:
        """The recommendation as Markdown list items: the recommended ratio (or why there is
        none) and the runner-up with their intervals, the ratios the stability gate dropped and,
        with ``rule``, the rule that chose."""
        chosen = self.recommendation
        objectives = self.data.objectives

        def describe(trial: TrialRecord) -> str:
            intervals = trial.intervals(objectives) or []
            values = ", ".join(
                f"{o.name} {_fmt_interval(i.mean, i)}{trial.fallback_note(o.name)}"
                for o, i in zip(objectives, intervals, strict=True)
            )
            collapsed, seeds = trial.collapsed_seeds()
            retention = trial.retention_interval()
            note = ""
            if retention is not None:
                note = f"; length retention {_fmt_interval(retention.mean, retention)}"
            if collapsed:
                note += f", collapsed on {collapsed} of {seeds} seeds"
            return f"{trial.label()} ({trial.seed_kind or 'sampled'}): {values}{note}"

        threshold = f"{self.data.collapse_threshold:g}"
        if chosen is None:
            lines = [
                "No recommendation: no feasible trial on or tied with the front showed that it "
                "keeps its length (the low end of its length retention's interval at or above "
                f"the collapse threshold {threshold})."
            ]
        else:
            lines = [f"- **use {describe(chosen.trial)}**"]
            if chosen.runner_up is not None:
                lines.append(f"- runner-up: {describe(chosen.runner_up)}")
        for trial in self.gated_out:
            lines.append(
                f"- not recommended, its seeds do not show it keeps its length (threshold "
                f"{threshold}): {describe(trial)}"
            )
        if chosen is not None and rule:
            lines.append(f"- rule: {chosen.rule}")
        return lines

    def to_html(self) -> str:
        """One self-contained HTML page (figures inlined as data URIs)."""
        data = self.data
        esc = html.escape
        header, rows = self.front_table()
        table = (
            "<table><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in header)
            + "</tr></thead><tbody>"
            + "".join(
                "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
            )
            + "</tbody></table>"
            if rows
            else "<p>No trial completed: the front is empty.</p>"
        )
        images = "".join(
            f'<figure><img alt="{esc(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}"></figure>'
            for name, png in self.figures.items()
        )
        counts = ", ".join(f"{n} {state}" for state, n in sorted(data.counts().items()))
        error = f" ({esc(data.error)})" if data.error else ""
        tied = (
            "<p>Statistically tied with the front: "
            + esc(", ".join(t.label() for t in self.tied))
            + "</p>"
            if self.tied
            else ""
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Sweep {esc(data.name)}</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:70em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>Sweep report: {esc(data.name)}</h1>"
            f"<p>id <code>{esc(data.sweep_id)}</code> · status <b>{esc(data.status)}</b>{error}"
            f" · {len(data.trials)} of {data.n_trials} trials ({esc(counts or 'none')})"
            + "".join(f" · {esc(line)}" for line in data.rung_lines())
            + f" · hypervolume <b>{self.hypervolume:.4f}</b>"
            f"{esc(_interval_note(self.hypervolume_interval))}</p>"
            "<h2>Recommendation</h2><ul>"
            + "".join(
                f"<li>{esc(line.removeprefix('- ').replace('**', ''))}</li>"
                for line in self.recommendation_lines()
            )
            + f"</ul><h2>Pareto front</h2>{table}{tied}{images}</body></html>"
        )

    def write(self, directory: str | Path) -> Path:
        """Write ``report.md``, ``report.json`` and the PNGs into ``directory``; return it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, png in self.figures.items():
            (directory / name).write_bytes(png)
        (directory / "report.json").write_text(
            json.dumps(self.to_json(), indent=2, default=str) + "\n", encoding="utf-8"
        )
        (directory / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        return directory


def ratio_json(objectives: Sequence[ObjectiveInfo], trial: TrialRecord) -> dict[str, Any]:
    """One trial's (w, alpha), objective intervals and what its seeds showed, as JSON data
    (the recommendation, its runner-up and the trials its stability gate dropped)."""
    intervals = trial.intervals(objectives) or []
    collapsed, seeds = trial.collapsed_seeds()
    retention = trial.retention_interval()
    return _json_safe(
        {
            "trial_number": trial.number,
            "weights": list(trial.weights),
            "alpha": trial.alpha,
            "seed_kind": trial.seed_kind,
            "objectives": {o.name: i.to_json() for o, i in zip(objectives, intervals, strict=True)},
            "forgetting": trial.forgetting(),
            "correctness_retention": trial.correctness_retention(),
            "forecasts": forecasts_of(trial.stability),
            "seeds": seeds,
            "collapsed_seeds": collapsed,
            "length_retention": retention.to_json() if retention else None,
        }
    )


def recommendation_json(
    objectives: Sequence[ObjectiveInfo], chosen: Recommendation | None
) -> dict[str, Any] | None:
    """The recommended (w, alpha) with its intervals and the runner-up, as JSON data."""
    if chosen is None:
        return None
    return _json_safe(
        {
            **ratio_json(objectives, chosen.trial),
            "runner_up": ratio_json(objectives, chosen.runner_up) if chosen.runner_up else None,
            "ranked_by": chosen.ranked_by,
            "rule": chosen.rule,
        }
    )


def front_statistics(data: SweepReportData) -> dict[str, Any]:
    """What the measurement can tell about the front: the tied set, the hypervolume interval,
    the infeasible trials and the recommendation (JSON data, for ``GET /sweeps/{id}/pareto``)."""
    interval = data.hypervolume_interval()
    chosen, gated = data.recommendation_and_gated()
    return _json_safe(
        {
            "tied": [t.number for t in data.tied()],
            "hypervolume_interval": interval.to_json(),
            "infeasible": [
                {"number": t.number, "violations": t.violations()} for t in data.infeasible()
            ],
            "recommendation": recommendation_json(data.objectives, chosen),
            "gated_out": [ratio_json(data.objectives, t) for t in gated],
        }
    )


def build_report(data: SweepReportData) -> Report:
    """Compute the front and hypervolume of ``data`` and render its figures."""
    front = data.front()
    chosen, gated = data.recommendation_and_gated()
    figures = {
        "pareto.png": pareto_figure(data, front),
        "hypervolume.png": hypervolume_figure(data),
        "curves.png": curves_figure(data, front),
        "ratio_map.png": ratio_map_figure(data, front, chosen=chosen),
        "objectives_by_ratio.png": objectives_by_ratio_figure(data, front),
    }
    return Report(
        data=data,
        front=front,
        hypervolume=data.hypervolume(),
        figures=figures,
        tied=data.tied(),
        hypervolume_interval=data.hypervolume_interval(),
        recommendation=chosen,
        gated_out=gated,
    )


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def pareto_figure(data: SweepReportData, front: Sequence[TrialRecord]) -> bytes:
    """Scatter of the first two objectives (or objective against trial number for one)."""
    figure = Figure(figsize=(6.4, 4.8))
    ax = figure.add_subplot()
    objectives = data.objectives
    infeasible = [(t, v) for t, v in data.scored_trials() if not t.feasible()]
    scored = data.feasible_trials()
    front_numbers = {t.number for t in front}
    two_d = len(objectives) >= 2

    def xy(trial: TrialRecord, values: tuple[float, ...]) -> tuple[float, float]:
        return (values[0], values[1]) if two_d else (trial.number, values[0])

    if infeasible:
        ax.scatter(
            *zip(*(xy(t, v) for t, v in infeasible), strict=True),
            marker="x",
            color="tab:gray",
            alpha=0.6,
            label="infeasible",
        )
    sampled = [xy(t, v) for t, v in scored if t.seed_kind is None]
    if sampled:
        ax.scatter(*zip(*sampled, strict=True), color="tab:gray", alpha=0.7, label="sampled")
    for kind, style in _KIND_STYLE.items():
        points = [xy(t, v) for t, v in scored if t.seed_kind == kind]
        if points:
            ax.scatter(
                *_columns(points),
                marker=style["marker"],
                color=style["color"],
                s=60,
                label=style["label"],
            )
    front_points = sorted(xy(t, v) for t, v in scored if t.number in front_numbers)
    if front_points:
        ax.plot(*zip(*front_points, strict=True), color="tab:blue", linewidth=1, zorder=0)
        ax.scatter(
            *_columns(front_points),
            facecolors="none",
            edgecolors="tab:blue",
            s=160,
            linewidths=1.5,
            label="Pareto front",
        )
    for trial, values in scored:
        if trial.number in front_numbers:
            ax.annotate(
                f"#{trial.number}",
                xy(trial, values),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
            )
    if two_d:
        ax.set_xlabel(f"{objectives[0].name} ({objectives[0].direction})")
        ax.set_ylabel(f"{objectives[1].name} ({objectives[1].direction})")
    else:
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{objectives[0].name} ({objectives[0].direction})")
    title = "Pareto front" if scored else "Pareto front (no complete trial yet)"
    ax.set_title(f"{data.name}: {title}")
    if scored or infeasible:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _png(figure)


def ratio_map_figure(
    data: SweepReportData,
    front: Sequence[TrialRecord],
    objective: str | None = None,
    *,
    chosen: Recommendation | None,
) -> bytes:
    """Every candidate at (alpha, w_1), coloured by ``objective`` (default: the first one).

    Front members are ringed, the recommendation (``chosen``, as
    :meth:`SweepReportData.recommendation_and_gated` gave it) starred; infeasible trials are grey
    crosses, failed and pruned ones small grey dots.
    """
    from matplotlib import colormaps

    figure = Figure(figsize=(6.4, 4.8))
    ax = figure.add_subplot()
    names = [o.name for o in data.objectives]
    name = objective or names[0]
    if name not in names:
        raise ValueError(f"no objective {name!r} in {names}")
    key = names.index(name)
    scored = data.feasible_trials()
    infeasible = [t for t, _ in data.scored_trials() if not t.feasible()]
    unscored = [t for t in data.trials if t.values(data.objectives) is None]
    if unscored:
        ax.scatter(
            [t.alpha for t in unscored],
            [t.weights[0] for t in unscored],
            s=12,
            color="tab:gray",
            alpha=0.5,
            label="failed / no value",
        )
    if infeasible:
        ax.scatter(
            [t.alpha for t in infeasible],
            [t.weights[0] for t in infeasible],
            marker="x",
            color="tab:gray",
            label="infeasible",
        )
    if scored:
        cmap = colormaps["viridis" if data.objectives[key].direction == "maximize" else "viridis_r"]
        points = ax.scatter(
            [t.alpha for t, _ in scored],
            [t.weights[0] for t, _ in scored],
            c=[v[key] for _, v in scored],
            cmap=cmap,
            s=50,
            edgecolors="black",
            linewidths=0.3,
            zorder=2,
        )
        figure.colorbar(points, ax=ax, label=f"{name} ({data.objectives[key].direction})")
    if front:
        ax.scatter(
            [t.alpha for t in front],
            [t.weights[0] for t in front],
            facecolors="none",
            edgecolors="tab:red",
            s=180,
            linewidths=1.5,
            label="Pareto front",
            zorder=3,
        )
    if chosen is not None:
        ax.scatter(
            [chosen.trial.alpha],
            [chosen.trial.weights[0]],
            marker="*",
            color="tab:red",
            s=220,
            label="recommended",
            zorder=4,
        )
    for trial, _ in scored:
        ax.annotate(
            f"#{trial.number}",
            (trial.alpha, trial.weights[0]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
        )
    ax.set_xlabel("alpha (share of the base model)")
    ax.set_ylabel("w_1 (weight of the first SFT model)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    title = "Ratio map" if scored else "Ratio map (no complete trial yet)"
    ax.set_title(f"{data.name}: {title}, colour = {name}", fontsize=10)
    if front or infeasible or unscored or chosen is not None:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _png(figure)


def objectives_by_ratio_figure(data: SweepReportData, front: Sequence[TrialRecord]) -> bytes:
    """Each objective's mean against alpha (top row) and, for two SFT models, against w_1
    (bottom row), with the 95% intervals as error bars; paper seeds, no-BAI baselines and front
    members marked, the paper's alpha grid drawn as dotted lines."""
    from sweeps.search_space import PAPER_ALPHAS

    objectives = data.objectives
    scored = data.feasible_trials()
    two_sft = any(len(t.weights) == 2 for t, _ in scored)
    rows = 2 if two_sft else 1
    figure = Figure(figsize=(4.2 * len(objectives), 3.4 * rows), layout="constrained")
    axes = figure.subplots(rows, len(objectives), squeeze=False)
    front_numbers = {t.number for t in front}
    styles: dict[str | None, dict[str, str]] = {
        None: {"marker": "o", "color": "tab:gray", "label": "sampled"}
    }
    styles.update(_KIND_STYLE)
    for k, objective in enumerate(objectives):
        for row, (axis_name, position) in enumerate(
            (("alpha", lambda t: t.alpha), ("w_1", lambda t: t.weights[0]))[:rows]
        ):
            ax = axes[row][k]
            if row == 0:
                for alpha in PAPER_ALPHAS:
                    ax.axvline(alpha, color="tab:orange", linestyle=":", linewidth=0.8, zorder=0)
            for kind, style in styles.items():
                group = [(t, v) for t, v in scored if t.seed_kind == kind]
                if not group:
                    continue
                xs, ys, low, high = [], [], [], []
                for trial, values in group:
                    interval = (trial.intervals(objectives) or [])[k]
                    bottom, top = interval.bounds()
                    xs.append(position(trial))
                    ys.append(values[k])
                    low.append(values[k] - bottom)
                    high.append(top - values[k])
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[low, high],
                    fmt=style["marker"],
                    color=style["color"],
                    ecolor=style["color"],
                    alpha=0.8,
                    capsize=3,
                    label=style["label"],
                )
            members = [(position(t), v[k]) for t, v in scored if t.number in front_numbers]
            if members:
                ax.scatter(
                    *_columns(members),
                    facecolors="none",
                    edgecolors="tab:blue",
                    s=150,
                    linewidths=1.3,
                    label="Pareto front",
                    zorder=3,
                )
            ax.set_xlabel(axis_name)
            ax.set_ylabel(f"{objective.name} ({objective.direction})")
            ax.set_xlim(-0.05, 1.05)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    title = "" if scored else " (no complete feasible trial yet)"
    figure.suptitle(
        f"{data.name}: objectives by ratio{title}; dotted: the paper's alpha grid", fontsize=10
    )
    return _png(figure)


def _columns(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The x and y columns of ``points``."""
    return [x for x, _ in points], [y for _, y in points]


def hypervolume_figure(data: SweepReportData) -> bytes:
    """Hypervolume after each finished trial."""
    figure = Figure(figsize=(6.4, 3.6))
    ax = figure.add_subplot()
    history = data.hypervolume_history()
    if history:
        ax.step(*zip(*history, strict=True), where="post", color="tab:blue")
        ax.scatter(*_columns(history), color="tab:blue", s=12)
    reference = ", ".join(f"{o.name}={o.reference:g}" for o in data.objectives)
    ax.set_xlabel("finished trials")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("hypervolume")
    ax.set_title(f"Hypervolume (reference {reference})", fontsize=10)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return _png(figure)


def curves_figure(data: SweepReportData, front: Sequence[TrialRecord]) -> bytes:
    """Per-step length, reward and KL of the front members and the baselines."""
    chosen = {t.number: t for t in front}
    for trial in data.trials:
        if trial.seed_kind == "baseline" and trial.steps:
            chosen.setdefault(trial.number, trial)
    return _curves_png(sorted(chosen.values(), key=lambda t: t.number), title=data.name)


def trial_curves_figure(trial: TrialRecord) -> bytes:
    """One trial's length, reward and KL curves (the Optuna artifact of the trial)."""
    return _curves_png([trial], title=trial.label())


def _curves_png(trials: Sequence[TrialRecord], *, title: str) -> bytes:
    figure = Figure(figsize=(12, 4.2), layout="constrained")
    axes = figure.subplots(1, len(CURVES))
    for ax, (key, label) in zip(axes, CURVES, strict=True):
        for trial in trials:
            points = [
                (s["step"], s[key])
                for s in trial.steps
                if s.get(key) is not None and math.isfinite(float(s[key]))
            ]
            if not points:
                continue
            style = "--" if trial.seed_kind == "baseline" else "-"
            ax.plot(*zip(*points, strict=True), style, marker=".", label=trial.label())
        ax.set_xlabel("PPO update")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=min(len(labels), 4),
            fontsize=8,
        )
    else:
        axes[1].set_title("no probe steps recorded", fontsize=9)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def _stability_keys(trials: Sequence[TrialRecord]) -> list[str]:
    present = set()
    for trial in trials:
        for key, value in (trial.stability or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                present.add(key)
    return [key for key in KEY_STABILITY_METRICS if key in present]


def _fmt_interval(value: Any, interval: Interval | None) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return _fmt(value)
    below, above = interval.mean - interval.low, interval.high - interval.mean
    if not math.isclose(below, above, rel_tol=1e-6, abs_tol=1e-12):
        # Clipped to the objective's range: the two sides differ.
        return f"{_fmt(float(value))} [{interval.low:.3g}, {interval.high:.3g}]"
    return f"{_fmt(float(value))} ± {(interval.high - interval.low) / 2:.2g}"


def _fmt_forecast(interval: Interval | None) -> str:
    return "–" if interval is None else _fmt_interval(interval.mean, interval)


def _interval_note(interval: Interval | None) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return ""
    return f" (95% bootstrap interval {interval.low:.4f} to {interval.high:.4f})"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _prompt_lines(trials: Sequence[TrialRecord]) -> list[str]:
    """How the trials' models saw their prompts (recorded with each trial's benchmarks)."""
    seen = sorted(
        {
            (str(b.get("prompt_format")), b.get("system_prompt"), str(b.get("tokenizer_source")))
            for b in (trial.benchmarks or {} for trial in trials)
            if "prompt_format" in b
        },
        key=str,
    )
    return [
        f"- prompt format: {fmt}"
        + (f" (system prompt: {system!r})" if system else "")
        + f", tokenizer_source: {source}"
        for fmt, system, source in seen
    ]


def _trial_json(trial: TrialRecord) -> dict[str, Any]:
    stability = trial.stability or {}
    return {
        "number": trial.number,
        "weights": list(trial.weights),
        "alpha": trial.alpha,
        "state": trial.state,
        "seed_kind": trial.seed_kind,
        "objectives": trial.objectives,
        "stability": trial.stability,
        "benchmarks": trial.benchmarks,
        "forgetting": trial.forgetting(),
        "correctness_retention": trial.correctness_retention(),
        "reward_forecast": stability.get("reward_forecast"),
        "length_forecast": stability.get("length_forecast"),
        "forecasts": forecasts_of(stability),
        "error": trial.error,
        "duration_s": trial.duration_s,
        "fidelity": trial.fidelity,
    }
