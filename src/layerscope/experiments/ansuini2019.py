"""Ansuini et al. 2019: the ID across depth, trained, untrained and with random labels; ID against accuracy; PC-ID."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .._plotting import subplots
from ..config import RunConfig
from .base import (
    Claim,
    Evidence,
    Experiment,
    Finding,
    by_seed,
    decide,
    holm,
    make_config,
    measure,
    not_measurable,
    over_seeds,
    profile,
    profile_errors,
    run_tables,
    seeded,
    value,
)

_A_LAYERS = ["pool1", "pool2", "relu3", "output"]

#: Medium size: Fashion-MNIST (Debian package dataset-fashion-mnist), 10,000 training images.
_M_DATA = {"name": "fashion_mnist", "n_train": 10000, "probe_size": 500, "probe_splits": ["train"]}
_M_TRAIN = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch_size": 128, "epochs": 4}
# The architecture family of the medium size: (setting, model, training overrides, last hidden layer).
# VGG- and ResNet-style nets 9 and 10 layers deep for the profile across depth; with an MLP on
# 1,000 images, a wider MLP and the small CNN they span about 15 points of test accuracy.
_M_FAMILY = [
    ("mlp-small-data", {"name": "mlp", "params": {"width": 128, "depth": 2}}, {"n_train": 1000}, "relu1"),
    ("mlp", {"name": "mlp", "params": {"width": 256, "depth": 3}}, {}, "relu2"),
    ("cnn", {"name": "ansuini_cnn"}, {}, "relu3"),
    ("vgg", {"name": "vgg", "params": {"width": 16, "depth": 4}}, {}, "pool"),
    ("resnet", {"name": "resnet", "params": {"width": 16, "blocks": [1, 1, 1, 1]}}, {}, "pool"),
]
_LAST_HIDDEN = {name: layer for name, _, _, layer in _M_FAMILY}


def configs(size: str) -> list[RunConfig]:
    if size == "medium":
        return _medium()
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
        make_config(
            {
                "name": f"width-{w}",
                "data": data,
                "model": {"name": "ansuini_cnn", "params": {"width": w}},
                "train": train,
                "schedule": {"kind": "log", "num": 8},
                "probes": {**probes, "save_weights": w == 1.0},
            }
        )
        for w in widths
    ]
    configs.append(
        make_config(
            {
                "name": "random-labels",
                "data": {**data, "label_noise": 1.0},
                "model": {"name": "ansuini_cnn"},
                "train": train,
                "schedule": {"kind": "log", "num": 8},
                "probes": probes,
            }
        )
    )
    return configs


def _medium() -> list[RunConfig]:
    """Deeper nets on harder data, three seeds each (the mechanism: early layers of a deep net
    can expand the representation beyond the input's ID before the later layers compress it)."""
    configs = []
    for name, model, data, last in _M_FAMILY:
        deep = name in ("vgg", "resnet")
        probes = {
            "measures": ["twonn", "pc_id"] if deep else ["twonn"],
            "layers": None if deep else [last, "output"],
        }
        configs.append(
            make_config(
                {
                    "name": name,
                    "data": {**_M_DATA, **data},
                    "model": model,
                    "train": _M_TRAIN,
                    "schedule": {"kind": "epoch"},
                    "probes": probes,
                }
            )
        )
    # random labels: the paper's nets fit them; on 2,000 images 60 epochs let the VGG memorise them
    # (4 epochs on 10,000, as for the true labels, left it at chance on its own training set)
    configs.append(
        make_config(
            {
                "name": "vgg-random-labels",
                "data": {**_M_DATA, "n_train": 2000, "label_noise": 1.0},
                "model": _M_FAMILY[3][1],
                "train": {**_M_TRAIN, "epochs": 60},
                "schedule": {"kind": "log", "num": 2},
                "probes": {"measures": ["twonn"]},
            }
        )
    )
    return seeded(configs)


# The claims, each with its effect, direction and smallest effect that counts (fixed before any run; base.Claim).
_SMALL = Claim(
    "The ID of every layer is orders of magnitude below its width.",
    "log10(width / TwoNN ID), the least over the hidden layers",
    1.0,
)
_HUNCH = Claim(
    "Across depth the ID first rises, then falls (the hunchback{where}).",
    "highest hidden-layer ID above the higher of the two ends, relative to the input's ID",
    0.1,
)
_COMPRESS = Claim(
    "The trained net's profile ends lower than the untrained one's (the last hidden layer compresses).",
    "(untrained - trained) / untrained TwoNN ID of the last hidden layer",
    0.1,
)
_FLAT = Claim(
    "An untrained network gives a flat profile.",
    "range of the untrained ID profile across layers / its mean",
    0.25,
    -1,
)
_RANDOM = Claim(
    "Training on random labels removes the compression of the last hidden layer.",
    "(random-label - true-label) / true-label TwoNN ID of the last hidden layer",
    0.1,
)
_PC_HIGH = Claim("PC-ID is far higher than TwoNN.", "PC-ID / TwoNN ID, the least over the hidden layers", 3.0)
_PC_BLIND = Claim(
    "PC-ID cannot tell a trained network from an untrained one (it changes less than TwoNN at the last hidden layer).",
    "|log(trained / untrained)| of TwoNN minus that of PC-ID, last hidden layer",
    0.1,
)
_ACC = Claim(
    "The last hidden layer's ID predicts test accuracy: lower ID, higher accuracy{where}.",
    "Pearson r of the last hidden layer's ID against test accuracy",
    -0.3,
    -1,
)


def _layers(r: pd.DataFrame, metric: str = "twonn") -> list[str]:
    """The measured layers in model order, the input first."""
    rows = r[(r.metric == metric) & (r.layer != "") & (r.split == "train")]
    return list(dict.fromkeys(rows.sort_values("step", kind="stable").layer))


def _profile_evidence(
    trained: pd.DataFrame, random_runs: pd.DataFrame | None, last_hidden: str, where: str
) -> dict[Claim, Evidence]:
    """The profile findings on one trained run (and its random-label twin), for one seed; each effect with its
    standard error propagated from the stored errors (first order)."""
    last = int(trained.step.max())
    layers = _layers(trained)
    if "input" in layers:
        layers = ["input", *[layer for layer in layers if layer != "input"]]
    hidden = [layer for layer in layers if layer not in ("input", "output")]
    h = slice(1, len(layers) - 1) if layers[-1] == "output" else slice(1, len(layers))
    widths = profile(trained, last, "train", layers, "n_features")
    id_trained, e_trained = profile_errors(trained, last, "train", layers)
    id_untrained, e_untrained = profile_errors(trained, 0, "train", layers)
    k = layers.index(last_hidden)
    out: dict[Claim, Evidence] = {}
    ratio = np.log10(widths[h] / id_trained[h])
    i = int(np.argmin(ratio))
    out[_SMALL] = Evidence(
        "hidden-layer TwoNN / width: "
        + ", ".join(f"{layer} {d:.1f}/{w:.0f}" for layer, d, w in zip(hidden, id_trained[h], widths[h])),
        float(ratio[i]),
        float(e_trained[h][i] / (id_trained[h][i] * np.log(10))),
    )
    peak = int(np.argmax(id_trained[h])) + 1
    end = 0 if id_trained[0] >= id_trained[-1] else len(layers) - 1
    out[_HUNCH.format(where=where)] = Evidence(
        "trained profile "
        + " -> ".join(f"{v:.1f}" for v in id_trained)
        + f"; maximum at {layers[int(np.argmax(id_trained))]}",
        float((id_trained[peak] - id_trained[end]) / id_trained[0]),
        float(np.hypot(e_trained[peak], e_trained[end]) / id_trained[0]),
    )
    t, u = id_trained[k], id_untrained[k]
    out[_COMPRESS] = Evidence(
        f"last hidden layer ({last_hidden}): trained {t:.1f}, untrained {u:.1f}",
        float((u - t) / u),
        float(np.hypot(e_trained[k], t / u * e_untrained[k]) / u),
    )
    lo, hi = int(np.argmin(id_untrained)), int(np.argmax(id_untrained))
    spread = np.ptp(id_untrained) / np.mean(id_untrained)
    out[_FLAT] = Evidence(
        "untrained profile " + " -> ".join(f"{v:.1f}" for v in id_untrained) + f" (range {spread:.0%} of the mean)",
        float(spread),
        float(np.hypot(e_untrained[lo], e_untrained[hi]) / np.mean(id_untrained)),
    )
    if random_runs is not None:
        end_step = int(random_runs.step.max())
        id_random, e_random = measure(random_runs, "twonn", last_hidden, end_step, "train")
        fitted = value(random_runs, "train_acc", "", end_step, "train")
        out[_RANDOM] = Evidence(
            f"{last_hidden} with random labels {id_random:.1f} (their training accuracy {fitted:.2f}), with true "
            f"labels {t:.1f}",
            float((id_random - t) / t),
            float(np.hypot(e_random, id_random / t * e_trained[k]) / t),
        )
    if "pc_id" in set(trained.metric):
        pc_t, pe_t = profile_errors(trained, last, "train", layers, "pc_id")
        pc_u, pe_u = profile_errors(trained, 0, "train", layers, "pc_id")
        ratios = pc_t[h] / id_trained[h]
        j = int(np.argmin(ratios))
        out[_PC_HIGH] = Evidence(
            "hidden layers, trained: PC-ID "
            + ", ".join(f"{v:.0f}" for v in pc_t[h])
            + "; TwoNN "
            + ", ".join(f"{v:.1f}" for v in id_trained[h]),
            float(ratios[j]),
            float(ratios[j] * np.hypot(pe_t[h][j] / pc_t[h][j], e_trained[h][j] / id_trained[h][j])),
        )
        change_pc, change_id = abs(np.log(pc_t[k] / pc_u[k])), abs(np.log(t / u))
        out[_PC_BLIND] = Evidence(
            f"{last_hidden}: PC-ID trained {pc_t[k]:.0f} / untrained {pc_u[k]:.0f}; TwoNN trained {t:.1f} "
            f"/ untrained {u:.1f}",
            float(change_id - change_pc),
            float(
                np.sqrt(
                    (e_trained[k] / t) ** 2
                    + (e_untrained[k] / u) ** 2
                    + (pe_t[k] / pc_t[k]) ** 2
                    + (pe_u[k] / pc_u[k]) ** 2
                )
            ),
        )
    return out


def _correlation(ids: list[float], accs: list[float], what: str, claim: Claim, seeds: int | None) -> Finding:
    """Pearson r of ID against accuracy, its 95% Fisher interval, tested each way against the claim's smallest r."""
    from scipy import stats

    n = len(ids)
    if n < 4 or np.ptp(ids) == 0 or np.ptp(accs) == 0:
        return not_measurable(claim, f"{n} {what}: too few, or no spread", seeds)
    r = float(np.corrcoef(ids, accs)[0, 1])
    z, se = np.arctanh(np.clip(r, -0.999999, 0.999999)), 1 / np.sqrt(n - 3)
    low, high = np.tanh(z - 1.96 * se), np.tanh(z + 1.96 * se)
    stat = claim.direction * (z - np.arctanh(claim.smallest)) / se  # Fisher's z against the smallest r that counts
    measured = (
        f"{n} {what}: ID {min(ids):.1f} to {max(ids):.1f}, test accuracy {min(accs):.3f} to {max(accs):.3f}; "
        f"Pearson r = {r:.2f} (95% interval {low:.2f} to {high:.2f}; counts below {claim.smallest:g})"
    )
    return decide(claim, measured, float(stats.norm.sf(stat)), float(stats.norm.cdf(stat)), seeds, r)


def findings(folder: Path) -> list[Finding]:
    runs = run_tables(folder)
    seeds = by_seed(runs)
    if "width-1.0" in runs:  # quick or full: Ansuini et al.'s CNN at several widths, one seed
        ev = _profile_evidence(runs["width-1.0"], runs["random-labels"], "relu3", "")
        out = [over_seeds(claim, {0: e}) for claim, e in ev.items()]
        ids, accs = [], []
        for name, r in runs.items():
            if name.startswith("width-"):
                step = int(r.step.max())
                ids.append(value(r, "twonn", "relu3", step, "train"))
                accs.append(value(r, "test_acc", "", step, "test"))
        out.append(_correlation(ids, accs, "nets of different widths", _ACC.format(where=""), None))
        return holm(out)
    evidence: dict[Claim, dict[int, Evidence]] = {}
    for seed, group in seeds.items():
        for net, random_runs in (("vgg", group.get("vgg-random-labels")), ("resnet", None)):
            for claim, e in _profile_evidence(group[net], random_runs, _LAST_HIDDEN[net], f"; {net}").items():
                if "hunchback" not in claim.text:
                    claim = Claim(
                        f"{'VGG' if net == 'vgg' else 'ResNet'}: {claim.text}",
                        claim.effect,
                        claim.smallest,
                        claim.direction,
                    )
                evidence.setdefault(claim, {})[seed] = e
    out = [over_seeds(claim, by) for claim, by in evidence.items()]
    # ID against accuracy: across the architecture family at the end of training ...
    ids, accs = [], []
    for group in seeds.values():
        for net, layer in _LAST_HIDDEN.items():
            if net in group:
                r = group[net]
                step = int(r.step.max())
                ids.append(value(r, "twonn", layer, step, "train"))
                accs.append(value(r, "test_acc", "", step, "test"))
    out.append(
        _correlation(
            ids,
            accs,
            f"nets ({len(_LAST_HIDDEN)} architectures x {len(seeds)} seeds) at the end of training",
            _ACC.format(where=", across architectures"),
            len(seeds),
        )
    )
    # ... and across training lengths: the deep nets after each epoch, one correlation per run, over seeds
    per_run: dict[int, Evidence] = {}
    for seed, group in seeds.items():
        rs = []
        for net in ("vgg", "resnet"):
            r = group[net]
            steps = sorted(s for s in r.step.unique() if s > 0)
            ids = [value(r, "twonn", _LAST_HIDDEN[net], s, "train") for s in steps]
            accs = [value(r, "test_acc", "", s, "test") for s in steps]
            rs.append(float(np.corrcoef(ids, accs)[0, 1]) if np.ptp(ids) > 0 and np.ptp(accs) > 0 else 0.0)
        per_run[seed] = Evidence(
            ", ".join(f"{net} r = {c:.2f}" for net, c in zip(("vgg", "resnet"), rs)), float(np.mean(rs))
        )
    out.append(
        over_seeds(
            _ACC.format(
                where=", across training lengths (Pearson r over the epochs of each deep net, mean of the two)"
            ),
            per_run,
        )
    )
    return holm(out)


def summary(folder: Path) -> Figure:
    runs = run_tables(folder)
    if "width-1.0" not in runs:
        return _medium_summary(runs)
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
            ax_acc.scatter(
                r[(r.metric == "twonn") & (r.layer == "relu3") & (r.step == s) & (r.split == "train")].value,
                r[(r.metric == "test_acc") & (r.step == s)].value,
                s=50,
            )
            ax_acc.annotate(
                name,
                (
                    float(
                        r[
                            (r.metric == "twonn") & (r.layer == "relu3") & (r.step == s) & (r.split == "train")
                        ].value.iloc[0]
                    ),
                    float(r[(r.metric == "test_acc") & (r.step == s)].value.iloc[0]),
                ),
                fontsize=8,
            )
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


def _medium_summary(runs: dict[str, pd.DataFrame]) -> Figure:
    """Profiles of the deep nets (mean and s.d. over seeds), ID against accuracy over the family,
    PC-ID against TwoNN."""
    seeds = by_seed(runs)
    fig, (ax_p, ax_acc, ax_pc) = subplots(1, 3, figsize=(16, 4.6))

    def band(ax, nets, metric, step_of, style, label, colour):  # noqa: ANN001, ANN202
        curves = []
        for group in seeds.values():
            if nets in group:
                r = group[nets]
                layers = ["input", *[la for la in _layers(r) if la != "input"]]
                curves.append(profile(r, step_of(r), "train", layers, metric))
        if not curves:
            return
        c = np.array(curves)
        depth = np.linspace(0, 1, c.shape[1])
        ax.plot(depth, c.mean(0), style, color=colour, ms=4, label=f"{label} (n={len(c)})")
        ax.fill_between(depth, c.mean(0) - c.std(0), c.mean(0) + c.std(0), color=colour, alpha=0.15, lw=0)

    end, start = (lambda r: int(r.step.max())), (lambda r: 0)
    curves = {
        ax_p: [
            ("vgg", "twonn", end, "o-", "VGG trained", "C0"),
            ("vgg", "twonn", start, "o--", "VGG untrained", "C0"),
            ("vgg-random-labels", "twonn", end, "o:", "VGG random labels", "C2"),
            ("resnet", "twonn", end, "s-", "ResNet trained", "C1"),
            ("resnet", "twonn", start, "s--", "ResNet untrained", "C1"),
        ],
        ax_pc: [
            ("vgg", "pc_id", end, "o-", "PC-ID trained", "C3"),
            ("vgg", "pc_id", start, "o--", "PC-ID untrained", "C3"),
            ("vgg", "twonn", end, "o-", "TwoNN trained", "C0"),
            ("vgg", "twonn", start, "o--", "TwoNN untrained", "C0"),
        ],
    }
    for ax, drawn in curves.items():
        for curve in drawn:
            band(ax, *curve)
    ax_p.set_xlabel("relative depth (input to output)")
    ax_p.set_ylabel("TwoNN intrinsic dimension")
    ax_p.set_title("ID across depth (mean, band: 1 s.d. over seeds)")
    ax_p.legend(fontsize=7)
    for i, (net, layer) in enumerate(_LAST_HIDDEN.items()):
        pts = [
            (
                value(g[net], "twonn", layer, int(g[net].step.max()), "train"),
                value(g[net], "test_acc", "", int(g[net].step.max()), "test"),
            )
            for g in seeds.values()
            if net in g
        ]
        if pts:
            ax_acc.scatter(*zip(*pts), s=40, color=f"C{i}", label=net)
    ax_acc.set_xlabel("last hidden layer ID (end of training)")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("last hidden layer ID against accuracy, every net and seed")
    ax_acc.legend(fontsize=7)
    ax_pc.set_yscale("log")
    ax_pc.set_xlabel("relative depth (VGG)")
    ax_pc.set_title("PC-ID (90% variance) against TwoNN, VGG")
    ax_pc.legend(fontsize=7)
    for ax in (ax_p, ax_acc, ax_pc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    "ansuini2019",
    "Ansuini et al. 2019, Intrinsic dimension of data representations in deep neural networks",
    configs,
    findings,
    summary,
)
