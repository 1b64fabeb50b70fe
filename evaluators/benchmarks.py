"""Benchmark scoring with EleutherAI's lm-evaluation-harness, offline, on in-memory models.

A :class:`BenchmarkConfig` names *selection* tasks (their weighted mean is the ``benchmark``
objective of a sweep) and held-out *report* tasks (only reported). Task names resolve, in order,
against the suite shipped in :mod:`evaluators.tasks`, the user's ``include_path`` directories of
lm-eval YAML tasks, and lm-eval's built-in tasks (only indexed when a name is not found locally:
indexing them costs ~13 s). Built-in tasks run only when their data is already on this machine:
nothing is downloaded.

:class:`BenchmarkRunner` loads the tasks once and scores any number of models with them (the
sweep scores one actor per trial); :func:`evaluate_benchmarks` is the one-shot form and
:func:`evaluate_checkpoint` loads a checkpoint directory first.
"""

from __future__ import annotations

import difflib
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from evaluators._offline import force_offline
from evaluators.exceptions import (
    BenchmarkConfigError,
    MalformedTaskError,
    ModelLoadError,
    TaskDataUnavailableError,
    UnknownTaskError,
)
from evaluators.prompting import PromptSettings, resolve_prompt_format
from evaluators.tasks import DEFAULT_REPORT, DEFAULT_SELECTION, SHIPPED_TASKS, TASKS_DIR

if TYPE_CHECKING:
    from lm_eval.api.group import Group
    from lm_eval.api.task import Task
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "KNOWLEDGE_TASKS",
    "PROPORTION_METRICS",
    "BenchmarkConfig",
    "BenchmarkResult",
    "BenchmarkRunner",
    "TaskRef",
    "TaskScore",
    "evaluate_benchmarks",
    "evaluate_checkpoint",
    "forgetting",
    "forgetting_stderr",
    "load_checkpoint",
    "proportion_stderr",
    "render_shipped_tasks",
    "resolve_device",
    "result_from_lm_eval",
    "task_stderr",
]


def _prepare_environment() -> None:
    """Set the environment lm-eval needs, at use (importing this module changes nothing).

    Offline before lm-eval (imported lazily, in the functions below) imports ``datasets``.
    Bootstrapped standard errors run in this process: a process pool per metric inside a Ray
    trial costs more than it saves (lm-eval reads this variable at call time).
    """
    force_offline()
    os.environ.setdefault("DISABLE_MULTIPROC", "1")


#: The shipped suite's knowledge (K) tasks: forgetting is measured on those a config scores,
#: unless it names its own ``retention`` tasks.
KNOWLEDGE_TASKS: tuple[str, ...] = ("bai_facts_mc",)

_DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")

TaskRole = Literal["selection", "report"]


class TaskRef(BaseModel):
    """One task of a benchmark config: its name, weight in the aggregate and scored metric."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="lm-eval task (or group) name.")
    weight: float = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="Weight in the `benchmark` aggregate (selection tasks only).",
    )
    metric: str | None = Field(
        default=None,
        description="Metric to score, `name` or `name,filter` as lm-eval reports it (e.g. "
        "`acc` or `exact_match,strict-match`). Default: the shipped task's metric, else the "
        "task's first metric.",
    )


def _default_refs(names: Sequence[str]) -> tuple[TaskRef, ...]:
    return tuple(TaskRef(name=name) for name in names)


class BenchmarkConfig(BaseModel):
    """What to score a model on, and how (frozen; unknown keys are refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    selection: tuple[TaskRef, ...] = Field(
        default_factory=lambda: _default_refs(DEFAULT_SELECTION),
        min_length=1,
        max_length=64,
        validation_alias=AliasChoices("selection", "tasks"),
        description="Tasks that drive the search; `benchmark` is their weighted mean "
        "(also accepted as `tasks`).",
    )
    report: tuple[TaskRef, ...] = Field(
        default_factory=lambda: _default_refs(DEFAULT_REPORT),
        max_length=64,
        description="Held-out tasks: scored and reported, never part of `benchmark`.",
    )
    allow_overlap: bool = Field(
        default=False,
        description="Allow a task in both selection and report (it is then not held out).",
    )
    limit: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Score at most this many documents per task."
    )
    batch_size: int = Field(default=32, ge=1, le=65_536, description="Requests per forward pass.")
    include_path: tuple[Path, ...] = Field(
        default=(), max_length=16, description="Directories of user lm-eval task YAMLs."
    )
    device: str | None = Field(
        default=None, description="`cpu`, `cuda`, `cuda:N` or `mps`; default: CUDA if available."
    )
    seed: int = Field(
        default=1234, description="Seed of Python, NumPy, torch and few-shot sampling."
    )
    max_gen_toks: int | None = Field(
        default=None,
        ge=1,
        description="Override the generation budget (tokens) of every generate_until task.",
    )
    bootstrap_iters: int = Field(
        default=100,
        ge=0,
        description="Bootstrap iterations for standard errors (mean metrics use a closed "
        "form whenever this is > 0); 0 skips standard errors.",
    )
    retention: tuple[str, ...] | None = Field(
        default=None,
        max_length=64,
        description="Tasks forgetting is measured on: the mean score drop of a model versus "
        "the base model (each a selection or report task, so it is scored anyway). Default: "
        "the shipped knowledge tasks among them (bai_facts_mc); [] measures no forgetting.",
    )

    @field_validator("selection", "report", mode="before")
    @classmethod
    def _names_to_refs(cls, value: Any) -> Any:
        if isinstance(value, str | TaskRef | Mapping):
            value = [value]
        if isinstance(value, Sequence):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("include_path", mode="before")
    @classmethod
    def _one_path(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str | None) -> str | None:
        if value is not None and not _DEVICE_PATTERN.match(value):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_tasks(self) -> BenchmarkConfig:
        for role, refs in (("selection", self.selection), ("report", self.report)):
            names = [ref.name for ref in refs]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"{role} names a task more than once: {', '.join(duplicates)}")
        scored = set(self.task_names)
        unknown = [name for name in self.retention or () if name not in scored]
        if unknown:
            raise ValueError(
                f"retention task(s) {', '.join(unknown)} are neither selection nor report tasks"
            )
        overlap = sorted({r.name for r in self.selection} & {r.name for r in self.report})
        if overlap and not self.allow_overlap:
            raise ValueError(
                f"task(s) {', '.join(overlap)} are in both selection and report: a task that "
                "drives the search is not held out; set allow_overlap: true to allow it"
            )
        return self

    @property
    def task_names(self) -> list[str]:
        """Every task to run, selection first, each once."""
        return list(dict.fromkeys(ref.name for ref in (*self.selection, *self.report)))

    @property
    def retention_tasks(self) -> list[str]:
        """The tasks forgetting is measured on (see ``retention``)."""
        if self.retention is not None:
            return list(self.retention)
        return [name for name in self.task_names if name in KNOWLEDGE_TASKS]


class TaskScore(BaseModel):
    """The score of one task."""

    model_config = ConfigDict(frozen=True)

    name: str
    roles: tuple[TaskRole, ...] = Field(description="`selection`, `report` or both.")
    metric: str = Field(description="The scored lm-eval result key, e.g. `acc,none`.")
    score: float = Field(description="Value of `metric`.")
    weight: float | None = Field(description="Weight in `benchmark` (selection tasks).")
    n_samples: int | None = Field(description="Documents scored (None for groups).")
    metrics: dict[str, float] = Field(
        description="Every numeric metric lm-eval reported for the task (stderrs included)."
    )


class BenchmarkResult(BaseModel):
    """Scores of one model: per task, and the weighted ``benchmark`` aggregate."""

    model_config = ConfigDict(frozen=True)

    per_task: dict[str, TaskScore]
    benchmark: float = Field(description="Weighted mean score of the selection tasks.")
    wall_time_s: float = Field(description="Wall-clock seconds of the call that scored it.")
    limit: int | None = Field(description="Documents per task cap used, if any.")
    prompt_format: Literal["chat", "raw"] = Field(
        default="raw", description="`chat` when the requests went through the chat template."
    )

    @property
    def selection_scores(self) -> dict[str, float]:
        """Score of every selection task."""
        return {n: t.score for n, t in self.per_task.items() if "selection" in t.roles}

    @property
    def report_tasks(self) -> dict[str, float]:
        """Score of every held-out report task."""
        return {n: t.score for n, t in self.per_task.items() if "report" in t.roles}


def _numeric_metrics(task_results: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in task_results.items()
        if "," in key and isinstance(value, int | float) and not isinstance(value, bool)
    }


def _resolve_metric(ref: TaskRef, available: Sequence[str]) -> str:
    """The result key of ``ref``'s metric among ``available`` (``metric,filter`` keys)."""
    candidates = [key for key in available if "_stderr," not in key]
    if not candidates:
        raise BenchmarkConfigError(f"task {ref.name!r} reported no metric")
    if ref.metric is None:
        shipped = SHIPPED_TASKS.get(ref.name)
        if shipped is not None and shipped.metric in candidates:
            return shipped.metric
        return candidates[0]
    if ref.metric in candidates:
        return ref.metric
    matches = [key for key in candidates if key.split(",", 1)[0] == ref.metric]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise BenchmarkConfigError(
            f"metric {ref.metric!r} of task {ref.name!r} is ambiguous: name one of "
            f"{', '.join(matches)}"
        )
    raise BenchmarkConfigError(
        f"task {ref.name!r} has no metric {ref.metric!r}; it has {', '.join(candidates)}"
    )


def result_from_lm_eval(
    results: Mapping[str, Any], config: BenchmarkConfig, *, wall_time_s: float = 0.0
) -> BenchmarkResult:
    """Turn an lm-eval results dict (what ``simple_evaluate`` returns) into a result.

    Raises:
        BenchmarkConfigError: a configured task or metric is missing from ``results``, or a
            selection metric is lower-is-better (it cannot enter a maximised mean).
    """
    task_results = results.get("results", {})
    higher_is_better = results.get("higher_is_better", {})
    n_samples = results.get("n-samples", {})
    weights = {ref.name: ref.weight for ref in config.selection}
    roles: dict[str, list[TaskRole]] = {}
    refs: dict[str, TaskRef] = {}
    role_lists: tuple[tuple[TaskRole, list[TaskRef]], ...] = (
        ("selection", list(config.selection)),
        ("report", list(config.report)),
    )
    for role, role_refs in role_lists:
        for ref in role_refs:
            roles.setdefault(ref.name, []).append(role)
            refs.setdefault(ref.name, ref)

    per_task: dict[str, TaskScore] = {}
    for name, ref in refs.items():
        if name not in task_results:
            raise BenchmarkConfigError(
                f"lm-eval returned no result for {name!r} (a tag or a group without an "
                "aggregate metric? name its tasks instead)"
            )
        metrics = _numeric_metrics(task_results[name])
        metric = _resolve_metric(ref, list(metrics))
        if "selection" in roles[name]:
            direction = higher_is_better.get(name, {}).get(metric.split(",", 1)[0], True)
            if direction is False:
                raise BenchmarkConfigError(
                    f"metric {metric!r} of selection task {name!r} is lower-is-better; choose a "
                    "higher-is-better metric for the benchmark aggregate"
                )
        score = metrics[metric]
        if not math.isfinite(score):
            raise BenchmarkConfigError(f"task {name!r} scored {score} on {metric!r}")
        effective = n_samples.get(name, {}).get("effective")
        per_task[name] = TaskScore(
            name=name,
            roles=tuple(roles[name]),
            metric=metric,
            score=score,
            weight=weights.get(name),
            n_samples=int(effective) if effective is not None else None,
            metrics=metrics,
        )

    total_weight = sum(weights.values())
    benchmark = sum(per_task[name].score * weight for name, weight in weights.items())
    return BenchmarkResult(
        per_task=per_task,
        benchmark=benchmark / total_weight,
        wall_time_s=wall_time_s,
        limit=config.limit,
    )


def forgetting(result: BenchmarkResult, base: BenchmarkResult, tasks: Sequence[str]) -> float:
    """The mean score drop of ``result`` versus ``base`` over ``tasks`` (> 0: forgot)."""
    if not tasks:
        raise ValueError("no retention tasks to measure forgetting on")
    drops = [base.per_task[name].score - result.per_task[name].score for name in tasks]
    return sum(drops) / len(drops)


def proportion_stderr(
    share: float, documents: int, stderr: float, *, confidence: float = 0.95
) -> float:
    """The standard error of a share of ``documents`` correct, floored by Agresti-Coull's.

    lm-eval's binomial error ``sqrt(p (1 - p) / (n - 1))`` is 0 at p = 0 or 1, a zero-width
    interval for a perfect score on a few documents. Agresti and Coull add ``z^2 / 2`` successes
    and failures: ``n~ = n + z^2``, ``p~ = (n p + z^2 / 2) / n~``, ``se~ = sqrt(p~ (1 - p~) / n~)``;
    the larger of the two errors is kept (away from the edges they nearly agree).

    Args:
        share: The share correct, in [0, 1].
        documents: Documents scored (at least one).
        stderr: lm-eval's error.
    """
    from scipy import stats

    if documents < 1:
        raise ValueError(f"documents must be >= 1, got {documents}")
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    z = float(stats.norm.ppf((1 + confidence) / 2))
    shifted_n = documents + z**2
    shifted_p = (documents * share + z**2 / 2) / shifted_n
    floor = math.sqrt(shifted_p * (1 - shifted_p) / shifted_n)
    return max(stderr, floor)


#: lm-eval metrics that are a share of documents correct (a binomial proportion).
PROPORTION_METRICS = frozenset({"acc", "acc_norm", "exact_match"})


def task_stderr(task: TaskScore) -> float | None:
    """lm-eval's standard error of ``task.score`` (None if it gave none), floored by
    :func:`proportion_stderr` for a share-correct metric, so a perfect score keeps an error."""
    name, _, filters = task.metric.partition(",")
    se = task.metrics.get(f"{name}_stderr,{filters}")
    if se is None or not math.isfinite(se):
        return None
    if name in PROPORTION_METRICS and task.n_samples and 0 <= task.score <= 1:
        return proportion_stderr(task.score, task.n_samples, se)
    return se


def forgetting_stderr(
    result: BenchmarkResult, base: BenchmarkResult, tasks: Sequence[str]
) -> float | None:
    """Standard error of :func:`forgetting` from lm-eval's per-task stderrs of both models
    (added in quadrature; None if any is missing)."""
    errors = [task_stderr(scores.per_task[name]) for name in tasks for scores in (result, base)]
    if not errors or any(se is None for se in errors):
        return None
    return math.sqrt(sum(se**2 for se in errors if se is not None)) / len(tasks)


# --------------------------------------------------------------------------- task loading


def _absolute_data_files(data_files: Any, base: Path) -> Any:
    """``data_files`` (str, list or split -> str/list) with relative paths made absolute."""
    if isinstance(data_files, str):
        return data_files if Path(data_files).is_absolute() else str(base / data_files)
    if isinstance(data_files, list):
        return [_absolute_data_files(item, base) for item in data_files]
    if isinstance(data_files, dict):
        return {split: _absolute_data_files(item, base) for split, item in data_files.items()}
    return data_files


def render_shipped_tasks(dest: Path) -> list[Path]:
    """Write the shipped task YAMLs into ``dest`` with absolute data paths; return them."""
    written = []
    for source in sorted(TASKS_DIR.glob("*.yaml")):
        cfg = yaml.safe_load(source.read_text(encoding="utf-8"))
        dataset_kwargs = cfg.get("dataset_kwargs") or {}
        if "data_files" in dataset_kwargs:
            dataset_kwargs["data_files"] = _absolute_data_files(
                dataset_kwargs["data_files"], source.parent
            )
        target = dest / source.name
        target.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        written.append(target)
    return written


def _check_include_paths(paths: Sequence[Path]) -> None:
    """Fail on a missing include directory or a task YAML that does not parse."""
    from lm_eval.tasks._yaml_loader import load_yaml

    for root in paths:
        if not root.is_dir():
            raise BenchmarkConfigError(f"task include path {root} is not a directory")
        for path in sorted(root.glob("**/*.yaml")):
            try:
                load_yaml(path, resolve_func=False, recursive=True)
            except (yaml.YAMLError, ValueError, OSError) as exc:
                reason = " ".join(str(exc).split())
                raise MalformedTaskError(f"task file {path} is malformed: {reason}") from exc


def _unknown_task_message(
    unknown: Sequence[str], local: Sequence[str], every: Sequence[str]
) -> str:
    parts = [f"unknown benchmark task(s): {', '.join(unknown)}."]
    for name in unknown:
        close = difflib.get_close_matches(name, every, n=3, cutoff=0.75)
        if close:
            parts.append(f"Did you mean {' or '.join(close)} for {name!r}?")
    parts.append(f"Known local tasks: {', '.join(sorted(local)) or '(none)'}")
    parts.append(f"(and {len(every) - len(local)} lm-eval built-in names).")
    return " ".join(parts)


def _build_task_manager(rendered: Path, config: BenchmarkConfig) -> TaskManager:
    """A TaskManager over the shipped suite and the include paths (+ built-ins if needed)."""
    from lm_eval.tasks import TaskManager

    user_paths = [Path(p).expanduser().resolve() for p in config.include_path]
    _check_include_paths(user_paths)
    include = [rendered, *user_paths]
    manager = TaskManager(include_path=include, include_defaults=False)
    wanted = config.task_names
    if all(name in manager.all_tasks for name in wanted):
        return manager
    local = manager.all_tasks
    manager = TaskManager(include_path=include, include_defaults=True)
    unknown = [name for name in wanted if name not in manager.all_tasks]
    if unknown:
        raise UnknownTaskError(_unknown_task_message(unknown, local, manager.all_tasks))
    return manager


def _load_task(manager: TaskManager, name: str) -> Task | Group:
    """Build one task or group (its data loaded), with user-facing errors."""
    entry = manager.task_index.get(name)
    source = entry.yaml_path if entry is not None and entry.yaml_path else "lm-eval"
    try:
        loaded = manager.load([name])
    except (ConnectionError, FileNotFoundError) as exc:
        reason = " ".join(str(exc).split())
        raise TaskDataUnavailableError(
            f"the data of benchmark task {name!r} is not available on this machine and "
            f"nothing is downloaded at run time ({reason}); pre-load it into the Hugging Face "
            "datasets cache, or use a task YAML whose data_files point at local files"
        ) from exc
    except Exception as exc:  # lm-eval raises whatever the task config provokes
        reason = " ".join(str(exc).split())
        raise MalformedTaskError(
            f"benchmark task {name!r} ({source}) cannot be built: {type(exc).__name__}: {reason}"
        ) from exc
    if name in loaded.get("groups", {}):
        return loaded["groups"][name]
    if name in loaded["tasks"]:
        return loaded["tasks"][name]
    raise BenchmarkConfigError(
        f"{name!r} is an lm-eval tag of {len(loaded['tasks'])} tasks; name the tasks instead"
    )


def _task_metric_keys(task: Task) -> list[str]:
    """The ``metric,filter`` keys lm-eval will report for a leaf task."""
    filter_list = getattr(getattr(task, "config", None), "filter_list", None) or []
    filters = [f["name"] for f in filter_list] or ["none"]
    return [f"{metric},{filt}" for filt in filters for metric in task.aggregation()]


def _check_metrics(config: BenchmarkConfig, loaded: Mapping[str, Task | Group]) -> None:
    """Validate the configured metrics of leaf tasks before spending time on a model."""
    from lm_eval.api.task import Task

    selection = {ref.name for ref in config.selection}
    for ref in (*config.selection, *config.report):
        task = loaded[ref.name]
        if not isinstance(task, Task):
            continue
        metric = _resolve_metric(ref, _task_metric_keys(task))
        if ref.name in selection and task.higher_is_better().get(metric.split(",")[0]) is False:
            raise BenchmarkConfigError(
                f"metric {metric!r} of selection task {ref.name!r} is lower-is-better; choose a "
                "higher-is-better metric for the benchmark aggregate"
            )


# --------------------------------------------------------------------------- scoring


def resolve_device(device: str | None) -> str:
    """``device`` checked against this machine; ``None`` means CUDA when available, else CPU."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkConfigError(f"device {device!r} requested but CUDA is not available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise BenchmarkConfigError("device 'mps' requested but MPS is not available")
    return device


@contextmanager
def _preserved_rng_state() -> Iterator[None]:
    """Let lm-eval seed the global RNGs, then give the caller its random streams back."""
    import numpy as np
    import torch

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


@contextmanager
def _task_generation_budget(model: PreTrainedModel) -> Iterator[None]:
    """Let each task's ``max_gen_toks`` bound generation.

    A checkpoint's own ``generation_config.max_new_tokens`` would otherwise silently override
    the ``max_length`` that lm-eval passes to ``generate``.
    """
    generation_config = getattr(model, "generation_config", None)
    saved = getattr(generation_config, "max_new_tokens", None)
    if generation_config is not None:
        generation_config.max_new_tokens = None
    try:
        yield
    finally:
        if generation_config is not None:
            generation_config.max_new_tokens = saved


class BenchmarkRunner:
    """Loads the configured tasks once, then scores any number of models with them.

    :meth:`score` runs ``lm_eval.simple_evaluate`` on the already-loaded tasks through an
    lm-eval ``HFLM`` wrapper (a fresh one per bare model: cheap, the model is not copied; or one
    from :meth:`wrap`, reusable while the weights change in place), with no response cache, so
    scores never leak between different weights. All models must share the tokenizer.

    Raises (at construction):
        UnknownTaskError, MalformedTaskError, TaskDataUnavailableError, BenchmarkConfigError.
    """

    def __init__(
        self,
        config: BenchmarkConfig,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptSettings | None = None,
    ) -> None:
        started = time.perf_counter()
        _prepare_environment()
        self.config = config
        self.tokenizer = tokenizer
        self.prompt = prompt or PromptSettings()
        self.prompt_format = resolve_prompt_format(tokenizer, self.prompt)
        self.device = resolve_device(config.device)
        with tempfile.TemporaryDirectory(prefix="bai-sweep-tasks-") as tmp:
            rendered = Path(tmp)
            render_shipped_tasks(rendered)
            self._manager = _build_task_manager(rendered, config)
            self._tasks = {name: _load_task(self._manager, name) for name in config.task_names}
        _check_metrics(config, self._tasks)
        self.setup_time_s = time.perf_counter() - started

    @property
    def task_names(self) -> list[str]:
        """The loaded tasks, selection first."""
        return list(self._tasks)

    def _check_generation_budget(self, max_length: int) -> None:
        from lm_eval.api.task import Task

        for name, task in self._tasks.items():
            leaves = [task] if isinstance(task, Task) else task.get_all_tasks()
            for leaf in leaves:
                if leaf.get_config("output_type") != "generate_until":
                    continue
                kwargs = leaf.get_config("generation_kwargs") or {}
                budget = self.config.max_gen_toks or kwargs.get("max_gen_toks", 256)
                if budget >= max_length:
                    raise BenchmarkConfigError(
                        f"task {name!r} generates up to {budget} tokens but the model's context "
                        f"is {max_length} tokens; set a smaller max_gen_toks"
                    )

    def wrap(self, model: PreTrainedModel) -> HFLM:
        """An lm-eval ``HFLM`` around ``model`` (moved to the runner's device), for :meth:`score`.

        Keep it to score the same model object again after changing its weights in place: the
        wrapper holds no state that depends on the weights.
        """
        from lm_eval.models.huggingface import HFLM

        cast(Any, model).to(self.device)  # no-op when it is already there
        return HFLM(pretrained=model, tokenizer=self.tokenizer, batch_size=self.config.batch_size)

    def score(self, model: PreTrainedModel | HFLM) -> BenchmarkResult:
        """Score ``model``, or the model inside a wrapper from :meth:`wrap`.

        A bare model is moved to the runner's device and wrapped afresh. The model is put in
        eval mode while scored, then given back its train/eval mode.
        """
        import lm_eval
        from lm_eval.api.model import LM

        started = time.perf_counter()
        hf_model = model.model if isinstance(model, LM) else model
        was_training = hf_model.training  # before HFLM(...), which switches to eval mode
        lm = model if isinstance(model, LM) else self.wrap(model)
        seed = self.config.seed
        max_gen_toks = self.config.max_gen_toks
        gen_kwargs = {"max_gen_toks": max_gen_toks} if max_gen_toks else None
        try:
            self._check_generation_budget(lm.max_length)
            hf_model.eval()
            with _preserved_rng_state(), _task_generation_budget(hf_model):
                raw = lm_eval.simple_evaluate(
                    model=lm,
                    tasks=list(self._tasks.values()),
                    task_manager=self._manager,
                    limit=self.config.limit,
                    batch_size=self.config.batch_size,
                    device=self.device,
                    use_cache=None,
                    cache_requests=False,
                    bootstrap_iters=self.config.bootstrap_iters,
                    log_samples=False,
                    gen_kwargs=gen_kwargs,
                    # Chat format: every request is the tokenizer's template, few-shot examples
                    # as earlier user/assistant turns, the system prompt first.
                    apply_chat_template=self.prompt_format == "chat",
                    fewshot_as_multiturn=self.prompt_format == "chat",
                    system_instruction=self.prompt.system,
                    random_seed=seed,
                    numpy_random_seed=seed,
                    torch_random_seed=seed,
                    fewshot_random_seed=seed,
                )
        finally:
            hf_model.train(was_training)
        if raw is None:
            raise BenchmarkConfigError("lm-eval returned no results (not the main process)")
        result = result_from_lm_eval(raw, self.config, wall_time_s=time.perf_counter() - started)
        return result.model_copy(update={"prompt_format": self.prompt_format})


def evaluate_benchmarks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: BenchmarkConfig,
    prompt: PromptSettings | None = None,
) -> BenchmarkResult:
    """Score an in-memory ``model`` on the configured tasks (loads the tasks, then scores).

    To score many models with the same config, build one :class:`BenchmarkRunner` instead.
    """
    started = time.perf_counter()
    result = BenchmarkRunner(config, tokenizer, prompt).score(model)
    return result.model_copy(update={"wall_time_s": time.perf_counter() - started})


def load_checkpoint(
    path: str | Path, *, device: str | None = None, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory (or the local HF cache).

    Raises:
        ModelLoadError: nothing loadable at ``path``.
    """
    _prepare_environment()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = resolve_device(device)
    local = Path(path).expanduser()
    looks_local = local.is_absolute() or str(path).startswith((".", "~")) or local.exists()
    if looks_local and not local.is_dir():
        raise ModelLoadError(f"model directory {local} does not exist")
    source = str(local) if local.is_dir() else str(path)
    dtype = torch.bfloat16 if target.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise ModelLoadError(
            f"cannot load a causal LM from {source} (not a model directory, nor in the local "
            f"Hugging Face cache): {reason}"
        ) from exc
    return cast(Any, model).to(target), tokenizer


def evaluate_checkpoint(
    path: str | Path, config: BenchmarkConfig, *, trust_remote_code: bool = False
) -> BenchmarkResult:
    """Load the checkpoint at ``path`` (model + tokenizer) and score it."""
    model, tokenizer = load_checkpoint(
        path, device=config.device, trust_remote_code=trust_remote_code
    )
    return evaluate_benchmarks(model, tokenizer, config)
