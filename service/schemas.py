"""Request and response bodies of the REST API (the request body of ``POST /sweeps`` is
:class:`sweeps.spec.SweepSpec` itself).

Bodies are read straight from the storage objects with ``model_validate(obj,
from_attributes=True)``: a field's name is the attribute's name, so the names of the stored
sweep, trial and step (the probe's ``StepMetrics`` vocabulary) are the names of the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from storage.models import SeedKind, SweepStatus, TrialState

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


class _FromAttributes(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SweepItem(_FromAttributes):
    """One sweep in a listing."""

    id: str
    name: str
    status: SweepStatus
    n_trials: int = Field(description="Trial budget.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class SweepPage(_FromAttributes):
    """A page of sweeps, newest first."""

    items: list[SweepItem]
    total: int = Field(description="Sweeps matching the filters, over all pages.")
    offset: int
    limit: int


class StepMetrics(_FromAttributes):
    """The probe's metrics at one PPO update, named as ``evaluators.StepMetrics`` (null where
    a value was not finite); the probe's other fields are in ``extra``."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "step": 12,
                    "length_mean": 41.5,
                    "length_p10": 20.0,
                    "length_p50": 40.0,
                    "length_p90": 63.0,
                    "truncated_fraction": 0.0,
                    "reward_mean": 0.62,
                    "kl": 0.013,
                    "entropy": 1.9,
                    "eos_rate": 1.0,
                    "policy_loss": -0.02,
                    "value_loss": 0.11,
                    "extra": {"token_entropy": 0.05},
                }
            ]
        },
    )

    step: int
    length_mean: float | None = None
    length_p10: float | None = None
    length_p50: float | None = None
    length_p90: float | None = None
    truncated_fraction: float | None = None
    reward_mean: float | None = None
    kl: float | None = None
    entropy: float | None = None
    eos_rate: float | None = None
    policy_loss: float | None = None
    value_loss: float | None = None
    extra: dict[str, Any] | None = Field(default=None, description="Other logged metrics.")


class Progress(BaseModel):
    """How far a sweep got."""

    total: int = Field(description="Trial budget.")
    completed: int = Field(description="Trials finished with all objective values.")
    failed: int
    pruned: int
    running: int
    interrupted: int = Field(
        description="Failed trials whose run was lost or stopped: re-run on resume, so not "
        "counted as finished.",
    )
    finished: int = Field(
        description="Trials counted against the budget: completed + failed + pruned - "
        "interrupted (what `bai-sweep run` reports)."
    )


class RunningTrial(_FromAttributes):
    """A running trial and its most recent probe step."""

    number: int
    weights: list[float]
    alpha: float
    started_at: datetime | None
    latest_step: StepMetrics | None


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
                        "interrupted": 0,
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
                            "latest_step": {
                                "step": 12,
                                "length_mean": 41.5,
                                "reward_mean": 0.62,
                            },
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


class TrialItem(_FromAttributes):
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
    node: str | None = Field(
        default=None, description="Where it ran: '<node ip>/<Ray node id>' (None before it ran)."
    )
    fidelity: dict[str, Any] | None = Field(
        default=None,
        description="Its successive-halving probe: {rung, steps, repeats, candidate} "
        "(candidate: the number of the candidate's rung-0 trial); null without fidelity.",
        examples=[{"rung": 1, "steps": 24, "repeats": 2, "candidate": 3}],
    )


class TrialPage(_FromAttributes):
    """A page of a sweep's trials, by number."""

    items: list[TrialItem]
    total: int
    offset: int
    limit: int


class TrialDetail(TrialItem):
    """A trial with its parameters, all metrics and per-step probe curves."""

    params: dict[str, Any] = Field(
        description="The merge ratios as {'weights': [...], 'alpha': a}.",
        examples=[{"weights": [0.5, 0.5], "alpha": 0.2}],
    )
    stability: dict[str, Any] | None = Field(description="Stability metrics of the probe.")
    benchmarks: dict[str, Any] | None = Field(description="Benchmark metrics per task.")
    steps: list[StepMetrics] = Field(description="Per-step probe metrics (the curves).")


#: What a trial's policy kept, named as in ``report.json`` (``sweeps.retention``).
Forgetting = Annotated[
    dict[str, float],
    Field(
        description="Mean score drop versus the base model on the retention tasks: "
        "`forgetting_init` (the initial actor) and `forgetting_after` (mean over the seeds' "
        "trained policies), whichever were measured (> 0: forgot).",
        examples=[{"forgetting_init": 0.02, "forgetting_after": 0.05}],
    ),
]
CorrectnessRetention = Annotated[
    float | None,
    Field(
        description="Share of correct rollout answers over the probe's last window against its "
        "first (capped at 1, mean over seeds); null when the prompts have no known answers.",
    ),
]


class ForecastNote(BaseModel):
    """How a trial's forecast objective came about (``sweeps.forecast.forecasts_of``)."""

    seeds_fitted: int = Field(description="Seeds whose curve was fitted.")
    seeds: int
    fallback: bool = Field(
        description="Some seed's fit was refused: its value is the observed mean over the "
        "probe's last window (what a flat curve predicts)."
    )
    reasons: list[str] = Field(description="Why the refused fits were refused.")
    horizon: int | None = Field(
        description="The update the length is forecast at (length_at_horizon; null for "
        "reward_asymptote)."
    )


#: Per forecast objective (``reward_asymptote``, ``length_at_horizon``) the trial recorded.
Forecasts = Annotated[
    dict[str, ForecastNote],
    Field(
        description="Per forecast objective, how many seeds had a fitted curve and whether the "
        "value fell back to the observed one (docs/stability-metrics.md).",
    ),
]


class ParetoMember(_FromAttributes):
    """One trial on the Pareto front."""

    position: int
    trial_number: int
    weights: list[float]
    alpha: float
    objectives: dict[str, Any] | None
    seed_kind: SeedKind | None
    forgetting: Forgetting = Field(default_factory=dict)
    correctness_retention: CorrectnessRetention = None
    forecasts: Forecasts = Field(default_factory=dict)


class IntervalBody(BaseModel):
    """A mean and its 95% interval (``low``/``high`` null when it cannot be known)."""

    mean: float | None
    low: float | None
    high: float | None
    sem: float | None
    n: int
    confidence: float
    dof: float | Literal["inf"] | None = Field(
        default=None,
        description='degrees of freedom of the t-interval ("inf": normal; null: unknown)',
    )


class RatioBody(BaseModel):
    """One trial's ratios and each objective's mean and interval over its probe seeds."""

    trial_number: int
    weights: list[float]
    alpha: float
    seed_kind: SeedKind | None
    objectives: dict[str, IntervalBody]
    forgetting: Forgetting = Field(default_factory=dict)
    correctness_retention: CorrectnessRetention = None
    forecasts: Forecasts = Field(default_factory=dict)
    seeds: int = Field(default=1, description="Probe seeds the trial ran on.")
    collapsed_seeds: int = Field(default=0, description="How many of them collapsed or diverged.")
    length_retention: IntervalBody | None = Field(
        default=None,
        description="The mean length retention over the seeds and its interval: the "
        "recommendation keeps a trial whose interval lies at or above the collapse threshold.",
    )


class RecommendationBody(RatioBody):
    """The recommended (w, alpha), the runner-up and the rule (``docs/ratio-selection.md``)."""

    runner_up: RatioBody | None
    ranked_by: str = Field(description="The objective the pool was ranked by.")
    rule: str


class InfeasibleTrial(BaseModel):
    """A complete trial kept off the front: the constraints it broke (value > 0)."""

    number: int
    violations: dict[str, float]


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
    members: list[ParetoMember] = Field(description="The feasible front on the means.")
    tied: list[int] = Field(
        default_factory=list,
        description="Trials off the front whose 95% intervals cannot tell them from it.",
    )
    hypervolume_interval: IntervalBody | None = Field(
        default=None, description="Bootstrap interval of the hypervolume over the probe seeds."
    )
    infeasible: list[InfeasibleTrial] = Field(default_factory=list)
    recommendation: RecommendationBody | None = Field(
        default=None,
        description="Null until a feasible trial on or tied with the front showed that it keeps "
        "its length.",
    )
    gated_out: list[RatioBody] = Field(
        default_factory=list,
        description="Front members and tied trials the recommendation's stability gate dropped: "
        "their seeds do not show they keep their length (best benchmark first).",
    )
