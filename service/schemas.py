"""Request and response bodies of the REST API (the request body of ``POST /sweeps`` is
:class:`sweeps.spec.SweepSpec` itself)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from storage.models import STEP_METRICS, SeedKind, Sweep, SweepStatus, Trial, TrialState, TrialStep
from storage.repository import (
    Front,
    FrontMember,
    Page,
    RunningTrialProgress,
    SweepSummary,
)

_CREATED = "2026-11-23T10:00:00Z"

#: A spec that passes the schema; its paths must exist under the service's model roots.
SWEEP_SPEC_EXAMPLE: dict[str, Any] = {
    "name": "qwen-bai",
    "models": {
        "base": "/models/qwen-base",
        "sft": ["/models/qwen-sft-instruct", "/models/qwen-sft-reasoning"],
        "reward": "/models/qwen-reward",
        "prompts": "/models/prompts.jsonl",
    },
    "search": {"alpha": [0.0, 1.0], "weights": "simplex", "n_trials": 24, "seed": 0},
    "objectives": ["stability", "benchmark"],
    "probe": {"steps": 30, "batch_size": 8},
    "benchmarks": {"limit": 200},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent_trials": 2},
}


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a readable explanation."""

    detail: str = Field(examples=["sweep 'deadbeef0000' not found"])


class Health(BaseModel):
    """Liveness of the service and its database."""

    status: Literal["ok", "unavailable"]
    database: str = Field(examples=["ok"])
    schema_revision: str | None = Field(examples=["0001"])


class SweepCreated(BaseModel):
    """A sweep accepted into the queue."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "3f9c2a7b1d04", "status": "queued"}]}
    )

    id: str
    status: SweepStatus


class SweepItem(BaseModel):
    """One sweep in a listing."""

    id: str
    name: str
    status: SweepStatus
    n_trials: int = Field(description="Trial budget.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, sweep: Sweep) -> SweepItem:
        """From a stored sweep."""
        return cls(
            id=sweep.id,
            name=sweep.name,
            status=sweep.status,
            n_trials=sweep.n_trials,
            created_at=sweep.created_at,
            started_at=sweep.started_at,
            finished_at=sweep.finished_at,
        )


class SweepPage(BaseModel):
    """A page of sweeps, newest first."""

    items: list[SweepItem]
    total: int = Field(description="Sweeps matching the filters, over all pages.")
    offset: int
    limit: int

    @classmethod
    def of(cls, page: Page[Sweep]) -> SweepPage:
        """From a repository page."""
        return cls(
            items=[SweepItem.of(sweep) for sweep in page.items],
            total=page.total,
            offset=page.offset,
            limit=page.limit,
        )


class StepMetrics(BaseModel):
    """The probe's metrics at one PPO update."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "step": 12,
                    "length_mean": 41.5,
                    "length_p10": 20.0,
                    "length_p50": 40.0,
                    "length_p90": 63.0,
                    "truncated_fraction": 0.0,
                    "reward": 0.62,
                    "kl": 0.013,
                    "entropy": 1.9,
                    "eos_rate": 1.0,
                    "policy_loss": -0.02,
                    "value_loss": 0.11,
                    "extra": None,
                }
            ]
        }
    )

    step: int
    length_mean: float | None = None
    length_p10: float | None = None
    length_p50: float | None = None
    length_p90: float | None = None
    truncated_fraction: float | None = None
    reward: float | None = None
    kl: float | None = None
    entropy: float | None = None
    eos_rate: float | None = None
    policy_loss: float | None = None
    value_loss: float | None = None
    extra: dict[str, Any] | None = Field(default=None, description="Other logged metrics.")

    @classmethod
    def of(cls, step: TrialStep) -> StepMetrics:
        """From a stored step."""
        values = {name: getattr(step, name) for name in STEP_METRICS}
        return cls(step=step.step, extra=step.extra, **values)


class Progress(BaseModel):
    """How far a sweep got."""

    total: int = Field(description="Trial budget.")
    completed: int = Field(description="Trials finished with all objective values.")
    failed: int
    pruned: int
    running: int
    finished: int = Field(description="completed + failed + pruned.")


class RunningTrial(BaseModel):
    """A running trial and its most recent probe step."""

    number: int
    weights: list[float]
    alpha: float
    started_at: datetime | None
    latest_step: StepMetrics | None

    @classmethod
    def of(cls, running: RunningTrialProgress) -> RunningTrial:
        """From the repository's progress record."""
        step = running.latest_step
        return cls(
            number=running.number,
            weights=running.weights,
            alpha=running.alpha,
            started_at=running.started_at,
            latest_step=None if step is None else StepMetrics.of(step),
        )


class Objective(BaseModel):
    """An objective of the sweep."""

    name: str
    direction: Literal["maximize", "minimize"]


class FrontSummary(BaseModel):
    """The size and quality of a sweep's current Pareto front."""

    size: int
    hypervolume: float | None
    revision: int
    updated_at: datetime


class SweepDetail(SweepItem):
    """Status, progress and front summary of a sweep."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f9c2a7b1d04",
                    "name": "qwen-bai",
                    "status": "running",
                    "n_trials": 24,
                    "created_at": _CREATED,
                    "started_at": "2026-11-23T10:00:02Z",
                    "finished_at": None,
                    "error": None,
                    "cancel_requested": False,
                    "attempts": 1,
                    "objectives": [
                        {"name": "stability", "direction": "maximize"},
                        {"name": "benchmark", "direction": "maximize"},
                    ],
                    "progress": {
                        "total": 24,
                        "completed": 7,
                        "failed": 0,
                        "pruned": 1,
                        "running": 2,
                        "finished": 8,
                    },
                    "front": {
                        "size": 3,
                        "hypervolume": 0.41,
                        "revision": 5,
                        "updated_at": "2026-11-23T10:31:00Z",
                    },
                    "running_trials": [
                        {
                            "number": 9,
                            "weights": [0.5, 0.5],
                            "alpha": 0.35,
                            "started_at": "2026-11-23T10:30:00Z",
                            "latest_step": {"step": 12, "length_mean": 41.5, "reward": 0.62},
                        }
                    ],
                    "spec": SWEEP_SPEC_EXAMPLE,
                }
            ]
        }
    )

    error: str | None = Field(description="Why the sweep failed.")
    cancel_requested: bool
    attempts: int = Field(description="Workers that claimed it (> 1 after a resume).")
    objectives: list[Objective]
    progress: Progress
    front: FrontSummary | None = Field(description="Null until the first trial finished.")
    running_trials: list[RunningTrial]
    spec: dict[str, Any] = Field(description="The spec as queued (paths resolved).")

    @classmethod
    def of(cls, summary: SweepSummary) -> SweepDetail:
        """From the repository's summary."""
        sweep, counts = summary.sweep, summary.trial_counts
        front = summary.front
        return cls(
            **SweepItem.of(sweep).model_dump(),
            error=sweep.error,
            cancel_requested=sweep.cancel_requested,
            attempts=sweep.attempts,
            objectives=_objectives(sweep.spec),
            progress=Progress(
                total=sweep.n_trials,
                completed=counts[TrialState.COMPLETE],
                failed=counts[TrialState.FAILED],
                pruned=counts[TrialState.PRUNED],
                running=counts[TrialState.RUNNING],
                finished=summary.n_finished,
            ),
            front=None
            if front is None
            else FrontSummary(
                size=len(front.members),
                hypervolume=front.hypervolume,
                revision=front.revision,
                updated_at=front.updated_at,
            ),
            running_trials=[RunningTrial.of(running) for running in summary.running],
            spec=sweep.spec,
        )


def _objectives(spec: dict[str, Any]) -> list[Objective]:
    from sweeps.spec import DEFAULT_DIRECTIONS

    objectives = []
    for entry in spec.get("objectives") or []:
        name = entry if isinstance(entry, str) else entry["name"]
        direction = None if isinstance(entry, str) else entry.get("direction")
        objectives.append(Objective(name=name, direction=direction or DEFAULT_DIRECTIONS[name]))
    return objectives


class TrialItem(BaseModel):
    """One trial: its merge ratios, state and objective values."""

    number: int
    state: TrialState
    weights: list[float] = Field(description="SFT weights w (sum to 1).")
    alpha: float = Field(description="Share of the pretrained base model.")
    seed_kind: SeedKind | None = Field(description="Why it was enqueued first, if it was.")
    objectives: dict[str, Any] | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None

    @classmethod
    def of(cls, trial: Trial) -> TrialItem:
        """From a stored trial."""
        return cls(
            number=trial.number,
            state=trial.state,
            weights=list(trial.weights),
            alpha=trial.alpha,
            seed_kind=trial.seed_kind,
            objectives=trial.objectives,
            error=trial.error,
            started_at=trial.started_at,
            finished_at=trial.finished_at,
            duration_s=trial.duration_s,
        )


class TrialPage(BaseModel):
    """A page of a sweep's trials, by number."""

    items: list[TrialItem]
    total: int
    offset: int
    limit: int

    @classmethod
    def of(cls, page: Page[Trial]) -> TrialPage:
        """From a repository page."""
        return cls(
            items=[TrialItem.of(trial) for trial in page.items],
            total=page.total,
            offset=page.offset,
            limit=page.limit,
        )


class TrialDetail(TrialItem):
    """A trial with its parameters, all metrics and per-step probe curves."""

    params: dict[str, Any] = Field(
        description="The merge ratios as {'weights': [...], 'alpha': a}.",
        examples=[{"weights": [0.5, 0.5], "alpha": 0.2}],
    )
    stability: dict[str, Any] | None = Field(description="Stability metrics of the probe.")
    benchmarks: dict[str, Any] | None = Field(description="Benchmark metrics per task.")
    steps: list[StepMetrics] = Field(description="Per-step probe metrics (the curves).")

    @classmethod
    def of(cls, trial: Trial) -> TrialDetail:  # type: ignore[override]
        """From a stored trial with its steps loaded."""
        return cls(
            **TrialItem.of(trial).model_dump(),
            params=trial.params,
            stability=trial.stability,
            benchmarks=trial.benchmarks,
            steps=[StepMetrics.of(step) for step in trial.steps],
        )


class ParetoMember(BaseModel):
    """One trial on the Pareto front."""

    position: int
    trial_number: int
    weights: list[float]
    alpha: float
    objectives: dict[str, Any] | None
    seed_kind: SeedKind | None

    @classmethod
    def of(cls, member: FrontMember) -> ParetoMember:
        """From the repository's front member."""
        return cls(
            position=member.position,
            trial_number=member.trial_number,
            weights=member.weights,
            alpha=member.alpha,
            objectives=member.objectives,
            seed_kind=member.seed_kind,
        )


class ParetoFrontBody(BaseModel):
    """A sweep's current Pareto front (empty until the first trial finished)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sweep_id": "3f9c2a7b1d04",
                    "objectives": [
                        {"name": "stability", "direction": "maximize"},
                        {"name": "benchmark", "direction": "maximize"},
                    ],
                    "hypervolume": 0.41,
                    "reference_point": [0.0, 0.0],
                    "revision": 5,
                    "updated_at": "2026-11-23T10:31:00Z",
                    "members": [
                        {
                            "position": 0,
                            "trial_number": 3,
                            "weights": [0.5, 0.5],
                            "alpha": 0.5,
                            "objectives": {"stability": 0.81, "benchmark": 0.44},
                            "seed_kind": "paper",
                        }
                    ],
                }
            ]
        }
    )

    sweep_id: str
    objectives: list[Objective]
    hypervolume: float | None
    reference_point: list[float] | None
    revision: int = Field(description="0 before the first front was stored.")
    updated_at: datetime | None
    members: list[ParetoMember]

    @classmethod
    def of(cls, sweep: Sweep, front: Front | None) -> ParetoFrontBody:
        """From a stored sweep and its front (``None`` before the first trial finished)."""
        return cls(
            sweep_id=sweep.id,
            objectives=_objectives(sweep.spec),
            hypervolume=None if front is None else front.hypervolume,
            reference_point=None if front is None else front.reference_point,
            revision=0 if front is None else front.revision,
            updated_at=None if front is None else front.updated_at,
            members=[] if front is None else [ParetoMember.of(m) for m in front.members],
        )
