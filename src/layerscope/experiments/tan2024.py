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
from ..probes.geometry import BN_PROBE
from .base import (
    SEEDS,
    Claim,
    Evidence,
    Experiment,
    Finding,
    by_seed,
    correlation,
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
    if size == "full":
        return _full()
    data = {"name": "mnist5k", "probe_size": 1000, "probe_splits": ["train", "test"]}
    regimes = {
        "sgd": {"optimizer": "sgd", "lr": 0.01, "batch_size": 64},
        "momentum": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64},
        "adam": {"optimizer": "adam", "lr": 0.001, "batch_size": 64},
    }
    probes = {
        "measures": ["twonn", "alpha", "csr", "pgd"],
        "layers": ["relu3", "output"],
        "csr": {"n_points": 500},
        "pgd": {"n_points": 500, "eps": 0.1},
    }
    configs = [
        make_config(
            {
                "name": name,
                "data": data,
                "model": {"name": "ansuini_cnn"},
                "train": {**t, "epochs": 6, "weight_decay": 1e-4},
                "schedule": {"kind": "log", "num": 12},
                "probes": probes,
            }
        )
        for name, t in regimes.items()
    ]
    configs.append(
        make_config(
            {
                "name": "momentum-noise-0.5",
                "data": {**data, "label_noise": 0.5},
                "model": {"name": "ansuini_cnn"},
                "train": {**regimes["momentum"], "epochs": 6, "weight_decay": 1e-4},
                "schedule": {"kind": "log", "num": 12},
                "probes": probes,
            }
        )
    )
    return configs


#: The full size's nets: Tan et al.'s VGG-16 with BatchNorm and ResNet-18, CIFAR versions.
FULL_NETS = {
    "vgg16-bn": {"name": "vgg", "params": {"width": 64, "depth": 5, "convs": [2, 2, 3, 3, 3], "max_channels": 512}},
    "resnet18": {"name": "resnet", "params": {"width": 64}},
}
#: The six optimizer regimes of Tan et al. (METHODS.md, training setups).
FULL_REGIMES = {
    "sgd-small": {"optimizer": "sgd", "lr": 1e-3, "batch_size": 512},
    "sgd-large": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32},
    "momentum-small": {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "batch_size": 512},
    "momentum-large": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 32},
    "adam-small": {"optimizer": "adam", "lr": 1e-5, "batch_size": 512},
    "adam-large": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32},
}
FULL_NOISE = (0.1, 0.3, 0.5, 0.7, 0.9)


def _full() -> list[RunConfig]:
    """Tan et al.'s setup: VGG-16-bn and ResNet-18 on CIFAR-10 with random crops and flips, 200 epochs, weight decay
    1e-4, the six optimizer regimes and label noise 0.1-0.9 (under SGD with momentum, lr 0.1, batch 32); the ID of
    the pooled penultimate representation (512 features) on 10,000 training and 10,000 test inputs at every epoch,
    BatchNorm read both with the running statistics and with statistics re-estimated on the probe inputs. PGD at
    eps 8/255 of the pixel range and CSR at Tan et al.'s radius (input units) on 500 test inputs; alpha fitted over
    ranks 10-256 of the 512 (the upper half of the ranks is where a finite sample's spectrum bends away)."""
    data = {"name": "cifar10", "probe_size": 10000, "probe_splits": ["train", "test"]}
    probes = {
        "measures": ["twonn", "alpha", "csr", "pgd"],
        "layers": ["pool", "output"],
        "batchnorm": "both",
        "estimator_params": {"alpha": {"n_min": 10, "n_max": 256}},
        "csr": {"n_points": 500},
        "pgd": {"n_points": 500, "eps": 8 / 255, "eps_unit": "pixel"},
    }
    configs = []
    for net, model in FULL_NETS.items():
        runs = {f"{net}-{name}": (t, 0.0) for name, t in FULL_REGIMES.items()}
        runs |= {f"{net}-momentum-large-noise-{p}": (FULL_REGIMES["momentum-large"], p) for p in FULL_NOISE}
        for name, (t, noise) in runs.items():
            configs.append(
                make_config(
                    {
                        "name": name,
                        "data": {**data, "label_noise": noise},
                        "model": model,
                        "train": {**t, "epochs": 200, "weight_decay": 1e-4, "augment": ["crop", "flip"]},
                        "schedule": {"kind": "epoch"},
                        "probes": probes,
                    }
                )
            )
    return configs


#: The medium size's VGG (six convolutions of 16-64 channels; ``pool`` is its pooled penultimate representation,
#: 64 features, as Tan et al. measure) with and without BatchNorm.
_M_VGG = {"name": "vgg", "params": {"width": 16, "depth": 3}}
_M_VGG_NOBN = {"name": "vgg", "params": {"width": 16, "depth": 3, "batch_norm": False}}
#: 2,000 Fashion-MNIST training images (16 steps an epoch at batch 128), 30 epochs, a checkpoint per epoch.
_M_DATA = {"name": "fashion_mnist", "n_train": 2000, "probe_size": 500, "probe_splits": ["train", "test"]}
_M_EPOCHS = 30
#: CSR at a radius where flips are measurable: Tan et al.'s 0.3/255 flipped 0-14 of 200 points on these standardised
#: inputs, 0.3 nearly all; at 0.03 (step and noise in Tan et al.'s proportions) a VGG trained on 2,000 images flips
#: 10-27% of 300 test points over 30 epochs (a pilot on seed 0, before the exploratory round).
_M_CSR = {"n_points": 300, "radius": 0.03, "step": 0.025, "noise": 0.02}


def _medium(seeds: tuple[int, ...] = SEEDS) -> list[RunConfig]:
    """Tan et al.'s claims each beside its control, three seeds per setting, a checkpoint per epoch for 30 epochs
    (Tan et al. measure once per epoch): a VGG with BatchNorm under SGD with momentum, Adam, 50% label noise and
    the paper's slow regime (plain SGD, small learning rate, large batch), read both with its running BatchNorm
    statistics and with statistics re-estimated on the probe inputs (the running ones warm up over the first steps,
    which alone raises the ID in eval mode); the same VGG without BatchNorm under Adam, beside the BatchNorm one
    under Adam (with SGD it trains too slowly: at lr 0.02 not at all, at 0.005 with momentum it stays at chance for
    17 epochs); an MLP on MNIST-1D. The pooled penultimate layer is measured; alpha is fitted over ranks 3-32 of its
    64 (the upper half of a 64-wide spectrum from 500 points is where it bends away); CSR at a radius where flips
    are measurable.
    """
    vgg_probes = {
        "measures": ["twonn", "alpha", "csr", "pgd"],
        "layers": ["pool", "classifier"],
        "batchnorm": "both",
        "estimator_params": {"alpha": {"n_min": 3, "n_max": 32}},
        "csr": _M_CSR,
        "pgd": {"n_points": 200, "eps": 0.1},
    }
    momentum = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch_size": 128}
    settings = {
        "vgg-momentum": (_M_VGG, momentum, 0.0),
        "vgg-adam": (_M_VGG, {"optimizer": "adam", "lr": 0.001, "batch_size": 128}, 0.0),
        "vgg-momentum-noise-0.5": (_M_VGG, momentum, 0.5),
        "vgg-sgd-slow": (_M_VGG, {"optimizer": "sgd", "lr": 0.005, "batch_size": 500}, 0.0),
        "vgg-nobn-adam": (_M_VGG_NOBN, {"optimizer": "adam", "lr": 0.001, "batch_size": 128}, 0.0),
    }
    configs = [
        make_config(
            {
                "name": name,
                "data": {**_M_DATA, "label_noise": noise},
                "model": model,
                "train": {**t, "epochs": _M_EPOCHS, "weight_decay": 1e-4},
                "schedule": {"kind": "epoch"},
                "probes": vgg_probes,
            }
        )
        for name, (model, t, noise) in settings.items()
    ]
    configs.append(
        make_config(
            {
                "name": "mlp1d-momentum",
                "data": {"name": "mnist1d", "probe_size": 500, "probe_splits": ["train", "test"]},
                "model": {"name": "mlp", "params": {"width": 256, "depth": 4}},
                "train": {**momentum, "epochs": _M_EPOCHS, "weight_decay": 1e-4},
                "schedule": {"kind": "epoch"},
                "probes": {
                    **vgg_probes,
                    "layers": ["relu3", "out"],
                    "estimator_params": {"alpha": {"n_min": 3, "n_max": 128}},
                },
            }
        )
    )
    return seeded(configs, seeds)


# The claims, each with its effect, direction and smallest effect that counts (fixed before any run; base.Claim).
_EXPAND = Claim(
    "Over training the ID of the representation first expands, then compresses{where}.",
    "pattern",
)
_EXPAND_BN = Claim(
    "Control: the expansion-then-compression is the representation's, not BatchNorm's warming statistics: found "
    "with the statistics re-estimated on the probe inputs{where}.",
    "pattern",
)
_CSR = Claim(
    "The ID curve tracks hypothesis complexity measured by the critical sample ratio.",
    "Pearson r between ID and CSR over the checkpoints from the first epoch, mean over a seed's runs whose CSR is "
    "measurable (>= 0.02 on average: 6 of the 300 points)",
    0.3,
)
_ALPHA = Claim(
    "At the end of training the spectrum exponent alpha predicts adversarial robustness (higher alpha, more robust).",
    "Pearson r between alpha and robust accuracy over every run of the round at the end of training, with its sign",
    0.3,
)
CLAIMS = (_EXPAND, _EXPAND_BN, _CSR, _ALPHA)

#: For the results page, by claim (not part of the frozen rules): what the paper reports (as summarised in the
#: project's METHODS.md; the paper's figures give its numbers) and the control each finding is measured against.
CONTEXT = {
    _EXPAND: (
        "over training the ID first expands, then compresses, across architectures, optimizers and data sets",
        "checkpoints from the first epoch on (Tan et al. measure once per epoch); the rise must span >= 2 of them",
    ),
    _EXPAND_BN: (
        "(not in the paper: a control)",
        "BatchNorm statistics re-estimated on the probe inputs at each checkpoint; a VGG without BatchNorm",
    ),
    _CSR: ("the ID curve tracks hypothesis complexity measured by CSR", "runs whose CSR is measurable"),
    _ALPHA: (
        "alpha predicts adversarial robustness only at the end of training",
        "the sign counts; every run of the round one point",
    ),
}
#: An expansion counts when its rise spans at least this many checkpoints after the first epoch's.
MIN_RISE_CHECKPOINTS = 2
#: CSR is measurable on a run when it averages at least this over the checkpoints (6 of the medium size's 300).
MIN_CSR = 0.02


def _last_hidden(r: pd.DataFrame) -> str:
    """The last hidden layer a run measured (the layer before the output)."""
    layers = [la for la in dict.fromkeys(r[(r.metric == "twonn") & (r.layer != "")].layer) if la != "input"]
    return layers[-2] if len(layers) > 1 else layers[-1]


def _epoch_one(r: pd.DataFrame) -> int:
    """The step of the first epoch's end (the first checkpoint whose epoch is >= 1; 0 if the run has none)."""
    epochs = r[["step", "epoch"]].drop_duplicates().sort_values("step")
    later = epochs[epochs.epoch >= 1 - 1e-9]
    return int(later.step.iloc[0]) if len(later) else 0


def _expansion(r: pd.DataFrame, split: str) -> Evidence:
    """The expansion-then-compression test on the last hidden layer's ID from the first epoch on, on ``split``;
    an expansion whose rise spans fewer than :data:`MIN_RISE_CHECKPOINTS` checkpoints after the first epoch's
    does not count (confidence 0)."""
    layer = _last_hidden(r)
    first = _epoch_one(r)
    curve = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == split) & (r.step >= first)].sort_values("step")
    if len(curve) < 6:
        return Evidence(f"{len(curve)} checkpoints from the first epoch on: too few for a phase test")
    try:
        expansion, compression = detect_phases(
            curve.step, curve.value, ID_PATTERN, errors=curve.error, replicates=curve_replicates(curve)
        )
    except ValueError:
        return Evidence("no expansion-then-compression fit", confidence=0.0)
    rise = int(((curve.step > first) & (curve.step <= expansion.end_step)).sum())
    low, high = compression.start_interval
    fit = "" if compression.chi2_dof is None else f"; fit chi2/dof {compression.chi2_dof:.2g}"
    text = (
        f"from step {first} (epoch 1): peak at step {expansion.end_step} (90% interval {low}-{high}; confidence "
        f"{compression.confidence:.2f}{fit}, errors {compression.errors}); the rise spans {rise} checkpoints"
    )
    if rise < MIN_RISE_CHECKPOINTS:
        return Evidence(text + f" (fewer than {MIN_RISE_CHECKPOINTS}: no expansion)", confidence=0.0)
    return Evidence(text, confidence=compression.confidence)


def _csr_correlation(r: pd.DataFrame) -> tuple[float | None, str]:
    """Pearson r of the last hidden layer's ID against CSR over the checkpoints from the first epoch, and a note;
    None when CSR is not measurable (below :data:`MIN_CSR` on average)."""
    layer = _last_hidden(r)
    first = _epoch_one(r)
    curve = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == "train") & (r.step >= first)]
    csr = r[(r.metric == "csr") & (r.layer == "") & (r.step >= first)]
    merged = curve.merge(csr, on="step", suffixes=("_id", "_csr"))
    if len(merged) < 4:
        return None, "fewer than 4 checkpoints with CSR"
    mean = float(merged.value_csr.mean())
    if not mean >= MIN_CSR or merged.value_csr.std() == 0:
        return None, f"CSR {mean:.3f} on average: not measurable"
    return float(np.corrcoef(merged.value_id, merged.value_csr)[0, 1]), f"CSR {mean:.3f} on average"


def _final(r: pd.DataFrame, metric: str, layer: str) -> float:
    """A metric on the test split at the run's last step; NaN when the run did not measure it there (a probe that
    failed on a diverged net)."""
    try:
        return value(r, metric, layer, int(r.step.max()), "test")
    except ValueError:
        return float("nan")


def findings(folder: Path) -> list[Finding]:
    seeds = by_seed(run_tables(folder))
    per_setting: dict[str, dict[int, Evidence]] = {}
    bn_control: dict[str, dict[int, Evidence]] = {}
    csr_ev: dict[int, Evidence] = {}
    alphas, robust = [], []
    for seed, runs in seeds.items():
        corrs, notes = [], []
        for name, r in runs.items():
            per_setting.setdefault(name, {})[seed] = _expansion(r, "train")
            if (r.split == f"train{BN_PROBE}").any():
                bn_control.setdefault(name, {})[seed] = _expansion(r, f"train{BN_PROBE}")
            corr, note = _csr_correlation(r)
            notes.append(f"{name}: {'r = ' + format(corr, '.2f') if corr is not None else ''} ({note})")
            if corr is not None:
                corrs.append(corr)
            alpha, rob = _final(r, "alpha", _last_hidden(r)), _final(r, "robust_acc", "")
            if np.isfinite(alpha) and np.isfinite(rob):
                alphas.append(alpha)
                robust.append(rob)
        csr_ev[seed] = Evidence("; ".join(notes), float(np.mean(corrs)) if corrs else None)
    settings = [over_seeds(_EXPAND.format(where=f" ({name})"), by) for name, by in per_setting.items()]
    controls = [over_seeds(_EXPAND_BN.format(where=f" ({name})"), by) for name, by in bn_control.items()]
    alpha = correlation(
        alphas,
        robust,
        f"runs ({len(per_setting)} settings x {len(seeds)} seeds) at the end of training",
        _ALPHA,
        len(seeds) if len(seeds) > 1 else None,
        x_name="alpha",
        y_name="robust accuracy",
    )
    corrected = holm([*settings, *controls, over_seeds(_CSR, csr_ev), alpha])
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
            probed = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == f"train{BN_PROBE}")].sort_values("step")
            if len(probed) and first:
                ax_id.plot(probed.step, probed.value, "--", lw=1, color=colour, label=f"{name}, BatchNorm re-estimated")
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
