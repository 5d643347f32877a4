"""Tan et al. 2024: the ID of the last hidden layer over training under several optimizers and label noise; CSR; alpha
and robustness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .._plotting import subplots
from ..analysis.phases import ID_PATTERN, curve_replicates, detect_phases
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
    value,
)


def configs(size: str, seeds: tuple[int, ...] = SEEDS) -> list[RunConfig]:
    if size == "medium":
        return _medium(seeds)
    if size == "quick":
        data = {"name": "mnist5k", "probe_size": 1000, "probe_splits": ["train", "test"]}
        regimes = {
            "sgd": {"optimizer": "sgd", "lr": 0.01, "batch_size": 64},
            "momentum": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64},
            "adam": {"optimizer": "adam", "lr": 0.001, "batch_size": 64},
        }
        epochs, noise, model = 6, [0.5], {"name": "ansuini_cnn"}
    else:
        data = {"name": "cifar10", "probe_size": 10000, "probe_splits": ["train", "test"]}
        regimes = {
            "sgd-small": {"optimizer": "sgd", "lr": 1e-3, "batch_size": 512},
            "sgd-large": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32},
            "momentum-small": {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "batch_size": 512},
            "momentum-large": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 32},
            "adam-small": {"optimizer": "adam", "lr": 1e-5, "batch_size": 512},
            "adam-large": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32},
        }
        epochs, noise, model = 200, [0.1, 0.3, 0.5, 0.7, 0.9], {"name": "resnet"}
    probes = {
        "measures": ["twonn", "alpha", "csr", "pgd"],
        "layers": ["relu3", "output"] if size == "quick" else ["layer4", "fc"],
        "csr": {"n_points": 500},
        "pgd": {"n_points": 500, "eps": 0.1},
    }
    configs = [
        make_config(
            {
                "name": name,
                "data": data,
                "model": model,
                "train": {**t, "epochs": epochs, "weight_decay": 1e-4},
                "schedule": {"kind": "log", "num": 12},
                "probes": probes,
            }
        )
        for name, t in regimes.items()
    ]
    configs += [
        make_config(
            {
                "name": f"momentum-noise-{p}",
                "data": {**data, "label_noise": p},
                "model": model,
                "train": {
                    **regimes["momentum" if size == "quick" else "momentum-large"],
                    "epochs": epochs,
                    "weight_decay": 1e-4,
                },
                "schedule": {"kind": "log", "num": 12},
                "probes": probes,
            }
        )
        for p in noise
    ]
    return configs


def _medium(seeds: tuple[int, ...] = SEEDS) -> list[RunConfig]:
    """Two setups, three seeds each, checkpoints dense in the first epochs (log-spaced, 24).

    The mechanism: the expansion is an early phase of feature learning, over in the
    first few hundred steps, so the quick size's 12 checkpoints over 6 epochs of an
    easy task can miss it. Setup 1: a VGG-style net (6 convolutions) on Fashion-MNIST
    under three optimizer regimes and 50% label noise. Setup 2: an MLP on MNIST-1D
    (a harder task whose input is 40 numbers, not an image).
    """
    vgg = {"name": "vgg", "params": {"width": 16, "depth": 3}}
    fashion = {"name": "fashion_mnist", "n_train": 10000, "probe_size": 1000, "probe_splits": ["train", "test"]}
    regimes = {
        "sgd": {"optimizer": "sgd", "lr": 0.02, "batch_size": 128},
        "momentum": {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch_size": 128},
        "adam": {"optimizer": "adam", "lr": 0.001, "batch_size": 128},
    }
    probes = {
        "measures": ["twonn", "alpha", "csr", "pgd"],
        "layers": ["pool", "classifier"],
        "csr": {"n_points": 200},
        "pgd": {"n_points": 200, "eps": 0.1},
    }
    schedule = {"kind": "log", "num": 24}
    configs = [
        make_config(
            {
                "name": f"vgg-{name}",
                "data": fashion,
                "model": vgg,
                "train": {**t, "epochs": 3, "weight_decay": 1e-4},
                "schedule": schedule,
                "probes": probes,
            }
        )
        for name, t in regimes.items()
    ]
    configs.append(
        make_config(
            {
                "name": "vgg-momentum-noise-0.5",
                "data": {**fashion, "label_noise": 0.5},
                "model": vgg,
                "train": {**regimes["momentum"], "epochs": 3, "weight_decay": 1e-4},
                "schedule": schedule,
                "probes": probes,
            }
        )
    )
    configs.append(
        make_config(
            {
                "name": "mlp1d-momentum",
                "data": {"name": "mnist1d", "probe_size": 1000, "probe_splits": ["train", "test"]},
                "model": {"name": "mlp", "params": {"width": 256, "depth": 4}},
                "train": {
                    "optimizer": "sgd",
                    "lr": 0.02,
                    "momentum": 0.9,
                    "batch_size": 128,
                    "epochs": 30,
                    "weight_decay": 1e-4,
                },
                "schedule": schedule,
                "probes": {**probes, "layers": ["relu3", "out"]},
            }
        )
    )
    return seeded(configs, seeds)


# The claims, each with its effect, direction and smallest effect that counts (fixed before any run; base.Claim).
_EXPAND = Claim("Over training the ID of the representation first expands, then compresses{where}.", "pattern")
_CSR = Claim(
    "The ID curve tracks hypothesis complexity measured by the critical sample ratio.",
    "Pearson r between ID and CSR over the checkpoints, mean over a seed's runs",
    0.3,
)
_ALPHA = Claim(
    "At the end of training the spectrum exponent alpha predicts adversarial robustness (higher alpha, more robust).",
    "Pearson r between alpha and robust accuracy across a seed's runs at the end of training",
    0.5,
)


CLAIMS = (_EXPAND, _CSR, _ALPHA)


def _last_hidden(r: pd.DataFrame) -> str:
    """The last hidden layer a run measured (the layer before the output)."""
    layers = [la for la in dict.fromkeys(r[(r.metric == "twonn") & (r.layer != "")].layer) if la != "input"]
    return layers[-2] if len(layers) > 1 else layers[-1]


def _r_error(r: float, n: int) -> float | None:
    """Standard error of a Pearson r over n points (the delta method on Fisher's z), None below 4 points."""
    return float((1 - r**2) / np.sqrt(n - 3)) if n > 3 and np.isfinite(r) else None


def _run_evidence(r: pd.DataFrame) -> tuple[Evidence, float | None, float, float]:
    """One run: its expansion-then-compression evidence, its ID-CSR correlation, its final alpha and robust accuracy."""
    layer = _last_hidden(r)
    curve = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == "train")].sort_values("step")
    try:
        expansion, compression = detect_phases(
            curve.step, curve.value, ID_PATTERN, errors=curve.error, replicates=curve_replicates(curve)
        )
        low, high = compression.start_interval
        fit = "" if compression.chi2_dof is None else f"; fit chi2/dof {compression.chi2_dof:.2g}"
        ev = Evidence(
            f"peak at step {expansion.end_step} (90% interval {low}-{high}; confidence {compression.confidence:.2f}"
            f"{fit}, errors {compression.errors})",
            confidence=compression.confidence,
        )
    except ValueError:
        ev = Evidence("no expansion-then-compression fit", confidence=0.0)
    csr = r[(r.metric == "csr") & (r.layer == "")].sort_values("step")
    merged = curve.merge(csr, on="step", suffixes=("_id", "_csr"))
    corr = (
        float(np.corrcoef(merged.value_id, merged.value_csr)[0, 1])
        if len(merged) > 2 and merged.value_csr.std() > 0
        else None
    )
    last = int(r.step.max())
    return ev, corr, value(r, "alpha", layer, last, "test"), value(r, "robust_acc", "", last, "test")


def findings(folder: Path) -> list[Finding]:
    seeds = by_seed(run_tables(folder))
    per_setting: dict[str, dict[int, Evidence]] = {}
    csr_ev: dict[int, Evidence] = {}
    alpha_ev: dict[int, Evidence] = {}
    for seed, runs in seeds.items():
        corrs, alphas, robust = [], [], []
        for name, r in runs.items():
            ev, corr, alpha, rob = _run_evidence(r)
            per_setting.setdefault(name, {})[seed] = ev
            if corr is not None:
                corrs.append(corr)
            alphas.append(alpha)
            robust.append(rob)
        csr_ev[seed] = (
            Evidence(
                "Pearson r between ID and CSR over checkpoints, per run: " + ", ".join(f"{c:.2f}" for c in corrs),
                float(np.mean(corrs)),
            )
            if corrs
            else Evidence("CSR was 0 at every checkpoint")
        )
        r_end = float(np.corrcoef(alphas, robust)[0, 1]) if len(alphas) > 2 else float("nan")
        alpha_ev[seed] = Evidence(
            "end of training, per run: alpha "
            + ", ".join(f"{a:.2f}" for a in alphas)
            + "; robust accuracy "
            + ", ".join(f"{b:.3f}" for b in robust)
            + f"; Pearson r = {r_end:.2f}",
            r_end if np.isfinite(r_end) else None,
            _r_error(r_end, len(alphas)),
        )
    settings = [over_seeds(_EXPAND.format(where=f" ({name})"), by) for name, by in per_setting.items()]
    corrected = holm([*settings, over_seeds(_CSR, csr_ev), over_seeds(_ALPHA, alpha_ev)])
    held = [name for name, f in zip(per_setting, corrected) if f.verdict == "holds"]
    overall = Finding(
        _EXPAND.format(where=", across optimizers and label noise").text,
        f"holds (after the correction) in {len(held)} of {len(settings)} settings"
        + (f": {', '.join(held)}" if held else "")
        + "; the verdict of the settings' majority (no test of its own)",
        "holds" if len(held) >= len(settings) / 2 else "inconclusive",
        seeds=len(seeds) if len(seeds) > 1 else None,
        rule="holds in at least half of the settings",
    )
    return [overall, *corrected]


def summary(folder: Path) -> Figure:
    seeds = by_seed(run_tables(folder))
    fig, (ax_id, ax_csr, ax_ar) = subplots(1, 3, figsize=(16, 4.6))
    settings = list(dict.fromkeys(name for runs in seeds.values() for name in runs))
    for seed, runs in seeds.items():
        for name, r in runs.items():
            colour, first = f"C{settings.index(name) % 10}", seed == min(seeds)
            layer = _last_hidden(r)
            c = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == "train")].sort_values("step")
            ax_id.plot(
                c.step,
                c.value,
                "o-" if first else "-",
                ms=3,
                lw=1.2 if first else 0.7,
                alpha=1 if first else 0.5,
                color=colour,
                label=f"{name} ({layer})" if first else None,
            )
            c = r[(r.metric == "csr") & (r.layer == "")].sort_values("step")
            ax_csr.plot(
                c.step,
                c.value,
                "o-" if first else "-",
                ms=3,
                lw=1.2 if first else 0.7,
                alpha=1 if first else 0.5,
                color=colour,
                label=name if first else None,
            )
            last = int(r.step.max())
            a = r[(r.metric == "alpha") & (r.layer == layer) & (r.step == last) & (r.split == "test")].value
            b = r[(r.metric == "robust_acc") & (r.step == last) & (r.split == "test")].value
            if len(a) and len(b):
                ax_ar.scatter(a, b, s=40, color=colour, label=name if first else None)
    more = f" (seed {min(seeds)} with markers, other seeds thin)" if len(seeds) > 1 else ""
    for ax, title, ylabel in (
        (ax_id, "ID of the last hidden layer over training" + more, "TwoNN ID"),
        (ax_csr, "critical sample ratio over training", "CSR"),
    ):
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    ax_ar.set_xlabel("alpha of the last hidden layer at the end")
    ax_ar.set_ylabel("robust accuracy (PGD) at the end")
    ax_ar.set_title("spectrum exponent against robustness")
    ax_ar.legend(fontsize=7)
    for ax in (ax_id, ax_csr, ax_ar):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    "tan2024",
    "Tan et al. 2024, Low-dimensional intrinsic dimension reveals a phase transition in gradient-based learning",
    configs,
    findings,
    summary,
    CLAIMS,
)
