"""The probe registry: every model-level probe a run can ask for, by name.

A probe is anything called as ``probe(model, step)`` that returns
:class:`~layerscope.results.Row` s (the :class:`~layerscope.probes.base.Probe`
protocol). To make one available to runs (``probes.measures = ["name"]`` in a
config, its settings under ``[probes.name]``), register a
:class:`~layerscope.probes.base.ProbeSpec`: its name, its settings (a pydantic
model, validated when the config is loaded), how to build it from the run
(:class:`~layerscope.probes.base.ProbeContext`), the metrics it writes (with
their meaning) and the figures the report draws of them. The built-in probes are
registered at the end of this module, one line each.
"""

from __future__ import annotations

from ..results import register_figure, register_metric
from . import attacks, csr, local_complexity, partition2d
from .base import ProbeSpec

#: The probes runs can ask for, by name.
PROBES: dict[str, ProbeSpec] = {}


def register_probe(spec: ProbeSpec) -> ProbeSpec:
    """Make a probe available to runs, its metrics to the results table and its figures to the report."""
    if not spec.name.isidentifier():
        raise ValueError(f"a probe name must be an identifier (it is a config key), got {spec.name!r}")
    for metric in spec.metrics:
        register_metric(metric.name, metric.meaning, metric.error)
    for figure in spec.figures:
        register_figure(figure)
    PROBES[spec.name] = spec
    return spec


register_probe(local_complexity.SPEC)
register_probe(csr.SPEC)
register_probe(attacks.SPEC)
register_probe(partition2d.SPEC)
