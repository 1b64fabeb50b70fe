"""``SweepSpec``: the one schema of a sweep, for YAML/JSON files and REST bodies alike.

Example (YAML)::

    name: nightly-bai
    models: {base: ./base, sft: [./sft-instruct, ./sft-reasoning], reward: ./reward,
             prompts: ./prompts.jsonl}
    search: {alpha: [0.0, 1.0], weights: simplex, n_trials: 24, sampler: tpe, seed: 0,
             seed_points: [paper, baselines]}
    objectives: [stability, benchmark]
    probe: {steps: 30, batch_size: 8}
    benchmarks: {limit: 200}
    resources: {cpus_per_trial: 1, gpus_per_trial: 0, max_concurrent_trials: 2}
    nightly: {tolerance: 0.0, warm_start: true}

Relative model paths in a file are resolved against the file's directory. Validation errors
name the offending field (``search.alpha: ...``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from evaluators._probe_types import ProbeConfig
from evaluators.benchmarks import BenchmarkConfig
from evaluators.prompting import PromptSettings
from sweeps.exceptions import InvalidSpecError
from sweeps.search_space import (
    Candidate,
    SamplerName,
    SearchSpace,
    SeedPoint,
    dedupe_seed_points,
)

if TYPE_CHECKING:
    from sweeps.fidelity import Rung

ObjectiveName = Literal[
    "stability",
    "benchmark",
    "benchmark_after",
    "reward_gain",
    "kl",
    "forgetting",
    "reward_asymptote",
    "length_at_horizon",
]
Direction = Literal["maximize", "minimize"]
SeedPreset = Literal["paper", "baselines"]

#: Which way each objective is usually optimised.
DEFAULT_DIRECTIONS: dict[str, Direction] = {
    "stability": "maximize",
    "benchmark": "maximize",
    "benchmark_after": "maximize",
    "reward_gain": "maximize",
    "kl": "minimize",
    "forgetting": "minimize",
    "reward_asymptote": "maximize",
    "length_at_horizon": "maximize",
}
#: The range each objective can take (None: unbounded); intervals are clipped to it.
#: Stability and benchmark scores are shares in [0, 1]; forgetting is a drop of such a score;
#: a length is a count of tokens (its upper end, ``probe.response_length``, is the spec's).
OBJECTIVE_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "stability": (0.0, 1.0),
    "benchmark": (0.0, 1.0),
    "benchmark_after": (0.0, 1.0),
    "reward_gain": (None, None),
    "kl": (0.0, None),
    "forgetting": (-1.0, 1.0),
    "reward_asymptote": (None, None),
    "length_at_horizon": (0.0, None),
}
_WEIGHT_SUM_TOLERANCE = 1e-6
#: Longest path accepted in a spec (Linux's PATH_MAX).
_MAX_PATH = 4096


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelsSpec(_Frozen):
    """The checkpoints of a sweep: base, SFT models, the reward and the probe prompts."""

    base: str = Field(max_length=_MAX_PATH, description="Pretrained base model directory.")
    sft: list[Annotated[str, Field(max_length=_MAX_PATH)]] = Field(
        min_length=1, max_length=16, description="SFT model directories, 1 <= N <= 16."
    )
    reward: str | None = Field(
        default=None,
        max_length=_MAX_PATH,
        description="Reward model directory (a sequence-classification model).",
    )
    reward_rule: str | None = Field(
        default=None,
        description="Name of a built-in rule-based reward (evaluators.reward_rules: arith_correct, "
        "arith_answer) instead of a reward model.",
    )
    prompts: str = Field(
        max_length=_MAX_PATH, description='Probe prompts, JSONL with {"prompt": ...} per line.'
    )
    tokenizer_source: str = Field(
        default="base",
        min_length=1,
        max_length=_MAX_PATH,
        description="Vocabulary of the merged actor: 'base', 'union' (the base's tokens plus "
        "those the SFT models added) or the path of one of the models (mergekit's "
        "tokenizer_source).",
    )

    @model_validator(mode="after")
    def _known_tokenizer_source(self) -> ModelsSpec:
        named = (self.base, *self.sft)
        if self.tokenizer_source not in ("base", "union", *named):
            raise ValueError(
                f"models.tokenizer_source: {self.tokenizer_source!r} is neither 'base', 'union' "
                "nor one of the models (models.base or an entry of models.sft)"
            )
        return self

    @model_validator(mode="after")
    def _one_reward(self) -> ModelsSpec:
        if (self.reward is None) == (self.reward_rule is None):
            raise ValueError("give exactly one of models.reward and models.reward_rule")
        if self.reward_rule is not None:
            from evaluators.reward_rules import REWARD_RULES

            if self.reward_rule not in REWARD_RULES:
                known = ", ".join(sorted(REWARD_RULES))
                raise ValueError(f"models.reward_rule: unknown rule {self.reward_rule!r} ({known})")
        return self

    def resolved(self, base_dir: Path) -> ModelsSpec:
        """A copy whose relative paths that exist under ``base_dir`` are made absolute.

        Relative names that do not exist there are kept as given (they may be hub ids).
        """

        def resolve(value: str) -> str:
            path = Path(value).expanduser()
            if path.is_absolute():
                return str(path)
            candidate = base_dir / path
            return str(candidate.resolve()) if candidate.exists() else value

        return self.model_copy(
            update={
                "base": resolve(self.base),
                "sft": [resolve(p) for p in self.sft],
                "reward": resolve(self.reward) if self.reward else None,
                "prompts": resolve(self.prompts),
                "tokenizer_source": self.tokenizer_source
                if self.tokenizer_source in ("base", "union")
                else resolve(self.tokenizer_source),
            }
        )


class ExplicitSeedPoint(_Frozen):
    """A candidate to evaluate first: SFT weights (default equal) and alpha."""

    weights: list[float] | None = Field(default=None, max_length=16)
    alpha: float = Field(ge=0.0, le=1.0)


SeedPointsSpec = (
    Literal["paper", "baselines", "none"]
    | Annotated[list[SeedPreset | ExplicitSeedPoint], Field(max_length=256)]
)


class SearchSpec(_Frozen):
    """What the optimiser searches and how."""

    alpha: tuple[float, float] = Field(
        default=(0.0, 1.0), description="Bounds [lo, hi] of alpha (the base model's share)."
    )
    weights: Literal["simplex"] | Annotated[list[float], Field(max_length=16)] = Field(
        default="simplex", description="'simplex' to search w, or fixed weights summing to 1."
    )
    n_trials: int = Field(default=24, ge=1, le=10_000, description="Trial budget.")
    sampler: SamplerName = "tpe"
    seed: int | None = Field(default=0, description="Sampler seed (null for a random one).")
    seed_points: SeedPointsSpec = Field(
        default="paper",
        description="Candidates enqueued first: 'paper' (the paper's alpha grid, equal w), "
        "'baselines' (alpha=0, each SFT model alone), 'none', or a list mixing those presets "
        "and explicit {weights, alpha} points.",
    )
    grid_levels: int = Field(
        default=5, ge=1, le=50, description="Values per parameter for the grid sampler."
    )

    @field_validator("alpha")
    @classmethod
    def _alpha_bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (0.0 <= low <= high <= 1.0):
            raise ValueError(f"alpha bounds must satisfy 0 <= lo <= hi <= 1, got [{low}, {high}]")
        return value

    @field_validator("weights")
    @classmethod
    def _fixed_weights(cls, value: str | list[float]) -> str | list[float]:
        if isinstance(value, list):
            _check_weights(value)
        return value


def _check_weights(weights: list[float]) -> None:
    if not weights:
        raise ValueError("weights must not be empty")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be finite and >= 0, got {weights}")
    if abs(sum(weights) - 1.0) > _WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"weights must sum to 1, got {weights} (sum {sum(weights):.6g})")


class ObjectiveSpec(_Frozen):
    """One objective: its name, direction and hypervolume reference value."""

    name: ObjectiveName
    direction: Direction | None = Field(
        default=None, description="Default: maximize, except kl (minimize)."
    )
    reference: float | None = Field(
        default=None,
        description="Hypervolume reference value (the worst value that still counts). "
        "Default: 0 for maximized stability/benchmark/benchmark_after (1 if minimized), 0 for "
        "reward_gain and reward_asymptote, 1.0 for kl and for forgetting (a drop of the whole "
        "score; -1 if maximized), 0 tokens for maximized length_at_horizon (a minimized one "
        "needs a reference: the longest length that still counts).",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def resolved_direction(self) -> Direction:
        """The direction, defaulted from the name."""
        return self.direction or DEFAULT_DIRECTIONS[self.name]

    @property
    def resolved_reference(self) -> float:
        """The reference value, defaulted from the name and direction (see field)."""
        if self.reference is not None:
            return self.reference
        if self.name in ("stability", "benchmark", "benchmark_after"):
            return 0.0 if self.resolved_direction == "maximize" else 1.0
        if self.name == "kl":
            return 1.0 if self.resolved_direction == "minimize" else 0.0
        if self.name == "forgetting":
            return 1.0 if self.resolved_direction == "minimize" else -1.0
        return 0.0

    @model_validator(mode="after")
    def _minimized_length_has_reference(self) -> ObjectiveSpec:
        # 0 tokens, the maximized default, would leave every minimized length without volume.
        if (
            self.name == "length_at_horizon"
            and self.reference is None
            and self.resolved_direction == "minimize"
        ):
            raise ValueError(
                "length_at_horizon minimized needs a reference (the longest length that still "
                "counts, e.g. probe.response_length)"
            )
        return self


def default_objectives() -> list[ObjectiveSpec]:
    return [ObjectiveSpec(name="stability"), ObjectiveSpec(name="benchmark")]


class ResourcesSpec(_Frozen):
    """Ray resources of each trial and the parallelism of the sweep."""

    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    max_concurrent_trials: int = Field(default=1, ge=1, le=1024)


class NightlySpec(_Frozen):
    """How ``bai-sweep run`` compares a sweep with the previous successful one of its name."""

    tolerance: float = Field(
        default=0.0,
        ge=0,
        description="Extra margin beyond the 95% intervals: a regression is a current interval "
        "(hypervolume, each objective's best) lying wholly below the previous one by more than "
        "this (see sweeps.nightly).",
    )
    warm_start: bool = Field(
        default=True,
        description="Re-evaluate the previous successful sweep's front ratios first (added to "
        "search.seed_points as far as search.n_trials allows).",
    )


class FidelitySpec(_Frozen):
    """Successive halving (see :mod:`sweeps.fidelity`): probe every candidate briefly, promote
    the best ``1/eta`` by non-dominated rank to longer probes on more seeds, rank on the highest
    fidelity reached. The last rung is the spec's own ``probe.steps`` and ``probe.repeats``;
    ``search.n_trials`` counts the candidates of rung 0 (see :meth:`SweepSpec.trial_budget`)."""

    enabled: bool = False
    rungs: int = Field(default=3, ge=2, le=8, description="Fidelity levels, the last full.")
    eta: int | float = Field(
        default=3,
        ge=1.5,
        le=10,
        description="Keep 1/eta of a rung's candidates at each promotion (floor(n / eta), at "
        "least one); a fraction such as 2.5 keeps 3 of 8. Rung steps grow by eta, rounded.",
    )
    min_steps: int | None = Field(
        default=None,
        ge=1,
        description="Probe updates at the lowest rung (each rung multiplies them by eta). "
        "Default: probe.steps / eta^(rungs - 1), at least 1.",
    )
    min_repeats: int = Field(
        default=1, ge=1, le=64, description="Seeds at the lowest rung (growing to probe.repeats)."
    )

    def resolved_min_steps(self, steps: int) -> int:
        """``min_steps``, defaulted from the full probe's ``steps``."""
        from sweeps.fidelity import scaled_down

        if self.min_steps is not None:
            return self.min_steps
        return scaled_down(steps, self.eta ** (self.rungs - 1))


class ConstraintsSpec(_Frozen):
    """Constraints of a sweep (see :mod:`sweeps.constraints`): the sampler steers away from
    trials that break them and the Pareto front holds only trials that keep them."""

    not_collapsed: bool = Field(
        default=False,
        description="Every seed's length_retention stays at or above probe.collapse_threshold "
        "and no probe diverged (off by default: against the parents' reference length most "
        "BAI ratios of a short-answering world count as collapsed; the recommendation skips "
        "trials whose seeds do not show that they keep their length either way).",
    )
    kl_budget: float | None = Field(
        default=None, gt=0, description="Largest mean final KL to the reference (nats)."
    )
    benchmark_floor: float | None = Field(
        default=None, description="Smallest mean benchmark of the initial actor."
    )

    def active(self) -> bool:
        """Whether any constraint is set."""
        return self.not_collapsed or self.kl_budget is not None or self.benchmark_floor is not None


class SweepSpec(_Frozen):
    """A whole sweep: models, search, objectives, probe, benchmarks, resources."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    models: ModelsSpec
    search: SearchSpec = SearchSpec()
    objectives: list[ObjectiveSpec] = Field(
        default_factory=default_objectives, min_length=1, max_length=4
    )
    probe: ProbeConfig = ProbeConfig()
    benchmarks: BenchmarkConfig = BenchmarkConfig()
    prompt: PromptSettings = Field(
        default=PromptSettings(),
        description="Prompt format of the probe's rollouts, the reward model's inputs and the "
        "benchmarks: {format: auto|chat|raw, system: optional system prompt}.",
    )
    resources: ResourcesSpec = ResourcesSpec()
    nightly: NightlySpec = NightlySpec()
    constraints: ConstraintsSpec = ConstraintsSpec()
    fidelity: FidelitySpec = FidelitySpec()
    export_front: bool = Field(
        default=False, description="Write the merged actors of the final Pareto front to disk."
    )

    def trial_budget(self) -> int:
        """Trials (probe runs) the sweep plans: ``search.n_trials``, or with successive halving
        the rung-0 candidates plus every promotion (:func:`sweeps.fidelity.planned_runs`).
        The sweep's stored ``n_trials`` and every progress count use this unit."""
        if not self.fidelity.enabled:
            return self.search.n_trials
        from sweeps.fidelity import planned_runs

        return planned_runs(self.rungs(), self.search.n_trials)

    def short_window_warnings(self) -> list[str]:
        """Warnings for probes under two stability windows: the full probe's
        (:meth:`ProbeConfig.short_window_warning`) and, with successive halving, the lowest
        rung's, whose stability scores then decide the promotion almost by chance."""
        full = self.probe.short_window_warning()
        if full is not None:
            return [full]  # its lowest rung is shorter still: one warning says it
        if not self.fidelity.enabled:
            return []
        needed = self.probe.informative_steps
        low = self.rungs()[0].steps
        if low >= needed:
            return []
        return [
            f"fidelity: rung 0 probes {low} updates, under two stability windows "
            f"(2 x probe.stability_window = {needed}): its stability scores can hardly tell "
            "candidates apart, so the promotion ranks stability by chance; raise "
            f"fidelity.min_steps to {needed} or lower stability_window"
        ]

    def rungs(self) -> list[Rung]:
        """The fidelity rungs (:func:`sweeps.fidelity.schedule`); one full rung without
        successive halving."""
        from sweeps.fidelity import Rung, schedule

        if not self.fidelity.enabled:
            return [Rung(0, self.probe.steps, self.probe.repeats, self.fidelity.eta)]
        return schedule(self.fidelity, steps=self.probe.steps, repeats=self.probe.repeats)

    @field_validator("objectives")
    @classmethod
    def _unique_objectives(cls, value: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        names = [o.name for o in value]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        n_sft = len(self.models.sft)
        search = self.search
        if isinstance(search.weights, list) and len(search.weights) != n_sft:
            raise ValueError(
                f"search.weights: {len(search.weights)} fixed weights for {n_sft} SFT models"
            )
        fidelity = self.fidelity
        if fidelity.enabled:
            low = fidelity.resolved_min_steps(self.probe.steps)
            if low >= self.probe.steps:
                raise ValueError(
                    f"fidelity.min_steps: {low} is not below probe.steps ({self.probe.steps}): "
                    "the lowest rung must be briefer than the full probe"
                )
            if fidelity.min_repeats > self.probe.repeats:
                raise ValueError(
                    f"fidelity.min_repeats: {fidelity.min_repeats} exceeds probe.repeats "
                    f"({self.probe.repeats})"
                )
        self._check_forecast_objectives()
        if "forgetting" in self.objective_names and not self.benchmarks.retention_tasks:
            raise ValueError(
                "objectives: forgetting needs retention tasks: name them in "
                "benchmarks.retention (none of the benchmark tasks is a shipped knowledge task)"
            )
        space = self.search_space()
        seeds = self.seed_points()
        if search.n_trials < len(seeds):
            raise ValueError(
                f"search.n_trials: {search.n_trials} is fewer than the {len(seeds)} seed points"
            )
        grid_size = space.grid_size(search.grid_levels)
        if search.sampler == "grid" and search.n_trials > grid_size:
            raise ValueError(
                f"search.n_trials: {search.n_trials} exceeds the {grid_size} points of the grid "
                f"(search.grid_levels={search.grid_levels})"
            )
        return self

    def _check_forecast_objectives(self) -> None:
        """A forecast objective needs probes long enough to fit a curve to, at every rung."""
        from sweeps.forecast import FORECAST_OBJECTIVES, MIN_STEPS

        chosen = [name for name in self.objective_names if name in FORECAST_OBJECTIVES]
        if not chosen:
            return
        named = ", ".join(chosen)
        if self.probe.steps < MIN_STEPS:
            raise ValueError(
                f"probe.steps: {self.probe.steps} updates are too few for the forecast objective "
                f"{named}: a curve is fitted to at least {MIN_STEPS} steps (every trial would "
                "take its observed value)"
            )
        low = self.rungs()[0].steps
        if low < MIN_STEPS:
            raise ValueError(
                f"fidelity.min_steps: the lowest rung's {low} updates are too few for the "
                f"forecast objective {named}: a curve is fitted to at least {MIN_STEPS} steps"
            )

    def search_space(self) -> SearchSpace:
        """The search space described by ``search`` and the number of SFT models."""
        weights = self.search.weights
        fixed = tuple(weights) if isinstance(weights, list) else None
        return SearchSpace(
            n_sft=len(self.models.sft), alpha_bounds=self.search.alpha, fixed_weights=fixed
        )

    def seed_points(self) -> list[SeedPoint]:
        """The candidates to enqueue before the sampler takes over (deduplicated)."""
        space = self.search_space()
        raw = self.search.seed_points
        items: list[str | ExplicitSeedPoint]
        if raw == "none":
            items = []
        elif isinstance(raw, str):
            items = [raw]
        else:
            items = list(raw)
        points: list[SeedPoint] = []
        for item in items:
            if item == "paper":
                paper = space.paper_points()
                if not paper:
                    raise ValueError(
                        "search.seed_points: no alpha of the paper's grid lies within "
                        f"search.alpha {list(self.search.alpha)}"
                    )
                points += paper
            elif item == "baselines":
                problem = space.baseline_problem()
                if problem:
                    raise ValueError(f"search.seed_points: {problem}")
                points += space.baseline_points()
            else:
                assert isinstance(item, ExplicitSeedPoint)
                weights = item.weights if item.weights is not None else space.equal_weights()
                try:
                    _check_weights(list(weights))
                except ValueError as exc:
                    raise ValueError(f"search.seed_points: {exc}") from None
                candidate = Candidate(tuple(float(w) for w in weights), float(item.alpha))
                if not space.contains(candidate):
                    raise ValueError(
                        f"search.seed_points: {candidate.label()} lies outside the search space"
                    )
                points.append(SeedPoint(candidate, "explicit"))
        return dedupe_seed_points(points)

    @property
    def directions(self) -> list[Direction]:
        """The objectives' directions, in order."""
        return [o.resolved_direction for o in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        """The objectives' names, in order."""
        return [o.name for o in self.objectives]

    @property
    def reference_point(self) -> list[float]:
        """The hypervolume reference point, in objective order."""
        return [o.resolved_reference for o in self.objectives]

    def resolved(self, base_dir: Path) -> SweepSpec:
        """A copy with model paths resolved against ``base_dir`` (see ``ModelsSpec.resolved``),
        the reference model of ``probe.length_reference`` included."""
        update: dict[str, Any] = {"models": self.models.resolved(base_dir)}
        reference = self.probe.reference_model
        if reference is not None:
            path = Path(reference).expanduser()
            if not path.is_absolute() and (base_dir / path).exists():
                path = (base_dir / path).resolve()
            update["probe"] = self.probe.model_copy(update={"length_reference": str(path)})
        return self.model_copy(update=update)

    @classmethod
    def parse(cls, data: Any, *, source: str = "spec", base_dir: Path | None = None) -> SweepSpec:
        """Validate ``data`` (a mapping), raising ``InvalidSpecError`` that names the field."""
        if not isinstance(data, Mapping):
            raise InvalidSpecError(
                f"{source}: a sweep spec must be a mapping, got {type(data).__name__}"
            )
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidSpecError(f"{source}: {format_validation_error(exc)}") from None
        return spec.resolved(base_dir) if base_dir is not None else spec

    @classmethod
    def from_file(cls, path: str | Path) -> SweepSpec:
        """Load a YAML (or ``.json``) spec; relative model paths are taken from its directory."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidSpecError(
                f"cannot read sweep spec {path}: {exc.strerror or exc}"
            ) from None
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpecError(
                f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise InvalidSpecError(f"{path}: invalid YAML{where}: {problem}") from None
        return cls.parse(data, source=str(path), base_dir=path.parent.resolve())

    def to_json_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data (what the database stores)."""
        return self.model_dump(mode="json")


def _field_path(loc: tuple[Any, ...]) -> str:
    # Drop pydantic's union-member tags (``literal[...]``, ``list[...]``, model class names).
    parts = [
        str(p)
        for p in loc
        if not ("[" in str(p) or (isinstance(p, str) and p[:1].isupper() and p.isidentifier()))
    ]
    return ".".join(parts)


def format_validation_error(exc: ValidationError) -> str:
    """The errors joined by ``; ``, each starting with its dotted field path.

    For a union, the errors of the deepest alternative win (``search.seed_points.0.alpha``
    rather than every alternative that did not match).
    """
    errors = [
        (_field_path(error["loc"]), error["msg"].removeprefix("Value error, "))
        for error in exc.errors(include_url=False)
    ]
    paths = {path for path, _ in errors}
    parts: list[str] = []
    for path, message in errors:
        if any(other.startswith(path + ".") for other in paths if path):
            continue
        named = not path or message.startswith(path.split(".")[0] + ".")
        line = message if named else f"{path}: {message}"
        if line not in parts:
            parts.append(line)
    return "; ".join(parts)
