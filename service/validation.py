"""Checks a sweep spec passes before the service queues it.

The schema itself is checked by pydantic (``SweepSpec``). Here: every path in the spec exists
and lies under one of the configured model roots *after* resolving symlinks and ``..`` (so
neither can escape a root); then the pre-flight every entry point shares
(:func:`sweeps.preflight.check_spec`: checkpoints, shard indexes, tokenizer, reward head,
prompts against the actor's positions, devices, task files and names). The queued spec holds
the resolved absolute paths, so the worker reads exactly what was checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sweeps.exceptions import SweepsError
from sweeps.preflight import check_spec
from sweeps.spec import SweepSpec


class PathNotAllowedError(SweepsError):
    """A path of the sweep spec is missing or lies outside the configured model roots."""


def resolve_under_roots(value: str, roots: Sequence[Path], *, field: str) -> Path:
    """Resolve a spec path and require it under one of ``roots``.

    Relative paths are taken relative to the first root. Containment is checked on the fully
    resolved path (symlinks followed, ``..`` collapsed) before existence, so the answer for a
    path outside the roots never reveals whether it exists.

    Raises:
        PathNotAllowedError: the path is outside every root, or does not exist.
    """
    if not roots:
        raise PathNotAllowedError("no model roots are configured (BAI_SWEEP_MODEL_ROOTS)")
    path = Path(value)
    if not path.is_absolute():
        path = roots[0] / path
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise PathNotAllowedError(f"{field}: cannot resolve {value!r}: {exc}") from None
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise PathNotAllowedError(
            f"{field}: {value!r} lies outside the allowed model roots ({allowed})"
        )
    if not resolved.exists():
        raise PathNotAllowedError(f"{field}: {value!r} does not exist")
    return resolved


def _require_dir(path: Path, value: str, field: str) -> None:
    if not path.is_dir():
        raise PathNotAllowedError(f"{field}: {value!r} is not a directory")


def _require_file(path: Path, value: str, field: str) -> None:
    if not path.is_file():
        raise PathNotAllowedError(f"{field}: {value!r} is not a file")


def validate_spec(
    spec: SweepSpec,
    roots: Sequence[Path],
    *,
    trust_remote_code: bool = False,
    local_devices: bool = True,
) -> SweepSpec:
    """Check what the schema cannot and return the spec with resolved absolute paths.

    Args:
        spec: A schema-valid spec (e.g. a REST body).
        roots: Absolute, resolved model roots (``Settings.resolved_model_roots``).
        trust_remote_code: Allow task YAMLs that run Python.
        local_devices: Trials run on this machine (no Ray cluster configured).

    Raises:
        PathNotAllowedError: a path is outside the roots, missing or of the wrong kind.
        sweeps.preflight.PreflightError: the sweep could never run (the message says why).
    """
    models = spec.models
    base = resolve_under_roots(models.base, roots, field="models.base")
    _require_dir(base, models.base, "models.base")
    sfts = []
    for index, value in enumerate(models.sft):
        path = resolve_under_roots(value, roots, field=f"models.sft[{index}]")
        _require_dir(path, value, f"models.sft[{index}]")
        sfts.append(path)
    reward = None
    if models.reward is not None:
        reward = resolve_under_roots(models.reward, roots, field="models.reward")
        _require_dir(reward, models.reward, "models.reward")
    prompts = resolve_under_roots(models.prompts, roots, field="models.prompts")
    _require_file(prompts, models.prompts, "models.prompts")
    include_paths = []
    for index, include in enumerate(spec.benchmarks.include_path):
        field = f"benchmarks.include_path[{index}]"
        include_path = resolve_under_roots(str(include), roots, field=field)
        _require_dir(include_path, str(include), field)
        include_paths.append(include_path)
    probe = spec.probe
    if probe.reference_model is not None:
        field = "probe.length_reference"
        reference = resolve_under_roots(probe.reference_model, roots, field=field)
        _require_dir(reference, probe.reference_model, field)
        probe = probe.model_copy(update={"length_reference": str(reference)})
    resolved_models = models.model_copy(
        update={
            "base": str(base),
            "sft": [str(path) for path in sfts],
            "reward": None if reward is None else str(reward),
            "prompts": str(prompts),
        }
    )
    resolved_benchmarks = spec.benchmarks.model_copy(update={"include_path": tuple(include_paths)})
    checked = spec.model_copy(
        update={"models": resolved_models, "benchmarks": resolved_benchmarks, "probe": probe}
    )
    check_spec(
        checked,
        trust_remote_code=trust_remote_code,
        local_devices=local_devices,
        builtin_tasks=False,
    )
    return checked
