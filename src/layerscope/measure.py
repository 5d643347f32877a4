"""Measure models trained elsewhere: a pretrained net, or a series of its training checkpoints.

``layerscope measure CONFIG`` (and :func:`measure` from Python) loads each checkpoint
of a model, runs the geometry probe on fixed probe inputs, and writes one normal run
folder (``results/step-*.parquet``, ``run.parquet``, the report): ``layerscope report``,
``runs``, :func:`layerscope.store.load`, DuckDB and the sweep report read it as any run.
A minimal TOML config::

    name = "cnn-series"

    [model]
    source = "ansuini_cnn"                 # a layerscope model, LIBRARY:NAME, MODULE:CALLABLE, or "hf"
    checkpoints = "ckpts/step-*.pt"        # a folder or a glob; or weights = "one.pt" for one model

    [data]
    kind = "arrays"                        # arrays (.npy, .npz, .parquet), images (a folder), text
    path = "probe.npy"

    [probes]
    measures = ["twonn", "pc_id"]

Safety: weights are read with ``torch.load(weights_only=True)`` (a file that needs
pickles is refused with a clear error) or from safetensors; a Hugging Face folder
is loaded with ``local_files_only=True`` and ``trust_remote_code`` off unless the
config asks for it. A checkpoint that is missing or corrupt is listed and skipped
with a warning, and the run says which (``run.parquet``'s config, ``skipped``); a
second call measures only what is not yet stored.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import pickle
import re
import shutil
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from .config import ProbeConfig, _Strict, check_device_name, check_folder_name, read_file, validate
from .integrations._run import transformer_blocks
from .models import build_model, check_model_name
from .probes.capture import Inputs
from .store import RunStore, ending
from .store.record import RunRecord
from .tracker import Tracker

#: Files a checkpoint series may hold (a folder's other files are ignored).
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
#: The weights file inside a Hugging Face checkpoint folder, by preference.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, needing pickles, or not fitting the model."""


class MeasureWarning(UserWarning):
    """A checkpoint was skipped (the run lists it)."""


class ModelSource(_Strict):
    """Where the model and its weights come from.

    ``source``: a layerscope model name (``ansuini_cnn``), ``torchvision:NAME`` or
    ``timm:NAME`` (built without weights, then loaded), ``MODULE:CALLABLE`` (your own
    constructor, imported by name), or ``hf`` (a Hugging Face ``save_pretrained``
    folder per checkpoint, loaded with ``task``). ``weights``: one file or folder;
    ``checkpoints``: a folder or a glob of them, in step order; ``steps``: the
    training step of each (default: read from the names: ``step-500``, ``checkpoint-500``,
    ``epoch=3-step=1200``); ``untrained``: the net as its constructor initialises it (seeded by
    the config's ``seed``), no weights: the untrained control of a pretrained net.
    """

    source: str
    params: dict[str, Any] = {}
    weights: Path | None = None
    checkpoints: str | None = None
    untrained: bool = Field(False, description="measure the net as initialised (seeded), no weights: a control")
    steps: list[int] | None = None
    only_steps: list[int] | None = Field(None, description="measure only these steps of the series")
    task: str = Field("AutoModel", description="the transformers class for source = 'hf' (AutoModelForCausalLM, ...)")
    trust_remote_code: bool = Field(False, description="let a Hugging Face folder run its own code (off by default)")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        library = v.partition(":")[0]
        if v != "hf" and (":" not in v or library in ("torchvision", "timm")):
            check_model_name(v)  # a layerscope name, or LIBRARY:NAME: known before anything is loaded
        return v

    @model_validator(mode="after")
    def _one_of(self) -> ModelSource:
        if (self.weights is not None) + (self.checkpoints is not None) + self.untrained != 1:
            raise ValueError(
                "give model.weights (one model), model.checkpoints (a folder or glob of them) or model.untrained = "
                "true (the net as initialised), one of the three"
            )
        if self.steps is not None and any(s < 0 for s in self.steps):
            raise ValueError("model.steps must be >= 0")
        return self


class ProbeData(_Strict):
    """The probe inputs, the same at every checkpoint.

    ``kind``: ``arrays`` (``.npy``; ``.npz`` with ``key``; ``.parquet`` with ``columns``),
    ``images`` (a folder of images, or of one subfolder per class; read with Pillow,
    resized to ``image_size``, scaled to [0, 1] and normalised by ``mean`` and ``std``),
    ``text`` (a file with one example per line, tokenised by the tokenizer in the
    folder ``tokenizer``, padded to ``max_length``), ``hf_dataset`` (a Hugging Face
    ``datasets`` folder written by ``save_to_disk``: its ``column`` of images, text or
    numbers, of ``dataset_split`` for a DatasetDict). ``n``: keep this many (a seeded
    sample). ``split``: the name the rows get in the table.
    """

    kind: Literal["arrays", "images", "text", "hf_dataset"]
    path: Path
    split: str = "probe"
    n: int | None = Field(None, ge=3)
    key: str | None = None
    columns: list[str] | None = None
    column: str | None = Field(None, description="hf_dataset: the column of inputs (images, text or numbers)")
    dataset_split: str | None = Field(None, description="hf_dataset: which split of a saved DatasetDict")
    image_size: tuple[int, int] | None = None
    grayscale: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    tokenizer: Path | None = None
    max_length: int = Field(128, gt=0)

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9]*", v):
            raise ValueError(f"split must be a lower-case word (it prefixes metric names), got {v!r}")
        return v


class MeasureConfig(_Strict):
    """Everything ``layerscope measure`` needs; stored with the run."""

    name: str
    seed: int = 0
    device: str = "cpu"
    model: ModelSource
    data: ProbeData
    probes: ProbeConfig = ProbeConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_folder_name(v)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device_name(v)

    @model_validator(mode="after")
    def _geometry_only(self) -> MeasureConfig:
        if self.probes.model_probes:
            raise ValueError(
                f"probes.measures: {', '.join(self.probes.model_probes)} need labels and a task; measure takes the "
                "per-layer estimators only"
            )
        return self


def load_measure_config(path: str | Path) -> MeasureConfig:
    """Read a :class:`MeasureConfig` from a .toml, .yaml or .yml file, with errors that name the field.
    Relative paths in it are taken from the config file's folder."""
    raw = read_file(path, "measure config")
    base = Path(path).resolve().parent
    for table, keys in (("model", ("weights", "checkpoints")), ("data", ("path", "tokenizer"))):
        section = raw.get(table)
        if isinstance(section, dict):
            for key in keys:
                value = section.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    section[key] = str(base / value)
    return parse_measure_config(raw, str(path))


def parse_measure_config(raw: dict[str, Any], source: str = "measure config") -> MeasureConfig:
    """Validate a dict as a :class:`MeasureConfig`, with errors that name the field."""
    return validate(MeasureConfig, raw, source, "a table of settings (name = ..., [model], [data])")


# ----------------------------------------------------------------------------- checkpoints


_STEP_PATTERNS = (r"step[=_-]?(\d+)", r"checkpoint[=_-](\d+)", r"(\d+)")


def step_from_name(name: str) -> int | None:
    """The training step in a checkpoint's name: ``step=1200`` / ``step-500`` / ``step_5`` first, then
    ``checkpoint-500``, then the last number; None if it has none."""
    stem = name
    for suffix in WEIGHT_SUFFIXES:
        stem = stem.removesuffix(suffix)
    for pattern in _STEP_PATTERNS:
        found = re.findall(pattern, stem)
        if found:
            return int(found[-1])
    return None


def find_checkpoints(spec: ModelSource) -> list[tuple[int, Path]]:
    """The checkpoints of a model source as (step, path), in step order.

    Raises
    ------
    CheckpointError
        No checkpoint found, steps not readable from the names, or two with one step.
    """
    if spec.untrained:
        return [(0, UNTRAINED)]
    if spec.weights is not None:
        paths = [Path(spec.weights)]
        steps = spec.steps or [0]
        if len(steps) != 1:
            raise CheckpointError(f"model.steps gives {len(steps)} steps for the one model.weights")
        return [(steps[0], paths[0])]
    pattern = str(spec.checkpoints)
    root = Path(pattern)
    if any(ch in pattern for ch in "*?["):
        paths = sorted(p for p in map(Path, glob.glob(pattern)) if _is_checkpoint(p, spec))
        where = f"the pattern {pattern!r}"
    elif root.is_dir() and not _is_hf_folder(root):
        paths = sorted(p for p in root.iterdir() if _is_checkpoint(p, spec))
        where = f"the folder {root}"
    elif root.exists():
        paths, where = [root], str(root)
    else:
        raise CheckpointError(f"model.checkpoints: no such file or folder: {root}")
    if not paths:
        raise CheckpointError(
            f"no checkpoints in {where}: expected {'Hugging Face folders (config.json)' if spec.source == 'hf' else ''}"
            f"{' or ' if spec.source == 'hf' else ''}files ending {', '.join(WEIGHT_SUFFIXES)} or checkpoint-N folders"
        )
    if spec.steps is not None:
        if len(spec.steps) != len(paths):
            raise CheckpointError(f"model.steps gives {len(spec.steps)} steps for {len(paths)} checkpoints in {where}")
        steps = list(spec.steps)
    else:
        steps = [step_from_name(p.name) for p in paths]
        unnamed = [p.name for p, s in zip(paths, steps, strict=True) if s is None]
        if unnamed:
            if len(paths) == 1:
                steps = [0]
            else:
                raise CheckpointError(
                    f"no step in the name of {unnamed[0]!r} ({len(unnamed)} such): name them step-N, "
                    "or give model.steps"
                )
    seen: dict[int, Path] = {}
    for s, p in zip(steps, paths, strict=True):
        if s in seen:
            raise CheckpointError(f"two checkpoints for step {s}: {seen[s].name} and {p.name}")
        seen[s] = p
    if spec.only_steps is not None:
        absent = sorted(set(spec.only_steps) - set(seen))
        if absent:
            raise CheckpointError(f"model.only_steps: no checkpoint of step {absent[0]} in {where}")
        seen = {s: p for s, p in seen.items() if s in set(spec.only_steps)}
    return sorted(seen.items())


def _is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").exists()


def _is_checkpoint(path: Path, spec: ModelSource) -> bool:
    if path.is_dir():
        return (
            _is_hf_folder(path)
            or any((path / f).exists() for f in HF_WEIGHT_FILES)
            or bool(re.fullmatch(r"checkpoint[-_]\d+", path.name))
        )
    return path.suffix in WEIGHT_SUFFIXES


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (or of a checkpoint folder's weights file), safely.

    ``torch.load(weights_only=True)``; a Lightning checkpoint's ``state_dict``, or a
    dict's ``model_state_dict`` / ``state_dict`` / ``model``, is taken from the file.

    Raises
    ------
    CheckpointError
        Missing, unreadable, corrupt, needing pickles, or holding no tensors.
    """
    if path.is_dir():
        inside = next((path / f for f in HF_WEIGHT_FILES if (path / f).exists()), None)
        if inside is None:
            raise CheckpointError(f"{path}: a folder without {' or '.join(HF_WEIGHT_FILES)}")
        path = inside
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"{path}: reading .safetensors needs safetensors: pip install safetensors") from None
        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for a bad header
            raise CheckpointError(f"{path}: corrupt safetensors file ({_first_line(err)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: needs pickles to load (it stores Python objects, not only tensors: {_first_line(err)[:120]}); "
            "layerscope loads tensors only (weights_only=True): save model.state_dict() instead"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or not a torch file ({_first_line(err)[:160]})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = f"a dict with keys {', '.join(list(map(str, obj))[:5])}" if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: holds no state_dict of tensors ({kind})")
    return obj


def load_into(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Load ``state`` into ``model`` exactly (a common prefix such as ``model.`` or ``module.`` is dropped).

    Raises
    ------
    CheckpointError
        Naming the first missing and the first unexpected key, or the first shape that differs.
    """
    wanted = model.state_dict()
    state = _strip_prefix(state, set(wanted))
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"first missing key {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            parts.append(f"first unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
        raise CheckpointError(f"{where}: does not fit the model: {'; '.join(parts)}")
    for key, value in wanted.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{where}: does not fit the model: {key!r} has shape {tuple(state[key].shape)} in the file, "
                f"{tuple(value.shape)} in the model"
            )
    model.load_state_dict(state)
    return model


def _strip_prefix(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    if set(state) & wanted or not state:
        return state
    first = next(iter(state))
    for cut in range(first.count(".") + 1):
        prefix = ".".join(first.split(".")[: cut + 1]) + "."
        if all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix) :]: v for k, v in state.items()}
            if set(stripped) & wanted:
                return stripped
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


#: The "checkpoint" of an untrained model source (``model.untrained``): no file.
UNTRAINED = Path("(untrained)")


def build(spec: ModelSource, path: Path) -> nn.Module:
    """The model of one checkpoint, weights loaded (none for ``model.untrained``: the initialisation, seeded by
    the caller), in eval mode.

    Raises
    ------
    CheckpointError
        The checkpoint cannot be used (the message names the file and why).
    ValueError
        The model source itself is wrong (an unknown name, a constructor that does not import).
    """
    if spec.source == "hf":
        return _hf_model(spec, path)
    if ":" in spec.source and spec.source.split(":", 1)[0] not in ("torchvision", "timm"):
        model = _constructor(spec.source)(**spec.params)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model.source {spec.source!r} returned {type(model).__name__}, not a torch nn.Module")
    else:
        model = build_model(spec.source, **spec.params)
    if spec.untrained:
        return model.eval()
    return load_into(model, read_weights(path), str(path)).eval()


def _constructor(source: str) -> Any:
    module_name, _, attr = source.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model.source {source!r}: cannot import {module_name!r} ({_first_line(err)})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"model.source {source!r}: {module_name} has no {attr!r}") from None


def _hf_model(spec: ModelSource, path: Path) -> nn.Module:
    if not path.exists():
        raise CheckpointError(f"{path}: no such folder")
    if not _is_hf_folder(path):
        raise CheckpointError(f"{path}: not a Hugging Face model folder (no config.json)")
    try:
        import transformers
    except ImportError:
        raise ValueError("model.source = 'hf' needs transformers: pip install transformers") from None
    cls = getattr(transformers, spec.task, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(
            f"model.task {spec.task!r} is not a transformers model class (AutoModel, AutoModelForCausalLM, ...)"
        )
    try:
        model = cls.from_pretrained(str(path), local_files_only=True, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot be loaded as {spec.task} ({_first_line(err)[:200]})") from None
    return model.eval()


# ----------------------------------------------------------------------------- probe data


def load_probe_data(spec: ProbeData, seed: int = 0) -> Inputs:
    """The probe inputs a :class:`ProbeData` describes (a tensor, or for text a dict of token tensors)."""
    path = Path(spec.path)
    if not path.exists():
        raise FileNotFoundError(f"data.path: no such {'folder' if spec.kind == 'images' else 'file'}: {path}")
    if spec.kind == "arrays":
        x = torch.from_numpy(np.ascontiguousarray(_read_array(spec, path)))
        if x.ndim < 2 or len(x) < 3:
            raise ValueError(f"{path}: inputs of shape {tuple(x.shape)}; need (inputs, ...) with at least 3 inputs")
        x = x.float() if x.is_floating_point() else x
        if x.is_floating_point():
            bad = int((~torch.isfinite(x.reshape(len(x), -1))).any(1).sum())
            if bad:
                raise ValueError(f"{path}: {bad} of {len(x)} inputs hold NaN or infinite values")
        return _sample(x, spec.n, seed)
    if spec.kind == "images":
        return _read_images(spec, path, seed)
    if spec.kind == "hf_dataset":
        return _read_hf_dataset(spec, path, seed)
    if spec.tokenizer is not None and not Path(spec.tokenizer).is_dir():
        raise FileNotFoundError(f"data.tokenizer: no such folder: {spec.tokenizer}")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (UTF-8, one example per line)") from None
    return _tokenise(spec, lines, str(path), seed)


def _read_hf_dataset(spec: ProbeData, path: Path, seed: int) -> Inputs:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        raise ValueError("data.kind = 'hf_dataset' needs datasets: pip install datasets") from None
    try:
        data = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a data set written by save_to_disk ({_first_line(err)[:160]})") from None
    if isinstance(data, DatasetDict):
        names = list(data)
        name = spec.dataset_split or (names[0] if len(names) == 1 else None)
        if name not in names:
            raise ValueError(f"{path}: choose data.dataset_split, one of {', '.join(names)}")
        data = data[name]
    if spec.column not in data.column_names:
        raise ValueError(f"{path}: choose data.column, one of {', '.join(data.column_names)}")
    if spec.n is not None and spec.n < len(data):
        data = data.select(np.sort(np.random.default_rng(seed).choice(len(data), spec.n, replace=False)))
    values = data[spec.column]
    first = values[0] if len(values) else None
    if isinstance(first, str):
        return _tokenise(spec, list(values), f"{path} column {spec.column!r}", seed)
    if hasattr(first, "convert") and hasattr(first, "size"):  # PIL images
        return _images_to_tensor(spec, [(f"{path}[{i}]", im) for i, im in enumerate(values)], path)
    try:
        x = torch.from_numpy(np.asarray(values, dtype=np.float32))
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column {spec.column!r} holds neither images, text nor numbers") from None
    return x


def _read_array(spec: ProbeData, path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(
                f"{path}: {_first_line(err)} (object arrays need pickles; layerscope does not load them)"
            ) from None
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            key = spec.key or (names[0] if len(names) == 1 else None)
            if key is None or key not in names:
                raise ValueError(f"{path}: choose the array with data.key, one of {', '.join(names)}")
            return archive[key]
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path, columns=spec.columns)
        numeric = frame.select_dtypes("number")
        if spec.columns is None:
            frame = numeric
        elif len(numeric.columns) != len(frame.columns):
            bad = [c for c in frame.columns if c not in numeric.columns]
            raise ValueError(f"{path}: data.columns {bad} are not numeric")
        if frame.empty:
            raise ValueError(f"{path}: no numeric columns to use as inputs")
        return frame.to_numpy(dtype=np.float32)
    raise ValueError(f"{path}: data.kind = 'arrays' reads .npy, .npz or .parquet files")


def _sample(x: Any, n: int | None, seed: int) -> Any:
    total = len(x) if not isinstance(x, dict) else len(next(iter(x.values())))
    if n is None or n >= total:
        return x
    keep = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(total, n, replace=False)))
    return {k: v[keep] for k, v in x.items()} if isinstance(x, dict) else x[keep]


def _read_images(spec: ProbeData, path: Path, seed: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    if not path.is_dir():
        raise ValueError(f"data.path: {path} is not a folder (data.kind = 'images' reads a folder of images)")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    if spec.n is not None and spec.n < len(files):
        files = [files[i] for i in np.sort(np.random.default_rng(seed).choice(len(files), spec.n, replace=False))]

    def opened() -> Iterator[tuple[str, Any]]:
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    yield str(f), im
            except (UnidentifiedImageError, OSError) as err:
                raise ValueError(f"{f}: not a readable image ({_first_line(err)})") from None

    return _images_to_tensor(spec, opened(), path)


def _images_to_tensor(spec: ProbeData, images: Any, where: Path) -> torch.Tensor:
    """PIL images as one float tensor (N, C, H, W) in [0, 1], resized and normalised as ``spec`` says."""
    from PIL import Image

    arrays = []
    for _, im in images:
        im = im.convert("L" if spec.grayscale else "RGB")
        if spec.image_size is not None:
            im = im.resize((spec.image_size[1], spec.image_size[0]), Image.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.float32) / 255.0)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{where}: images of different sizes {sorted(shapes)[:3]}: set data.image_size")
    x = torch.from_numpy(np.stack(arrays))
    x = x[:, None] if spec.grayscale else x.permute(0, 3, 1, 2)
    if spec.mean is not None or spec.std is not None:
        channels = x.shape[1]
        mean = torch.tensor(spec.mean or [0.0] * channels).view(1, -1, 1, 1)
        std = torch.tensor(spec.std or [1.0] * channels).view(1, -1, 1, 1)
        if mean.shape[1] != channels or std.shape[1] != channels:
            raise ValueError(f"data.mean and data.std need {channels} values (one per channel)")
        x = (x - mean) / std
    return x.contiguous()


def _tokenise(spec: ProbeData, lines: list[str], where: str, seed: int) -> dict[str, torch.Tensor]:
    """Text examples as token ids and attention masks, by the tokenizer saved in ``spec.tokenizer``."""
    if spec.tokenizer is None:
        raise ValueError("text inputs need data.tokenizer: a folder with a saved tokenizer")
    tok_dir = Path(spec.tokenizer)
    if not tok_dir.is_dir():
        raise FileNotFoundError(f"data.tokenizer: no such folder: {tok_dir}")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ValueError("text inputs need transformers: pip install transformers") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"data.tokenizer: {tok_dir} holds no loadable tokenizer ({_first_line(err)[:160]})") from None
    lines = [line for line in lines if line and line.strip()]
    if len(lines) < 3:
        raise ValueError(f"{where}: {len(lines)} non-empty examples; the estimators need many more (hundreds)")
    if spec.n is not None and spec.n < len(lines):
        lines = [lines[i] for i in np.sort(np.random.default_rng(seed).choice(len(lines), spec.n, replace=False))]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    batch = tokenizer(lines, padding="max_length", truncation=True, max_length=spec.max_length, return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


# ----------------------------------------------------------------------------- the run


def measure(
    config: MeasureConfig,
    out: str | Path = "runs",
    *,
    overwrite: bool = False,
    folder: str | Path | None = None,
    report: bool = True,
) -> Path:
    """Measure every checkpoint of ``config.model`` into the run folder ``out/NAME`` (or ``folder``); return it.

    Checkpoints already stored are not measured again (a killed call resumes); one
    that is missing or corrupt is skipped with a :class:`MeasureWarning` and listed in
    ``run.parquet`` (``config["skipped"]``). The report is written at the end.

    Raises
    ------
    FileExistsError
        The folder holds a different run (another config) and ``overwrite`` is off.
    CheckpointError
        No checkpoint at all could be measured, or the series cannot be found.
    """
    folder = Path(folder) if folder is not None else Path(out) / config.name
    series = find_checkpoints(config.model)
    inputs = load_probe_data(config.data, config.seed)
    store = RunStore(folder)
    stored = config.model_dump(mode="json")
    with store.lock():
        resumes, done = 0, set()
        if store.is_run():
            previous = store.read_run()
            same = previous.config.get("measure") == stored
            if overwrite:
                store.clear()
            elif not same:
                raise FileExistsError(
                    f"{folder} holds another run (not this measure config): use --overwrite, or another name"
                )
            else:
                resumes, done = previous.resumes + 1, set(store.completed_steps())
        record = store.start_run(_record(config, series, resumes))
        tracker = None
        skipped: dict[str, str] = {}
        try:
            for step, path in _progress(series, done, config.name):
                try:
                    torch.manual_seed(config.seed)  # the initialisation of an untrained net, and any random layer
                    model = build(config.model, path)
                except CheckpointError as err:
                    if len(series) == 1:  # one model: its error is the answer
                        raise
                    skipped[str(path)] = str(err)
                    warnings.warn(f"skipped {path}: {err}", MeasureWarning, stacklevel=2)
                    continue
                if tracker is None:
                    geometry = config.probes.geometry
                    if geometry.layers is None and transformer_blocks(model):  # a transformer: its blocks
                        geometry = geometry.model_copy(update={"layers": transformer_blocks(model)})
                    tracker = Tracker(
                        store,
                        {config.data.split: inputs},
                        run_id=config.name,
                        geometry=geometry,
                        device=config.device,
                        seed=config.seed,
                    )
                with torch.no_grad():
                    try:
                        tracker.measure(model, step)
                    except RuntimeError as err:  # the model refuses the inputs (a shape, a dtype): say which
                        shape = (
                            {k: tuple(v.shape) for k, v in inputs.items()}
                            if isinstance(inputs, dict)
                            else tuple(inputs.shape)
                        )
                        raise ValueError(
                            f"the model of {path.name} cannot take the probe inputs (shape {shape}): {_first_line(err)}"
                        ) from None
                done.add(step)
            if not done:
                raise CheckpointError(
                    f"no checkpoint could be measured ({len(skipped)} skipped): first: {next(iter(skipped.values()))}"
                )
        except BaseException as err:
            record = dataclasses.replace(record, config={**record.config, "skipped": skipped})
            store.end_run(record, *ending(err))
            raise
        store.end_run(dataclasses.replace(record, config={**record.config, "skipped": skipped}), "finished")
    if report:
        from .report import make_report

        make_report(folder)
    return folder


def _record(config: MeasureConfig, series: list[tuple[int, Path]], resumes: int, **extra: Any) -> RunRecord:
    """The run record of a measure: its config (marked as a measure's), checkpoint files and steps."""
    steps = [s for s, _ in series]
    return RunRecord.begin(
        config.name,
        {
            "kind": "measure",
            "measure": config.model_dump(mode="json"),
            "checkpoints": {str(s): str(p) for s, p in series},
            **extra,
        },
        seed=config.seed,
        resumes=resumes,
        total_steps=max(steps),
        checkpoints=steps,
    )


def merge_parts(config: MeasureConfig, folder: Path, parts: list[Path]) -> Path:
    """One run folder from the run folders of a measure done in parts (each with ``model.only_steps``):
    their checkpoint files and skipped lists, the run's record, the report. The parts are removed after.

    Raises
    ------
    RuntimeError
        A part that failed for another reason than unusable checkpoints (its error).
    """
    store = RunStore(folder)
    series = find_checkpoints(config.model)
    skipped: dict[str, str] = {}
    with store.lock():
        resumes = store.read_run().resumes + 1 if store.is_run() else 0
        record = store.start_run(_record(config, series, resumes, parts=len(parts)))
        store.create()
        for part in parts:
            part_store = RunStore(part)
            part_record = part_store.read_run()
            skipped.update(part_record.config.get("skipped") or {})
            if part_record.status != "finished" and not (part_record.error or "").startswith(
                "CheckpointError: no checkpoint could"
            ):
                store.end_run(record, "failed", f"part {part.name}: {part_record.error}")
                raise RuntimeError(f"part {part.name} of the measure failed: {part_record.error}")
            for file in part_store.checkpoint_files():
                shutil.copyfile(file, store.results_dir / file.name)
        if not store.completed_steps():
            store.end_run(record, "failed", "no checkpoint could be measured")
            raise CheckpointError(f"no checkpoint could be measured ({len(skipped)} skipped)")
        store.end_run(dataclasses.replace(record, config={**record.config, "skipped": skipped}), "finished")
    for part in parts:
        shutil.rmtree(part, ignore_errors=True)
    if parts and parts[0].parent.name == ".parts":
        shutil.rmtree(parts[0].parent, ignore_errors=True)
    from .report import make_report

    make_report(folder)
    return folder


def _progress(series: list[tuple[int, Path]], done: set[int], name: str) -> Iterator[tuple[int, Path]]:
    """The checkpoints still to measure, with a progress bar on a terminal."""
    todo = [(s, p) for s, p in series if s not in done]
    try:
        from rich.progress import Progress
    except ImportError:  # pragma: no cover
        yield from todo
        return
    with Progress(transient=True) as bar:
        task = bar.add_task(f"measure {name}", total=len(todo))
        for item in todo:
            yield item
            bar.advance(task)


# ----------------------------------------------------------------------------- the pretrained-net preset

#: ImageNet's channel means and standard deviations (torchvision's and timm's pretrained nets).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_RESNET_BLOCKS = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def ansuini_layers(arch: str) -> list[str]:
    """The layers Ansuini et al. measure in torchvision's ImageNet nets: VGG-16's five max-pooling
    outputs and its two hidden fully connected layers (after their ReLU); a ResNet's max-pooling
    output and every residual block's; then the pooled features and the output (logits)."""
    if arch == "vgg16":
        return [*(f"features.{i}" for i in (4, 9, 16, 23, 30)), "classifier.1", "classifier.4", "output"]
    if arch in _RESNET_BLOCKS:
        blocks = [f"layer{s + 1}.{b}" for s, n in enumerate(_RESNET_BLOCKS[arch]) for b in range(n)]
        return ["maxpool", *blocks, "avgpool", "output"]
    raise ValueError(f"no Ansuini layers for {arch!r}; choose from vgg16, {', '.join(_RESNET_BLOCKS)}")


def ansuini_pretrained(
    arch: str,
    weights: str | Path | None,
    images: str | Path,
    *,
    n: int = 2000,
    source: str | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> MeasureConfig:
    """Ansuini et al.'s measurement of a pretrained ImageNet net: TwoNN and PC-ID at the paper's layers
    (:func:`ansuini_layers`) on ``n`` images of a folder (resized to 224 x 224, ImageNet's
    normalisation; no centre crop), the net ``torchvision:ARCH`` with its weights file (``None``: the
    net as initialised, seeded by ``seed``: the untrained control). ``source`` replaces the model source
    (a net with the same layer names)."""
    layers = ansuini_layers(arch)
    return parse_measure_config(
        {
            "name": f"ansuini-{arch}" + ("-untrained" if weights is None else ""),
            "seed": seed,
            "device": device,
            "model": {"source": source or f"torchvision:{arch}"}
            | ({"untrained": True} if weights is None else {"weights": str(weights)}),
            "data": {
                "kind": "images",
                "path": str(images),
                "n": n,
                "image_size": [224, 224],
                "mean": IMAGENET_MEAN,
                "std": IMAGENET_STD,
            },
            "probes": {"measures": ["twonn", "pc_id"], "layers": layers},
        },
        f"the Ansuini preset for {arch}",
    )
