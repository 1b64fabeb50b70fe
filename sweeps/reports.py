"""Sweep reports: ``report.md``, ``report.json`` and PNG figures, or one HTML page.

The input is plain data (:class:`SweepReportData`), built from the database by
:func:`sweeps.results.load_report_data` or by hand in tests, so the nightly CLI and the REST
service render the same report::

    report = build_report(data)
    report.write(directory)        # report.md, report.json, pareto.png, hypervolume.png, ...
    html = report.to_html()        # one self-contained page (figures inlined)
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sweeps.pareto import Direction, hypervolume, pareto_front

#: Stability metrics shown in the front table when the probe reports them.
KEY_STABILITY_METRICS = (
    "length_retention",
    "length_trend",
    "reward_dip",
    "kl_final",
    "entropy_drop",
)
#: Per-step curves drawn for front members and baselines: (step key, axis label).
CURVES = (("length_mean", "mean response length"), ("reward_mean", "reward"), ("kl", "KL"))
FIGURE_NAMES = ("pareto.png", "hypervolume.png", "curves.png")

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

    def values(self, objectives: Sequence[ObjectiveInfo]) -> tuple[float, ...] | None:
        """The objective values in ``objectives`` order, or None unless complete and finite."""
        if self.state != "complete" or not self.objectives:
            return None
        try:
            values = tuple(float(self.objectives[o.name]) for o in objectives)
        except (KeyError, TypeError, ValueError):
            return None
        return values if all(math.isfinite(v) for v in values) else None

    def label(self) -> str:
        """``#3 w=(0.50, 0.50) a=0.20``."""
        weights = ", ".join(f"{w:.2f}" for w in self.weights)
        return f"#{self.number} w=({weights}) a={self.alpha:.2f}"


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

    @property
    def directions(self) -> list[Direction]:
        """The objectives' directions."""
        return [o.direction for o in self.objectives]

    @property
    def reference_point(self) -> list[float]:
        """The hypervolume reference point."""
        return [o.reference for o in self.objectives]

    def scored_trials(self) -> list[tuple[TrialRecord, tuple[float, ...]]]:
        """Complete trials with finite values for every objective, in trial-number order."""
        out = []
        for trial in sorted(self.trials, key=lambda t: t.number):
            values = trial.values(self.objectives)
            if values is not None:
                out.append((trial, values))
        return out

    def front(self) -> list[TrialRecord]:
        """The Pareto front's trials, sorted by the first objective (best first)."""
        scored = self.scored_trials()
        indices = pareto_front([v for _, v in scored], self.directions)
        members = [scored[i] for i in indices]
        reverse = self.objectives[0].direction == "maximize"
        members.sort(key=lambda item: item[1][0], reverse=reverse)
        return [trial for trial, _ in members]

    def hypervolume(self) -> float:
        """The hypervolume of the complete trials against the fixed reference point."""
        values = [v for _, v in self.scored_trials()]
        return hypervolume(values, self.reference_point, self.directions)

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
        history, values = [], []
        for count, trial in enumerate(finished, start=1):
            value = trial.values(self.objectives)
            if value is not None:
                values.append(value)
            history.append((count, hypervolume(values, self.reference_point, self.directions)))
        return history

    def best_values(self) -> dict[str, float]:
        """The best value reached by each objective over the complete trials."""
        scored = self.scored_trials()
        best: dict[str, float] = {}
        for k, objective in enumerate(self.objectives):
            column = [values[k] for _, values in scored]
            if column:
                best[objective.name] = (
                    max(column) if objective.direction == "maximize" else min(column)
                )
        return best

    def counts(self) -> dict[str, int]:
        """How many trials are in each state."""
        out: dict[str, int] = {}
        for trial in self.trials:
            out[trial.state] = out.get(trial.state, 0) + 1
        return out


@dataclass
class Report:
    """A rendered report: the data, the front, the hypervolume and the PNG figures."""

    data: SweepReportData
    front: list[TrialRecord]
    hypervolume: float
    figures: dict[str, bytes]

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
                "objectives": [
                    {"name": o.name, "direction": o.direction, "reference": o.reference}
                    for o in data.objectives
                ],
                "reference_point": data.reference_point,
                "hypervolume": self.hypervolume,
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
        header = ["trial", "kind", "weights", "alpha", *names, *stability_keys]
        rows = []
        for trial in self.front:
            objectives = trial.objectives or {}
            stability = trial.stability or {}
            rows.append(
                [
                    f"#{trial.number}",
                    trial.seed_kind or "sampled",
                    "(" + ", ".join(f"{w:.3f}" for w in trial.weights) + ")",
                    f"{trial.alpha:.3f}",
                    *(_fmt(objectives.get(n)) for n in names),
                    *(_fmt(stability.get(k)) for k in stability_keys),
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
            "- objectives: "
            + ", ".join(
                f"{o.name} ({o.direction}, reference {o.reference:g})" for o in data.objectives
            ),
            f"- hypervolume: **{self.hypervolume:.4f}**",
            *_prompt_lines(data.trials),
            "",
            "## Pareto front",
            "",
        ]
        header, rows = self.front_table()
        if rows:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(row) + " |" for row in rows]
        else:
            lines.append("No trial completed: the front is empty.")
        for name, title in (
            ("pareto.png", "Trials and Pareto front"),
            ("hypervolume.png", "Hypervolume against finished trials"),
            ("curves.png", "Probe curves of front members and baselines"),
        ):
            if name in self.figures:
                lines += ["", f"## {title}", "", f"![{title}]({image_prefix}{name})"]
        failed = [t for t in data.trials if t.state in ("failed", "pruned")]
        if failed:
            lines += ["", "## Failed and pruned trials", ""]
            for trial in sorted(failed, key=lambda t: t.number):
                lines.append(f"- {trial.label()}: {trial.state} — {trial.error or 'no reason'}")
        return "\n".join(lines) + "\n"

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
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Sweep {esc(data.name)}</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:70em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>Sweep report: {esc(data.name)}</h1>"
            f"<p>id <code>{esc(data.sweep_id)}</code> · status <b>{esc(data.status)}</b>{error}"
            f" · {len(data.trials)} of {data.n_trials} trials ({esc(counts or 'none')})"
            f" · hypervolume <b>{self.hypervolume:.4f}</b></p>"
            f"<h2>Pareto front</h2>{table}{images}</body></html>"
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


def build_report(data: SweepReportData) -> Report:
    """Compute the front and hypervolume of ``data`` and render its figures."""
    front = data.front()
    figures = {
        "pareto.png": pareto_figure(data, front),
        "hypervolume.png": hypervolume_figure(data),
        "curves.png": curves_figure(data, front),
    }
    return Report(data=data, front=front, hypervolume=data.hypervolume(), figures=figures)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def pareto_figure(data: SweepReportData, front: Sequence[TrialRecord]) -> bytes:
    """Scatter of the first two objectives (or objective against trial number for one)."""
    figure = Figure(figsize=(6.4, 4.8))
    ax = figure.add_subplot()
    objectives = data.objectives
    scored = data.scored_trials()
    front_numbers = {t.number for t in front}
    two_d = len(objectives) >= 2

    def xy(trial: TrialRecord, values: tuple[float, ...]) -> tuple[float, float]:
        return (values[0], values[1]) if two_d else (trial.number, values[0])

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
    if scored:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
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
    return {
        "number": trial.number,
        "weights": list(trial.weights),
        "alpha": trial.alpha,
        "state": trial.state,
        "seed_kind": trial.seed_kind,
        "objectives": trial.objectives,
        "stability": trial.stability,
        "benchmarks": trial.benchmarks,
        "error": trial.error,
        "duration_s": trial.duration_s,
    }
