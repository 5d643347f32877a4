"""The registry: every model-level probe a run can ask for, every metric a table can hold, every figure
the report draws; built when asked, from the estimators and probes that exist.

A probe is anything called as ``probe(model, step)`` that returns
:class:`~layerscope.results.Row` s (the :class:`~layerscope.probes.base.Probe`
protocol). Its :class:`~layerscope.probes.base.ProbeSpec`, beside its code, says
its name, its settings (a pydantic model, validated when the config is loaded),
how to build it from the run (:class:`~layerscope.probes.base.ProbeContext`), the
metrics it writes (with their meaning) and the figures of them (each with its own
draw function). The built-in probes are the explicit list :data:`BUILTIN`; a
probe of your own is added with :func:`register_probe` (and taken out with
:func:`unregister_probe`), before the config that names it is loaded.

Why an explicit list and not entry points or import side effects: a reader sees
every built-in probe in one line, nothing registers itself when a module happens
to be imported (so no import is needed "for its effect"), and a probe of one's
own is one call in one's own code, with no packaging.
"""

from __future__ import annotations

from ..estimators import ESTIMATORS
from ..results import BASE_METRICS, FigureSpec, Metric
from . import attacks, csr, local_complexity, partition2d
from .base import ProbeSpec

#: The built-in probes, in the order the report draws their figures.
BUILTIN: tuple[ProbeSpec, ...] = (local_complexity.SPEC, csr.SPEC, attacks.SPEC, partition2d.SPEC)

_registered: dict[str, ProbeSpec] = {}


def probes() -> dict[str, ProbeSpec]:
    """The probes runs can ask for (``probes.measures``), by name: the built-in ones, then the registered ones."""
    return {spec.name: spec for spec in (*BUILTIN, *_registered.values())}


def estimator_metrics() -> tuple[Metric, ...]:
    """The metric of each estimator, measured per layer."""
    return tuple(Metric(name, cls.meaning + " (per layer)", cls.error_meaning) for name, cls in ESTIMATORS.items())


def metrics() -> dict[str, Metric]:
    """Every metric a results table can hold, by name: the base ones, the estimators', the probes'."""
    found: dict[str, Metric] = {}
    for metric in (*BASE_METRICS, *estimator_metrics(), *(m for spec in probes().values() for m in spec.metrics)):
        if found.setdefault(metric.name, metric) != metric:
            raise ValueError(f"metric {metric.name!r} is declared twice, with different meanings")
    return found


def figures() -> list[FigureSpec]:
    """The figures the probes declare, in the order of :func:`probes`."""
    return [figure for spec in probes().values() for figure in spec.figures]


def register_probe(spec: ProbeSpec) -> ProbeSpec:
    """Make a probe of your own available to runs, its metrics to the results table and its figures to the report.

    Raises
    ------
    ValueError
        A name that is not an identifier (it is a config key), or that an estimator
        or another probe has, or a metric another probe or estimator declares with
        another meaning.
    """
    if not spec.name.isidentifier():
        raise ValueError(f"a probe name must be an identifier (it is a config key), got {spec.name!r}")
    if spec.name in ESTIMATORS or spec.name in probes():
        raise ValueError(f"a probe or estimator is named {spec.name!r} already")
    _registered[spec.name] = spec
    try:
        metrics()
    except ValueError:
        del _registered[spec.name]
        raise
    return spec


def unregister_probe(name: str) -> None:
    """Take a probe of your own out of the registry (built-in probes stay)."""
    if name not in _registered:
        raise KeyError(f"no probe {name!r} was registered" + (" (it is built in)" if name in probes() else ""))
    del _registered[name]
