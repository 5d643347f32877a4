"""Run configuration: pydantic models, loaded from TOML or YAML, validated with errors that name the field.

A minimal TOML config::

    name = "cnn-mnist"
    seed = 0

    [data]
    name = "mnist5k"

    [model]
    name = "ansuini_cnn"

    [train]
    optimizer = "sgd"
    lr = 0.01
    momentum = 0.9
    epochs = 6

    [probes]
    measures = ["twonn", "pc_id", "participation_ratio", "alpha", "lc", "pgd"]
    [probes.lc]
    radius = 0.5
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data.datasets import DATASETS
from .estimators import ESTIMATORS
from .models import check_model_name
from .probes.base import ProbeSettings
from .probes.geometry import DEFAULT_ESTIMATORS, GeometrySettings, LayerReading
from .probes.registry import probes
from .train.schedule import ScheduleConfig, TrainConfig


def check_folder_name(name: str) -> str:
    """A run or sweep name: it becomes a folder under --out, so a plain name, never '.', '..' or hidden."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
        raise ValueError(
            "name must start with a letter or digit and use letters, digits, '.', '_' or '-' only, "
            f"at most 128 characters (it names a folder), got {name!r}"
        )
    return name


def check_device_name(device: str) -> str:
    """A config's device: cpu, cuda, cuda:N or mps."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    return device


def _registered(name: str, known: Iterable[str], what: str) -> str:
    known = list(known)
    if name not in known:
        raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(known)}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    name: str = "mnist5k"
    data_dir: Path | None = None
    download: bool = False
    n_train: int | None = Field(None, gt=0, description="keep this many training examples (seeded)")
    label_noise: float = Field(0.0, ge=0, le=1, description="fraction of training labels made uniformly random")
    probe_size: int = Field(1000, ge=10, description="inputs per split in the fixed probe set")
    probe_splits: list[Literal["train", "test"]] = ["train", "test"]
    probe_seed: int | None = Field(
        None,
        description=(
            "seed of the probe set's choice (default: the run's seed); runs of different seeds given one probe_seed "
            "measure the same test inputs"
        ),
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _registered(v, DATASETS, "data set")


class ModelConfig(_Strict):
    name: str = "ansuini_cnn"
    params: dict[str, Any] = {}
    init_scale: float = Field(1.0, gt=0, description="multiply every initial parameter by this")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return check_model_name(v)


class ProbeConfig(LayerReading):
    """What to measure at each checkpoint.

    ``measures`` names per-layer estimators (:data:`layerscope.estimators.ESTIMATORS`)
    and model-level probes (:func:`layerscope.probes.registry.probes`); each probe's
    settings go under its name (``[probes.lc]``, ``radius = 0.5``), validated by
    the probe's own settings model. How the layers are read (``layers``,
    ``estimator_params``, ``memory_budget_mb``, ``batch_size``, ``tokens``,
    ``max_token_points``) are the fields of
    :class:`~layerscope.probes.geometry.LayerReading`, defined there once;
    :attr:`geometry` is the geometry probe's settings.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    measures: list[str] = list(DEFAULT_ESTIMATORS)
    save_weights: bool = False
    tensorboard: bool = Field(
        False, description="also write every stored row to RUN/tensorboard as TensorBoard scalars"
    )

    @field_validator("measures")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in ESTIMATORS and name not in probes():
                raise ValueError(f"unknown measure {name!r}; choose from {', '.join([*ESTIMATORS, *probes()])}")
        return v

    @model_validator(mode="after")
    def _probe_settings(self) -> ProbeConfig:
        for key, value in (self.__pydantic_extra__ or {}).items():
            if key not in probes():
                raise ValueError(
                    f"unknown setting {key!r}: neither a probes field nor a registered probe ({', '.join(probes())})"
                )
            if isinstance(value, probes()[key].settings):
                continue
            try:
                self.__pydantic_extra__[key] = probes()[key].settings.model_validate(value)
            except ValidationError as err:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
                raise ValueError(f"{key}.{problems}") from None
        return self

    @property
    def estimators(self) -> list[str]:
        """The per-layer estimators among the measures."""
        return [m for m in self.measures if m in ESTIMATORS]

    @property
    def geometry(self) -> GeometrySettings:
        """The geometry probe's settings: the estimators among the measures, and how the layers are read."""
        reading = {name: getattr(self, name) for name in LayerReading.model_fields}
        return GeometrySettings(**reading, estimators=self.estimators)

    @property
    def model_probes(self) -> list[str]:
        """The model-level probes among the measures."""
        return [m for m in self.measures if m in probes()]

    def settings(self, probe: str) -> ProbeSettings:
        """The validated settings of a registered probe (its defaults if the config gives none)."""
        given = (self.__pydantic_extra__ or {}).get(probe)
        return given if given is not None else probes()[probe].settings()


class RunConfig(_Strict):
    """Everything a run needs; also stored with its results."""

    name: str = "run"
    seed: int = 0
    device: str = "cpu"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    probes: ProbeConfig = ProbeConfig()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device_name(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_folder_name(v)


class ConfigError(ValueError):
    """A config that does not validate; the message names each bad field."""


def validate(model: type[BaseModel], raw: Any, source: str, expected: str) -> Any:
    """``raw`` validated as ``model``, a :class:`ConfigError` naming each bad field otherwise
    (``expected`` says what the top level should be)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid {source}: expected {expected}, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        ]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(lines)) from None


def parse_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a dict as a RunConfig, with errors that name the field."""
    return validate(RunConfig, raw, source, "a table of settings (name = ..., [data], [model], ...)")


def read_file(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The table in a .toml, .yaml or .yml file, with errors that name the file (and line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such {what} file: {path}")
    if not path.is_file():
        raise ConfigError(f"{path} is a folder, not a {what} file (.toml, .yaml or .yml)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read as text: {err}") from None
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text)  # safe: tags that would build Python objects are refused
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    else:
        raise ConfigError(f"{path}: {what} files must be .toml, .yaml or .yml")
    if not raw:
        raise ConfigError(f"{path} is empty: a {what} needs at least a name (see the README)")
    return raw


def load_config(path: str | Path) -> RunConfig:
    """Read a RunConfig from a .toml, .yaml or .yml file."""
    return parse_config(read_file(path), str(path))
