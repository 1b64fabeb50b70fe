"""Figures of probe curves: response length, reward and KL per step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from evaluators._probe_types import StepMetrics

__all__ = ["plot_probe_curves"]


def plot_probe_curves(
    runs: Sequence[StepMetrics] | Mapping[str, Sequence[StepMetrics]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Save a PNG with three panels (length, reward, KL per step) and return its path.

    Args:
        runs: One probe's steps, or several probes' steps by label (drawn on the same axes).
        path: Where to write the PNG (parent directories are created).
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labelled = dict(runs) if isinstance(runs, Mapping) else {"": list(runs)}
    figure, (length_axis, reward_axis, kl_axis) = plt.subplots(
        1, 3, figsize=(13, 3.8), constrained_layout=True
    )
    for label, steps in labelled.items():
        x = [step.step for step in steps]
        line = length_axis.plot(x, [step.length_mean for step in steps], label=label or "mean")[0]
        length_axis.fill_between(
            x,
            [step.length_p10 for step in steps],
            [step.length_p90 for step in steps],
            color=line.get_color(),
            alpha=0.15,
            label=None if label else "p10-p90",
        )
        reward_axis.plot(x, [step.reward_mean for step in steps], color=line.get_color())
        kl_axis.plot(x, [step.kl for step in steps], color=line.get_color())
    for axis, name in (
        (length_axis, "response length (tokens)"),
        (reward_axis, "reward score"),
        (kl_axis, "KL to reference"),
    ):
        axis.set_xlabel("PPO update")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    length_axis.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
