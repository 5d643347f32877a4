"""Tan et al. 2024: the ID of the last hidden layer over training under several optimizers and label noise; CSR; alpha and robustness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._plotting import subplots
from ..analysis.phases import ID_PATTERN, THRESHOLD, detect_phases
from ..config import RunConfig
from .base import Experiment, Finding, load_runs, make_config, value


def configs(size: str) -> list[RunConfig]:
    if size == "quick":
        data = {"name": "mnist5k", "probe_size": 1000, "probe_splits": ["train", "test"]}
        regimes = {"sgd": {"optimizer": "sgd", "lr": 0.01, "batch_size": 64},
                   "momentum": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64},
                   "adam": {"optimizer": "adam", "lr": 0.001, "batch_size": 64}}
        epochs, noise, model = 6, [0.5], {"name": "ansuini_cnn"}
    else:
        data = {"name": "cifar10", "probe_size": 10000, "probe_splits": ["train", "test"]}
        regimes = {"sgd-small": {"optimizer": "sgd", "lr": 1e-3, "batch_size": 512}, "sgd-large": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32},
                   "momentum-small": {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "batch_size": 512}, "momentum-large": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 32},
                   "adam-small": {"optimizer": "adam", "lr": 1e-5, "batch_size": 512}, "adam-large": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32}}
        epochs, noise, model = 200, [0.1, 0.3, 0.5, 0.7, 0.9], {"name": "resnet"}
    probes = {"measures": ["twonn", "alpha", "csr", "pgd"], "layers": ["relu3", "output"] if size == "quick" else ["layer4", "fc"],
              "csr": {"n_points": 500}, "pgd": {"n_points": 500, "eps": 0.1}}
    configs = [make_config({"name": name, "data": data, "model": model, "train": {**t, "epochs": epochs, "weight_decay": 1e-4},
                     "schedule": {"kind": "log", "num": 12}, "probes": probes}) for name, t in regimes.items()]
    configs += [make_config({"name": f"momentum-noise-{p}", "data": {**data, "label_noise": p}, "model": model,
                      "train": {**regimes["momentum" if size == "quick" else "momentum-large"], "epochs": epochs, "weight_decay": 1e-4},
                      "schedule": {"kind": "log", "num": 12}, "probes": probes}) for p in noise]
    return configs


def findings(folder: Path) -> list[Finding]:
    runs = load_runs(folder)
    layer = "relu3" if "relu3" in set(next(iter(runs.values())).layer) else "layer4"
    found, peaks, corr_csr, alphas, robust = [], [], [], [], []
    for name, r in runs.items():
        curve = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == "train")].sort_values("step")
        try:
            expansion, compression = detect_phases(curve.step, curve.value, ID_PATTERN, errors=curve.error)
            ok = compression.confidence >= THRESHOLD
            low, high = compression.start_interval
            peaks.append(f"{name}: peak at step {expansion.end_step} (90% interval {low}-{high}; confidence {compression.confidence:.2f})")
        except ValueError:
            ok = False
            peaks.append(f"{name}: no expansion-then-compression fit")
        found.append(ok)
        csr = r[(r.metric == "csr") & (r.layer == "")].sort_values("step")
        merged = curve.merge(csr, on="step", suffixes=("_id", "_csr"))
        if len(merged) > 2 and merged.value_csr.std() > 0:
            corr_csr.append(float(np.corrcoef(merged.value_id, merged.value_csr)[0, 1]))
        last = int(r.step.max())
        alphas.append(value(r, "alpha", layer, last, "test"))
        robust.append(value(r, "robust_acc", "", last, "test"))
    corr_end = float(np.corrcoef(alphas, robust)[0, 1]) if len(alphas) > 2 else float("nan")
    return [
        Finding("Over training the ID of the representation first expands, then compresses, across optimizers and label noise.",
                "; ".join(peaks), bool(np.mean(found) >= 0.5)),
        Finding("The ID curve tracks hypothesis complexity measured by the critical sample ratio.",
                "Pearson r between ID and CSR over checkpoints, per run: " + ", ".join(f"{c:.2f}" for c in corr_csr) if corr_csr else "CSR was 0 at every checkpoint",
                bool(np.mean(corr_csr) > 0) if corr_csr else None),
        Finding("At the end of training the spectrum exponent alpha predicts adversarial robustness.",
                "end of training, per run: alpha " + ", ".join(f"{a:.2f}" for a in alphas) + "; robust accuracy " + ", ".join(f"{b:.3f}" for b in robust) + f"; Pearson r = {corr_end:.2f}",
                bool(abs(corr_end) > 0.5) if np.isfinite(corr_end) else None),
    ]


def summary(folder: Path) -> Figure:
    runs = load_runs(folder)
    fig, (ax_id, ax_csr, ax_ar) = subplots(1, 3, figsize=(15, 4.2))
    layer = "relu3" if "relu3" in set(next(iter(runs.values())).layer) else "layer4"
    for name, r in runs.items():
        c = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == "train")].sort_values("step")
        ax_id.plot(c.step, c.value, "o-", ms=3, label=name)
        c = r[(r.metric == "csr") & (r.layer == "")].sort_values("step")
        ax_csr.plot(c.step, c.value, "o-", ms=3, label=name)
        last = int(r.step.max())
        a = r[(r.metric == "alpha") & (r.layer == layer) & (r.step == last) & (r.split == "test")].value
        b = r[(r.metric == "robust_acc") & (r.step == last)].value
        if len(a) and len(b):
            ax_ar.scatter(a, b, s=50)
            ax_ar.annotate(name, (float(a.iloc[0]), float(b.iloc[0])), fontsize=8)
    for ax, title, ylabel in ((ax_id, f"ID of {layer} over training", "TwoNN ID"), (ax_csr, "critical sample ratio over training", "CSR")):
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
    ax_ar.set_xlabel(f"alpha of {layer} at the end")
    ax_ar.set_ylabel("robust accuracy (PGD) at the end")
    ax_ar.set_title("spectrum exponent against robustness")
    for ax in (ax_id, ax_csr, ax_ar):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment("tan2024", "Tan et al. 2024, Low-dimensional intrinsic dimension reveals a phase transition in gradient-based learning", configs, findings, summary)
