"""Ansuini et al. 2019: the ID across depth, trained, untrained and with random labels; ID against accuracy; PC-ID."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .._plotting import subplots
from ..config import RunConfig
from ..measure import MeasureConfig
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
    measure,
    over_seeds,
    profile,
    profile_errors,
    run_tables,
    seeded,
    value,
)

_A_LAYERS = ["pool1", "pool2", "relu3", "output"]

#: Medium size: Fashion-MNIST (Debian package dataset-fashion-mnist), 10,000 training images; every net of the
#: family measured on one common held-out probe set (500 test images, the same for every net and seed).
_M_DATA = {"name": "fashion_mnist", "n_train": 10000, "probe_size": 500, "probe_splits": ["test"], "probe_seed": 0}
_M_TRAIN = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch_size": 128, "epochs": 4}
# The architecture family of the medium size: (setting, model, data overrides, last hidden layer).
# VGG- and ResNet-style nets 9 and 10 layers deep for the profile across depth; with MLPs (one on 1,000
# images) and the small CNN at two widths the family spans about 15 points of test accuracy.
_M_FAMILY = [
    ("mlp-small-data", {"name": "mlp", "params": {"width": 128, "depth": 2}}, {"n_train": 1000}, "relu1"),
    ("mlp-narrow", {"name": "mlp", "params": {"width": 64, "depth": 3}}, {}, "relu2"),
    ("mlp", {"name": "mlp", "params": {"width": 256, "depth": 3}}, {}, "relu2"),
    ("cnn-narrow", {"name": "ansuini_cnn", "params": {"width": 0.25}}, {}, "relu3"),
    ("cnn", {"name": "ansuini_cnn"}, {}, "relu3"),
    ("vgg", {"name": "vgg", "params": {"width": 16, "depth": 4}}, {}, "pool"),
    ("resnet", {"name": "resnet", "params": {"width": 16, "blocks": [1, 1, 1, 1]}}, {}, "pool"),
]
_LAST_HIDDEN = {name: layer for name, _, _, layer in _M_FAMILY}
#: The deep nets whose profiles across depth are the hunchback findings.
_DEEP = ("vgg", "resnet")
#: Seed offset of the untrained twins: another initialisation of the same net, measured on the same probe inputs.
UNTRAINED_TWIN_SEED = 100


def configs(size: str, seeds: tuple[int, ...] = SEEDS) -> list[RunConfig]:
    if size == "medium":
        return _medium(seeds)
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


def _medium(seeds: tuple[int, ...] = SEEDS) -> list[RunConfig]:
    """Deeper nets on harder data, three seeds each (the mechanism: early layers of a deep net
    can expand the representation beyond the input's ID before the later layers compress it), each claim
    beside its control:

    - the hunchback against the untrained profile of the same net, and an untrained twin (another
      initialisation, 1 step, the same probe inputs) through the same rule as the control that must not pass;
    - random labels against a true-label twin: the same VGG, the same 2,000 images, 60 epochs each (on 2,000
      images 60 epochs let the VGG memorise random labels; 4 epochs on 10,000 left it at chance);
    - ID against accuracy over a family of seven architectures measured on one common held-out probe set.
    """
    configs = []
    for name, model, data, last in _M_FAMILY:
        deep = name in _DEEP
        probes = {
            "measures": ["twonn", "pc_id"] if deep else ["twonn"],
            "layers": None if deep else [last, "output"],
        }
        raw = {"data": {**_M_DATA, **data}, "model": model, "probes": probes}
        configs.append(make_config({**raw, "name": name, "train": _M_TRAIN, "schedule": {"kind": "epoch"}}))
        if deep:
            configs.append(
                make_config(
                    {
                        **raw,
                        "name": f"{name}-untrained",
                        "train": {**_M_TRAIN, "epochs": None, "steps": 1},
                        "schedule": {"kind": "log", "num": 2},
                    }
                )
            )
    for name, noise in (("vgg-random-labels", 1.0), ("vgg-true-labels", 0.0)):
        configs.append(
            make_config(
                {
                    "name": name,
                    "data": {**_M_DATA, "n_train": 2000, "label_noise": noise, "probe_splits": ["train"]}
                    | {"probe_seed": None},
                    "model": _M_FAMILY[5][1],
                    "train": {**_M_TRAIN, "epochs": 60},
                    "schedule": {"kind": "log", "num": 2},
                    "probes": {"measures": ["twonn"]},
                }
            )
        )
    return [
        c.model_copy(update={"seed": c.seed + UNTRAINED_TWIN_SEED})
        if c.name.rpartition("-seed")[0].endswith("-untrained")
        else c
        for c in seeded(configs, seeds)
    ]


# The claims, each with its effect, direction and smallest effect that counts (fixed before any run; base.Claim).
_SMALL = Claim(
    "The ID of every layer is orders of magnitude below its width.",
    "log10(width / TwoNN ID), the least over the hidden layers",
    1.0,
)
_HUNCH = Claim(
    "Training makes the hunchback: across depth the ID first rises, then falls, beyond the untrained net's profile"
    "{where}.",
    "H(trained) - H(untrained), H = the highest hidden-layer ID above the higher of the input's and the last hidden "
    "layer's ID, relative to the input's ID (the output's width caps its ID, trained or not)",
    0.1,
)
_HUNCH_CONTROL = Claim(
    "Control: an untrained net judged by the same hunchback rule against another initialisation of it (the paper: "
    "no hunchback without training; this must not hold{where}).",
    "H(untrained twin) - H(untrained), H as for the hunchback",
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
    "(random-label - true-label twin) / true-label TwoNN ID of the last hidden layer: the same net, images and "
    "epochs; measurable when the net fits >= 90% of its random labels",
    0.1,
)
#: The training accuracy on random labels below which their net's geometry is not a fitted random-label net's.
RANDOM_FIT = 0.9
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
CLAIMS = (_SMALL, _HUNCH, _HUNCH_CONTROL, _COMPRESS, _FLAT, _RANDOM, _PC_HIGH, _PC_BLIND, _ACC)

#: For the results page, by claim (not part of the frozen rules): what the paper reports (as summarised in the
#: project's METHODS.md; the paper's figures give its numbers) and the control each finding is measured against.
CONTEXT = {
    _SMALL: ("trained CNNs: every layer's ID orders of magnitude below its width", "the layer's width"),
    _HUNCH: (
        "the ID first rises, then falls towards the output (the hunchback); untrained profiles are flat",
        "the same net untrained (step 0), same rule, same probe inputs",
    ),
    _HUNCH_CONTROL: (
        "no hunchback without training",
        "an untrained twin (another initialisation) in the trained net's place: must not hold",
    ),
    _COMPRESS: ("the last hidden layers compress: far lower ID than the input or the untrained net", "step 0"),
    _FLAT: ("untrained networks give a flat profile", "-"),
    _RANDOM: (
        "nets trained on random labels lose the hunchback (no compression at the last hidden layer)",
        "a true-label twin on the same images for the same epochs",
    ),
    _PC_HIGH: ("PC-ID is far higher than TwoNN", "-"),
    _PC_BLIND: ("PC-ID cannot tell trained from untrained nets", "TwoNN's change between the same two nets"),
    _ACC: (
        "the last hidden layer's ID predicts test accuracy (lower ID, better accuracy)",
        "every net on one common held-out probe set; the architecture is the unit",
    ),
}


def _split(r: pd.DataFrame) -> str:
    """The probe split a run's profiles are on: ``train`` (quick size, random-label pair), ``test`` (medium
    family: one common held-out probe set), or a measured net's own (``probe``)."""
    splits = set(r[r.metric == "twonn"].split)
    return next((s for s in ("train", "test") if s in splits), min(splits, default="train"))


def _layers(r: pd.DataFrame, metric: str = "twonn") -> list[str]:
    """The measured layers in model order, the input first."""
    rows = r[(r.metric == metric) & (r.layer != "") & (r.split == _split(r))]
    layers = list(dict.fromkeys(rows.sort_values("step", kind="stable").layer))
    return ["input", *[layer for layer in layers if layer != "input"]] if "input" in layers else layers


def _hunch(ids: np.ndarray, errors: np.ndarray, layers: list[str], last_hidden: str) -> tuple[float, float, str]:
    """H of a profile (the hunchback claim's effect), its standard error and the layer of its peak: the highest
    hidden-layer ID above the higher of the input's and the last hidden layer's, relative to the input's ID."""
    k = layers.index(last_hidden)
    peak = 1 + int(np.argmax(ids[1:k])) if k > 1 else k
    foot = 0 if ids[0] >= ids[k] else k
    h = (ids[peak] - ids[foot]) / ids[0]
    return float(h), float(np.hypot(errors[peak], errors[foot]) / ids[0]), layers[peak]


def _profile_evidence(
    trained: pd.DataFrame,
    last_hidden: str,
    where: str,
    *,
    untrained: pd.DataFrame | None = None,
    untrained_twin: pd.DataFrame | None = None,
    random_labels: pd.DataFrame | None = None,
    true_labels: pd.DataFrame | None = None,
) -> dict[Claim, Evidence]:
    """The profile findings on one trained run, for one seed, each with its control: the run's own untrained
    profile (step 0), an untrained twin (another initialisation) and a random-label net with its true-label twin;
    each effect with its standard error propagated from the stored errors (first order). ``untrained``: the
    untrained net's run when it is not the trained run's step 0 (a pretrained net's)."""
    last = int(trained.step.max())
    split = _split(trained)
    layers = _layers(trained)
    hidden = [layer for layer in layers if layer not in ("input", "output")]
    h = slice(1, len(layers) - 1) if layers[-1] == "output" else slice(1, len(layers))
    widths = profile(trained, last, split, layers, "n_features")
    id_trained, e_trained = profile_errors(trained, last, split, layers)
    id_untrained, e_untrained = profile_errors(trained if untrained is None else untrained, 0, split, layers)
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
    h_t, he_t, peak_t = _hunch(id_trained, e_trained, layers, last_hidden)
    h_u, he_u, peak_u = _hunch(id_untrained, e_untrained, layers, last_hidden)
    out[_HUNCH.format(where=where)] = Evidence(
        "trained profile "
        + " -> ".join(f"{v:.1f}" for v in id_trained)
        + f" (H {h_t:.2f}, peak at {peak_t}); untrained "
        + " -> ".join(f"{v:.1f}" for v in id_untrained)
        + f" (H {h_u:.2f}, peak at {peak_u})",
        h_t - h_u,
        float(np.hypot(he_t, he_u)),
    )
    if untrained_twin is not None:
        id_twin, e_twin = profile_errors(untrained_twin, 0, split, layers)
        h_w, he_w, peak_w = _hunch(id_twin, e_twin, layers, last_hidden)
        out[_HUNCH_CONTROL.format(where=where)] = Evidence(
            "untrained twin "
            + " -> ".join(f"{v:.1f}" for v in id_twin)
            + f" (H {h_w:.2f}, peak at {peak_w}); untrained (H {h_u:.2f})",
            h_w - h_u,
            float(np.hypot(he_w, he_u)),
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
    if random_labels is not None and true_labels is not None:
        out[_RANDOM] = _random_labels(random_labels, true_labels, last_hidden)
    if "pc_id" in set(trained.metric):
        pc_t, pe_t = profile_errors(trained, last, split, layers, "pc_id")
        pc_u, pe_u = profile_errors(trained if untrained is None else untrained, 0, split, layers, "pc_id")
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


def _random_labels(random_labels: pd.DataFrame, true_labels: pd.DataFrame, last_hidden: str) -> Evidence:
    """The random-label net's last hidden layer against its true-label twin's, at the end of training; not
    measurable when the net fitted fewer than :data:`RANDOM_FIT` of its random labels."""
    end_r, end_t = int(random_labels.step.max()), int(true_labels.step.max())
    split = _split(random_labels)
    id_random, e_random = measure(random_labels, "twonn", last_hidden, end_r, split)
    id_true, e_true = measure(true_labels, "twonn", last_hidden, end_t, split)
    fitted = value(random_labels, "train_acc", "", end_r, "train")
    fitted_true = value(true_labels, "train_acc", "", end_t, "train")
    text = (
        f"{last_hidden} with random labels {id_random:.1f} (training accuracy on them {fitted:.2f}), its true-label "
        f"twin {id_true:.1f} (training accuracy {fitted_true:.2f})"
    )
    if fitted < RANDOM_FIT:
        return Evidence(text + f": the random labels fitted below {RANDOM_FIT:.0%}, not measurable")
    return Evidence(
        text,
        float((id_random - id_true) / id_true),
        float(np.hypot(e_random, id_random / id_true * e_true) / id_true),
    )


#: The last hidden layer of the pretrained ImageNet nets (measure.ansuini_layers): VGG-16's second hidden fully
#: connected layer, a ResNet's pooled features.
PRETRAINED_LAST_HIDDEN = {"vgg16": "classifier.4"}


def pretrained_configs(
    weights: Mapping[str, str | Path],
    images: str | Path,
    *,
    n: int = 2000,
    source: str | None = None,
    device: str = "cpu",
) -> list[MeasureConfig]:
    """The full size's pretrained ImageNet nets (Ansuini et al.'s main results): for each ``arch: weights file``
    the preset measurement (:func:`layerscope.measure.ansuini_pretrained`) of the pretrained net
    (``pretrained-ARCH``) and of the same net untrained (``untrained-ARCH``, seeded), on ``n`` images of the folder
    ``images``. ``layerscope reproduce ansuini2019 --size full --pretrained vgg16=FILE --images FOLDER`` runs them
    with the MNIST runs."""
    from ..measure import ansuini_pretrained

    out = []
    for arch, path in weights.items():
        for name, w in ((f"pretrained-{arch}", path), (f"untrained-{arch}", None)):
            cfg = ansuini_pretrained(arch, w, images, n=n, source=source, device=device)
            out.append(cfg.model_copy(update={"name": name}))
    return out


def _pretrained_findings(runs: dict[str, pd.DataFrame]) -> list[Finding]:
    """The profile findings on each measured pretrained net against the same net untrained (one run each: z-tests
    with the stored errors)."""
    out = []
    for name in sorted(runs):
        if not name.startswith("pretrained-") or f"untrained-{name[11:]}" not in runs:
            continue
        arch = name[11:]
        last = PRETRAINED_LAST_HIDDEN.get(arch, "avgpool")
        ev = _profile_evidence(runs[name], last, f"; pretrained {arch}", untrained=runs[f"untrained-{arch}"])
        for claim, e in ev.items():
            if "hunchback" not in claim.text:
                claim = Claim(f"Pretrained {arch}: {claim.text}", claim.effect, claim.smallest, claim.direction)
            out.append(over_seeds(claim, {0: e}))
    return out


def findings(folder: Path) -> list[Finding]:
    runs = run_tables(folder)
    seeds = by_seed(runs)
    if "width-1.0" in runs:  # quick or full: Ansuini et al.'s CNN at several widths, one seed
        ev = _profile_evidence(
            runs["width-1.0"], "relu3", "", random_labels=runs["random-labels"], true_labels=runs["width-1.0"]
        )
        out = [over_seeds(claim, {0: e}) for claim, e in ev.items()]
        ids, accs = [], []
        for name, r in runs.items():
            if name.startswith("width-"):
                step = int(r.step.max())
                ids.append(value(r, "twonn", "relu3", step, _split(r)))
                accs.append(value(r, "test_acc", "", step, "test"))
        out.append(correlation(ids, accs, "nets of different widths", _ACC.format(where=""), None))
        out += _pretrained_findings(runs)
        return holm(out)
    evidence: dict[Claim, dict[int, Evidence]] = {}
    for seed, group in seeds.items():
        for net in _DEEP:
            twins = {
                "untrained_twin": group.get(f"{net}-untrained"),
                "random_labels": group.get(f"{net}-random-labels"),
                "true_labels": group.get(f"{net}-true-labels"),
            }
            for claim, e in _profile_evidence(group[net], _LAST_HIDDEN[net], f"; {net}", **twins).items():
                if "hunchback" not in claim.text:
                    claim = Claim(
                        f"{'VGG' if net == 'vgg' else 'ResNet'}: {claim.text}",
                        claim.effect,
                        claim.smallest,
                        claim.direction,
                    )
                evidence.setdefault(claim, {})[seed] = e
    out = [over_seeds(claim, by) for claim, by in evidence.items()]
    # ID against accuracy: across the architecture family at the end of training, each architecture one point
    # (its mean over seeds), every net measured on the same held-out probe inputs ...
    per_net: dict[str, list[tuple[float, float]]] = {}
    for group in seeds.values():
        for net, layer in _LAST_HIDDEN.items():
            if net in group:
                r = group[net]
                step = int(r.step.max())
                per_net.setdefault(net, []).append(
                    (value(r, "twonn", layer, step, _split(r)), value(r, "test_acc", "", step, "test"))
                )
    means = {net: np.mean(points, axis=0) for net, points in per_net.items()}
    out.append(
        correlation(
            [float(m[0]) for m in means.values()],
            [float(m[1]) for m in means.values()],
            f"architectures (each the mean of its {len(seeds)} seeds, on one common held-out probe set) at the end "
            "of training",
            _ACC.format(where=", across architectures"),
            len(seeds),
        )
    )
    # ... and across training lengths: the deep nets after each epoch, one correlation per run, over seeds
    per_run: dict[int, Evidence] = {}
    for seed, group in seeds.items():
        rs = []
        for net in _DEEP:
            r = group[net]
            steps = sorted(s for s in r.step.unique() if s > 0)
            ids = [value(r, "twonn", _LAST_HIDDEN[net], s, _split(r)) for s in steps]
            accs = [value(r, "test_acc", "", s, "test") for s in steps]
            rs.append(float(np.corrcoef(ids, accs)[0, 1]) if np.ptp(ids) > 0 and np.ptp(accs) > 0 else 0.0)
        per_run[seed] = Evidence(", ".join(f"{net} r = {c:.2f}" for net, c in zip(_DEEP, rs)), float(np.mean(rs)))
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
                curves.append(profile(r, step_of(r), _split(r), _layers(r), metric))
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
            ("vgg-untrained", "twonn", start, "o-.", "VGG untrained twin", "C0"),
            ("vgg-random-labels", "twonn", end, "o:", "VGG random labels (2,000 images)", "C2"),
            ("vgg-true-labels", "twonn", end, "o-", "VGG true-label twin (2,000 images)", "C2"),
            ("resnet", "twonn", end, "s-", "ResNet trained", "C1"),
            ("resnet", "twonn", start, "s--", "ResNet untrained", "C1"),
            ("resnet-untrained", "twonn", start, "s-.", "ResNet untrained twin", "C1"),
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
                value(g[net], "twonn", layer, int(g[net].step.max()), _split(g[net])),
                value(g[net], "test_acc", "", int(g[net].step.max()), "test"),
            )
            for g in seeds.values()
            if net in g
        ]
        if pts:
            ax_acc.scatter(*zip(*pts), s=14, color=f"C{i}", alpha=0.45)
            mean = np.mean(pts, axis=0)
            ax_acc.scatter(*mean, s=70, marker="D", color=f"C{i}", edgecolor="k", label=f"{net} (mean of seeds)")
    ax_acc.set_xlabel("last hidden layer ID (end of training)")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("last hidden layer ID against accuracy (one held-out probe set)")
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
    CLAIMS,
)
