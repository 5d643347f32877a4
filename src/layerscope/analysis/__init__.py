"""Statistics on the results table: phases of training curves, and their calibration on simulated curves."""

from .phases import (
    ID_PATTERN,
    LC_PATTERN,
    LEVEL_INFLATION,
    PHASES_SCHEMA,
    THRESHOLD,
    Phase,
    curve_replicates,
    detect_phases,
    joint_covariance,
    phase_rows,
    with_replicates,
)

__all__ = [
    "ID_PATTERN",
    "LC_PATTERN",
    "LEVEL_INFLATION",
    "PHASES_SCHEMA",
    "THRESHOLD",
    "Phase",
    "curve_replicates",
    "detect_phases",
    "joint_covariance",
    "phase_rows",
    "with_replicates",
]
