"""Ansuini et al. 2019: the ID across depth, trained, untrained and with random labels; ID against accuracy; PC-ID."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._plotting import subplots
from ..config import RunConfig
from .base import Experiment, Finding, load_runs, make_config, profile, value

_A_LAYERS = ["pool1", "pool2", "relu3", "output"]


def configs(size: str) -> list[RunConfig]:
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
        make_config({"name": f"width-{w}", "data": data, "model": {"name": "ansuini_cnn", "params": {"width": w}}, "train": train,
              "schedule": {"kind": "log", "num": 8}, "probes": {**probes, "save_weights": w == 1.0}})
        for w in widths
    ]
    configs.append(make_config({"name": "random-labels", "data": {**data, "label_noise": 1.0}, "model": {"name": "ansuini_cnn"}, "train": train,
                         "schedule": {"kind": "log", "num": 8}, "probes": probes}))
    return configs


def findings(folder: Path) -> list[Finding]:
    runs = load_runs(folder)
    trained = runs["width-1.0"]
    last = int(trained.step.max())
    layers = ["input", *_A_LAYERS]
    widths = profile(trained, last, "train", layers, "n_features")
    id_trained = profile(trained, last, "train", layers)
    id_untrained = profile(trained, 0, "train", layers)
    random_runs = runs["random-labels"]
    id_random = profile(random_runs, int(random_runs.step.max()), "train", layers)
    pc_trained = profile(trained, last, "train", layers, "pc_id")
    pc_untrained = profile(trained, 0, "train", layers, "pc_id")
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
            ids.append(value(r, "twonn", "relu3", step, "train"))
            accs.append(value(r, "test_acc", "", step, "test"))
    corr = float(np.corrcoef(ids, accs)[0, 1]) if len(ids) > 2 else float("nan")
    findings.append(Finding("The last hidden layer's ID predicts test accuracy: lower ID, higher accuracy.",
                            f"{len(ids)} nets: ID " + ", ".join(f"{i:.1f}" for i in ids) + "; test accuracy " + ", ".join(f"{a:.3f}" for a in accs) + f"; Pearson r = {corr:.2f}",
                            bool(corr < 0) if np.isfinite(corr) else None))
    return findings


def summary(folder: Path) -> Figure:
    runs = load_runs(folder)
    layers = ["input", "pool1", "pool2", "relu3", "output"]
    fig, (ax_p, ax_acc, ax_pc) = subplots(1, 3, figsize=(15, 4.2))
    depth = np.linspace(0, 1, len(layers))

    def profile(r, step, metric="twonn"):  # noqa: ANN001, ANN202
        rows = r[(r.metric == metric) & (r.step == step) & (r.split == "train")].set_index("layer").value
        return [rows[layer] for layer in layers]

    trained = runs["width-1.0"]
    last = int(trained.step.max())
    ax_p.plot(depth, profile(trained, last), "o-", label="trained")
    ax_p.plot(depth, profile(trained, 0), "s--", label="untrained")
    rl = runs["random-labels"]
    ax_p.plot(depth, profile(rl, int(rl.step.max())), "^:", label="random labels")
    ax_p.set_xticks(depth, layers)
    ax_p.set_xlabel("layer (relative depth)")
    ax_p.set_ylabel("TwoNN intrinsic dimension")
    ax_p.set_title("ID across depth (Ansuini et al. Fig. 2)")
    ax_p.legend()
    for name, r in runs.items():
        if name.startswith("width-"):
            s = int(r.step.max())
            ax_acc.scatter(r[(r.metric == "twonn") & (r.layer == "relu3") & (r.step == s) & (r.split == "train")].value,
                           r[(r.metric == "test_acc") & (r.step == s)].value, s=50)
            ax_acc.annotate(name, (float(r[(r.metric == "twonn") & (r.layer == "relu3") & (r.step == s) & (r.split == "train")].value.iloc[0]),
                                   float(r[(r.metric == "test_acc") & (r.step == s)].value.iloc[0])), fontsize=8)
    ax_acc.set_xlabel("last hidden layer ID")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("last hidden layer ID against accuracy (Fig. 4)")
    ax_pc.plot(depth, profile(trained, last, "pc_id"), "o-", label="PC-ID trained")
    ax_pc.plot(depth, profile(trained, 0, "pc_id"), "s--", label="PC-ID untrained")
    ax_pc.plot(depth, profile(trained, last), "o-", label="TwoNN trained")
    ax_pc.plot(depth, profile(trained, 0), "s--", label="TwoNN untrained")
    ax_pc.set_yscale("log")
    ax_pc.set_xticks(depth, layers)
    ax_pc.set_title("PC-ID (90% variance) against TwoNN (Fig. 6)")
    ax_pc.legend(fontsize=8)
    for ax in (ax_p, ax_acc, ax_pc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment("ansuini2019", "Ansuini et al. 2019, Intrinsic dimension of data representations in deep neural networks", configs, findings, summary)
