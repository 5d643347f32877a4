"""Statistics on the results table: phases of training curves."""

from .phases import ID_PATTERN, LC_PATTERN, PHASES_SCHEMA, THRESHOLD, Phase, detect_phases, phase_rows

__all__ = ["ID_PATTERN", "LC_PATTERN", "PHASES_SCHEMA", "THRESHOLD", "Phase", "detect_phases", "phase_rows"]
