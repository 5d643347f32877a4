"""Humayun et al. 2024: local complexity over training, grokking at a large initial scale, delayed robustness."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .._plotting import subplots
from ..analysis.phases import LC_PATTERN, curve_replicates, detect_phases
from ..config import RunConfig
from .base import (
    SEEDS,
    Claim,
    Evidence,
    Experiment,
    Finding,
    by_seed,
    holm,
    make_config,
    over_seeds,
    run_tables,
    seeded,
)


def configs(size: str, seeds: tuple[int, ...] = SEEDS) -> list[RunConfig]:
    if size == "quick":
        data = {"name": "mnist5k", "n_train": 1000, "probe_size": 200, "probe_splits": ["test"]}
        steps, points, pgd = 20000, 200, {"n_points": 500, "eps": 0.3}
    elif size == "medium":
        # the mechanism: the final LC descent (region migration) comes late, after the fit of the
        # training set; longer training than quick (the paper: 1e5 steps), three seeds, and robust
        # accuracy at radii set by the data's own scale rather than one eps in input units
        data = {"name": "mnist5k", "n_train": 1000, "probe_size": 300, "probe_splits": ["test"]}
        steps, points = MEDIUM_STEPS, 200
        pgd = {"n_points": 300, "eps": 0.1, "eps_unit": "data", "eps_grid": [0.05, 0.25, 0.5, 1.0]}
    else:
        return _full()
    configs = []
    for scale in (1.0, 4.0):
        configs.append(_mnist_mlp(f"init-scale-{scale:g}", scale, data, steps, points, pgd))
    if size != "medium":
        return configs
    runs = seeded(configs, seeds)
    # pictures of the linear regions for the first seed only: they show the same thing for every seed
    return [
        c
        if c.seed == seeds[0]
        else make_config({**c.model_dump(), "probes": {**c.probes.model_dump(), "measures": ["lc", "pgd"]}})
        for c in runs
    ]


def _mnist_mlp(name: str, scale: float, data: dict, steps: int, points: int, pgd: dict) -> RunConfig:
    """Humayun et al.'s MNIST MLP (width 200, depth 4, 1,000 training points, MSE on one-hot targets, AdamW lr 1e-3,
    weight decay 0.01, batch 200) with its parameters scaled by ``scale`` at initialisation."""
    return make_config(
        {
            "name": name,
            "data": data,
            "model": {"name": "mlp", "params": {"width": 200, "depth": 4}, "init_scale": scale},
            "train": {
                "optimizer": "adamw",
                "lr": 1e-3,
                "weight_decay": 0.01,
                "batch_size": 200,
                "steps": steps,
                "loss": "mse",
                "epochs": None,
            },
            "schedule": {"kind": "log", "num": 30},
            "probes": {
                "measures": ["lc", "pgd", "partition"],
                "layers": [],
                "partition": {"pictures": 4},
                "lc": {
                    "radius": 1.0,
                    "n_directions": 25,
                    "n_points": points,
                    "splits": ["train", "test", "random", "boundary"],
                },
                "pgd": pgd,
            },
        }
    )


def _full() -> list[RunConfig]:
    """Humayun et al.'s two setups. MNIST: the MLP at both initial scales for 1e5 steps on 1,000 training points,
    robust accuracy at the medium size's radii (multiples of the data scale, fixed before any run; eps 0.3 in
    standardised units gave no robustness at all). CIFAR-10: a pre-activation ResNet-18 of width 16 without
    BatchNorm, AdamW lr 1e-3, batch 256, 5e5 steps, log-spaced checkpoints, LC with 20 directions at radius 0.005 on
    1,024 points, PGD at eps 50/255 of the pixel range (and a grid of smaller radii)."""
    mnist = {"name": "mnist", "n_train": 1000, "probe_size": 1000, "probe_splits": ["test"]}
    pgd = {"n_points": 500, "eps": 0.1, "eps_unit": "data", "eps_grid": [0.05, 0.25, 0.5, 1.0]}
    configs = [_mnist_mlp(f"mnist-init-scale-{s:g}", s, mnist, 100000, 1000, pgd) for s in (1.0, 4.0)]
    configs.append(
        make_config(
            {
                "name": "cifar10-resnet18-w16",
                "data": {"name": "cifar10", "probe_size": 1024, "probe_splits": ["train", "test"]},
                "model": {"name": "resnet", "params": {"width": 16, "batch_norm": False, "preact": True}},
                "train": {"optimizer": "adamw", "lr": 1e-3, "batch_size": 256, "steps": 500000, "epochs": None},
                "schedule": {"kind": "log", "num": 40},
                "probes": {
                    "measures": ["lc", "pgd"],
                    "layers": [],
                    "lc": {
                        "radius": 0.005,
                        "n_directions": 20,
                        "n_points": 1024,
                        "splits": ["train", "test", "random"],
                    },
                    "pgd": {
                        "n_points": 500,
                        "eps": 50 / 255,
                        "eps_unit": "pixel",
                        "eps_grid": [2 / 255, 8 / 255, 16 / 255],
                    },
                },
            }
        )
    )
    return configs


#: Training steps of the medium size (the paper trains 1e5; this fits 30 minutes on 2 cores).
MEDIUM_STEPS = 40000

# The claims, each with its effect, direction and smallest effect that counts (fixed before any run; base.Claim).
_PHASES = Claim("LC descends, ascends, then descends again ({name}).", "pattern")
_GROK = Claim(
    "With a large initial scale the net grokks: train accuracy ~1 early, test accuracy rising much later.",
    "rise of test accuracy after train accuracy first reaches 0.99 (0 unless half of it comes after twice that step)",
    0.2,
)
_COINCIDE = Claim(
    "Delayed generalization coincides with the final LC descent (regions migrate away from the data).",
    "log(1 + step of test accuracy's half-rise) - log(1 + step the final LC descent starts)",
    0.0,
)
_ROBUST = Claim(
    "Adversarial robustness arrives late, after generalization (delayed robustness; {name}).",
    "log(1 + step of robust accuracy's half-rise) - log(1 + step of test accuracy's half-rise), half-rises "
    "interpolated in log(1 + step); robust accuracy at the radius fixed before the runs",
    float(np.log(2)),
)
_MIGRATE = Claim(
    "Late in training the linear regions migrate to the decision boundary: "
    "LC at the boundary rises relative to LC at the data ({name}).",
    "rise of LC(boundary points) / LC(training points) from the step the training set is fitted to the end",
    0.1,
)


CLAIMS = (_PHASES, _GROK, _COINCIDE, _ROBUST, _MIGRATE)

#: For the results page, by claim (not part of the frozen rules): what the paper reports (as summarised in the
#: project's METHODS.md; the paper's figures give its numbers) and the control each finding is measured against.
CONTEXT = {
    _PHASES: ("LC descends, ascends, then descends again over training", "every simpler curve, flat phases included"),
    _GROK: ("grokking: test accuracy rises long after the training set is fitted", "the step the fit is reached"),
    _COINCIDE: ("the final LC descent coincides with delayed generalization", "-"),
    _ROBUST: (
        "adversarial robustness arrives late (delayed robustness)",
        "clean test accuracy's own half-rise (robust accuracy is bounded by it); eps fixed before the runs",
    ),
    _MIGRATE: (
        "in the final phase regions migrate away from the data, towards the decision boundary",
        "LC at the training points",
    ),
}
#: The least rise (end minus start) of an accuracy curve whose half-rise is measured.
LEAST_RISE = 0.05


def half_rise(steps: np.ndarray, values: np.ndarray) -> float | None:
    """The step at which a curve first reaches half of its rise from its first to its last value, interpolated
    linearly in log(1 + step) between checkpoints; None when it rises less than :data:`LEAST_RISE`."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    start, end = values[0], values[-1]
    if end - start < LEAST_RISE:
        return None
    level = start + 0.5 * (end - start)
    i = int(np.argmax(values >= level))
    if i == 0:
        return float(steps[0])
    x0, x1 = np.log1p(steps[i - 1]), np.log1p(steps[i])
    frac = (level - values[i - 1]) / (values[i] - values[i - 1])
    return float(np.expm1(x0 + frac * (x1 - x0)))


def _delayed_robustness(r: pd.DataFrame) -> Evidence:
    """The lag between robust and clean test accuracy's half-rises (robust accuracy is bounded by the clean one, so
    a late robust rise alone would only say that accuracy rises late)."""
    robust = r[(r.metric == "robust_acc") & (r.layer == "") & (r.split == "test")].sort_values("step")
    clean = r[(r.metric == "test_acc") & (r.layer == "")].sort_values("step")
    clean = clean[clean.step.isin(robust.step)]
    if robust.empty or clean.empty:
        return Evidence("no robust accuracy measured")
    at_robust, at_clean = half_rise(robust.step, robust.value), half_rise(clean.step, clean.value)
    text = (
        f"test accuracy {clean.value.iloc[0]:.2f} -> {clean.value.iloc[-1]:.2f}, robust accuracy "
        f"{robust.value.iloc[0]:.2f} -> {robust.value.iloc[-1]:.2f}"
    )
    if at_robust is None or at_clean is None:
        return Evidence(text + f"; {'robust' if at_robust is None else 'test'} accuracy rose less than {LEAST_RISE}")
    return Evidence(
        text + f"; half-rises at step {at_clean:.0f} (test) and {at_robust:.0f} (robust)",
        float(np.log1p(at_robust) - np.log1p(at_clean)),
    )


def findings(folder: Path) -> list[Finding]:
    evidence: dict[Claim, dict[int, Evidence]] = {}
    for seed, runs in by_seed(run_tables(folder)).items():
        for claim, e in _evidence(runs).items():
            evidence.setdefault(claim, {})[seed] = e
    return holm([over_seeds(claim, by) for claim, by in evidence.items()])


def _evidence(runs: dict[str, pd.DataFrame]) -> dict[Claim, Evidence]:
    """The findings measured on one seed's runs, in the order they are reported."""
    out: dict[Claim, Evidence] = {}
    for name in sorted(runs):  # medium and quick: init-scale-1, init-scale-4; full: the MNIST pair and CIFAR-10
        r = runs[name]
        lc = r[(r.metric == "lc") & (r.layer == "") & (r.split == "train")].sort_values("step")
        acc = r[(r.layer == "") & r.split.isin(["train", "test"])].pivot_table(
            index="step", columns="metric", values="value"
        )
        acc_err = r[(r.layer == "") & r.split.isin(["train", "test"])].pivot_table(
            index="step", columns="metric", values="error"
        )
        try:
            d1, up, d2 = detect_phases(lc.step, lc.value, LC_PATTERN, errors=lc.error, replicates=curve_replicates(lc))
            conf = d2.confidence
            text = (
                f"descent to step {d1.end_step} (90% interval {up.start_interval[0]}-{up.start_interval[1]}), "
                f"ascent to step {up.end_step} ({d2.start_interval[0]}-{d2.start_interval[1]}), descent after "
                f"(confidence {conf:.2f}"
                + ("" if d2.chi2_dof is None else f"; fit chi2/dof {d2.chi2_dof:.2g}")
                + f", errors {d2.errors})"
            )
            out[_PHASES.format(name=name)] = Evidence(text, confidence=conf)
        except ValueError:
            d2 = None
            out[_PHASES.format(name=name)] = Evidence("no descent-ascent-descent fit", confidence=0.0)
        if ((r.metric == "lc") & (r.split == "boundary")).any():  # the CIFAR run does not measure at the boundary
            out[_MIGRATE.format(name=name)] = _migration(r, acc["train_acc"])
        out[_ROBUST.format(name=name)] = _delayed_robustness(r)
        if not name.endswith("init-scale-4"):
            continue
        train_acc, test_acc = acc["train_acc"], acc["test_acc"]
        if not (train_acc >= 0.99).any():
            out[_GROK] = Evidence("train accuracy never reached 0.99", 0.0)
            continue
        first_fit = int(train_acc.index[np.argmax(train_acc.values >= 0.99)])
        at_fit = float(test_acc.loc[first_fit])
        final = float(test_acc.iloc[-1])
        rise_error = float(np.hypot(acc_err["test_acc"].loc[first_fit], acc_err["test_acc"].iloc[-1]))
        rise_step = int(test_acc.index[np.argmax(test_acc.values >= at_fit + 0.5 * (final - at_fit))])
        late = rise_step > 2 * first_fit
        out[_GROK] = Evidence(
            f"train accuracy >= 0.99 at step {first_fit} (test {at_fit:.3f}); test accuracy {final:.3f} at the end, "
            f"half of that rise by step {rise_step} ({'late' if late else 'not late'}: twice the fit's step is "
            f"{2 * first_fit})",
            float(final - at_fit) if late else 0.0,
            rise_error,
        )
        if d2 is not None:
            low, high = d2.start_interval
            out[_COINCIDE] = Evidence(
                f"final descent begins at step {d2.start_step} (90% interval {low}-{high}); test accuracy half-way "
                f"rise at step {rise_step}",
                float(np.log1p(rise_step) - np.log1p(d2.start_step)),
                # the descent's start from its 90% interval (as if normal); the half-rise's step taken as exact
                float(max(np.log1p(high) - np.log1p(low), 1e-9) / (2 * 1.645)),
            )
    return out


def _migration(r: pd.DataFrame, train_acc: pd.Series) -> Evidence:
    """Regions migrating to the decision boundary, as a number: LC at boundary points over LC at the training points,
    when the net first fits its training set and at the end (errors by the delta method)."""
    lc = r[(r.metric == "lc") & (r.layer == "")].pivot_table(index="step", columns="split", values=["value", "error"])
    if ("value", "boundary") not in lc.columns or not (train_acc >= 0.99).any():
        return Evidence("no boundary points measured, or the training set never fitted")
    ratio = lc["value", "boundary"] / lc["value", "train"]
    error = ratio * np.hypot(
        lc["error", "boundary"] / lc["value", "boundary"], lc["error", "train"] / lc["value", "train"]
    )
    fit = int(train_acc.index[np.argmax(train_acc.values >= 0.99)])
    end = int(ratio.dropna().index[-1])
    if fit not in ratio.dropna().index:
        return Evidence(f"no boundary LC at step {fit}")
    rise = ratio[end] - ratio[fit]
    both = float(np.hypot(error[end], error[fit]))
    return Evidence(
        f"LC(boundary) / LC(train points): {ratio[fit]:.2f} +- {error[fit]:.2f} at step {fit} (training set fitted), "
        f"{ratio[end]:.2f} +- {error[end]:.2f} at step {end}",
        float(rise),
        both,
    )


def summary(folder: Path) -> Figure:
    """LC at each kind of point and the accuracies over training: one panel per run, a row per
    initial scale and a column per seed; robust accuracy at each eps measured (red, darker for larger eps)."""
    seeds = by_seed(run_tables(folder))
    settings = list(dict.fromkeys(name for runs in seeds.values() for name in runs))
    fig, axes = subplots(len(settings), len(seeds), figsize=(7 * len(seeds), 4.4 * len(settings)), squeeze=False)
    for col, (seed, runs) in enumerate(seeds.items()):
        for row, name in enumerate(settings):
            ax = axes[row][col]
            if name not in runs:
                ax.set_visible(False)
                continue
            _draw_run(ax, name if len(seeds) == 1 else f"{name}, seed {seed}", runs[name])
    fig.tight_layout()
    return fig


def _draw_run(ax, title: str, r: pd.DataFrame) -> None:  # noqa: ANN001 - matplotlib axes
    for split in ("train", "test", "random", "boundary"):
        c = r[(r.metric == "lc") & (r.layer == "") & (r.split == split)].sort_values("step")
        ax.plot(c.step, c.value, "o-", ms=2, label=f"LC, {split} points")
    train_lc = r[(r.metric == "lc") & (r.layer == "") & (r.split == "train")].sort_values("step")
    try:
        for phase in detect_phases(
            train_lc.step, train_lc.value, LC_PATTERN, errors=train_lc.error, replicates=curve_replicates(train_lc)
        )[1:]:
            ax.axvline(phase.start_step, color="0.5", ls=":", lw=1)
            ax.axvspan(*phase.start_interval, color="0.5", alpha=0.12, lw=0)
    except ValueError:
        pass
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("local complexity (neurons)")
    twin = ax.twinx()
    for metric, style in (("train_acc", "k-"), ("test_acc", "k--")):
        c = r[(r.metric == metric) & (r.layer == "")].sort_values("step")
        twin.plot(c.step, c.value, style, lw=1.2, label=metric)
    robust = r[(r.metric == "robust_acc") & (r.layer == "")]
    unit = "data scale" if "pgd_data_scale" in set(r.metric) else "input units"
    splits = sorted(robust.split.unique(), key=lambda s: float(s.split("=")[1]) if "@eps=" in s else -1.0)
    for i, split in enumerate(splits):
        c = robust[robust.split == split].sort_values("step")
        label = (
            "robust acc (configured eps)" if "@eps=" not in split else f"robust acc, eps {split.split('=')[1]} x {unit}"
        )
        twin.plot(
            c.step,
            c.value,
            "-.",
            color=matplotlib.colormaps["Reds"](0.45 + 0.5 * i / max(len(splits) - 1, 1)),
            lw=1.2,
            label=label,
        )
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("accuracy")
    ax.set_title(f"{title}: LC and accuracy over training (dotted: phase changes)", fontsize=9)
    ax.legend(loc="upper left", fontsize=6)
    twin.legend(loc="lower right", fontsize=6)
    ax.grid(alpha=0.3)


EXPERIMENT = Experiment(
    "humayun2024",
    "Humayun et al. 2024, Deep networks always grok and here is why",
    configs,
    findings,
    summary,
    CLAIMS,
)
