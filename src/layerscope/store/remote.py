"""Run folders on any filesystem that pyarrow understands (S3, GCS, HDFS, a ``file://`` URI).

A run is always written to a local folder: the lock (``flock``), the durable
write (``fsync`` and rename) and the resume logic need a POSIX filesystem, which
object stores are not. A :class:`Location` names where a folder lives; when it is
not local, a :class:`Mirror` keeps a local working copy of a run and uploads what
it writes as it goes, and downloads it again to resume somewhere else (the way
Ray Train syncs a trial's folder to its ``storage_path``). A shared NFS path is
simply a local path to every machine that mounts it, and needs no mirror.

Uploads keep a remote folder resumable at every moment: the training state is
read first and uploaded after the result files, so the remote state is never
ahead of the remote results (object stores write each file whole).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

# written last, in this order: a folder with run.parquet is a run, and its state must not be ahead of its results
_LAST = ("state.pt", "run.parquet")


def _skipped(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name == ".lock" or (name.startswith(".") and ".tmp-" in name)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(tmp)`` so that it is whole or absent, even after a power cut.

    The temporary file is flushed to disk (``fsync``) before it is renamed into
    place, and the folder after the rename, so the new name never points at
    unwritten data. A failed write (full disk) leaves the old file and no temporary.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class Location:
    """A folder on a filesystem: ``filesystem`` None means the local one (``path`` is then a local path)."""

    filesystem: pafs.FileSystem | None
    path: str

    @property
    def is_local(self) -> bool:
        return self.filesystem is None

    def local(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self} is not on the local filesystem")
        return Path(self.path)

    def join(self, *parts: str) -> Location:
        if self.is_local:
            return Location(None, str(Path(self.path, *parts)))
        return Location(self.filesystem, "/".join([self.path.rstrip("/"), *parts]))

    @property
    def fs(self) -> pafs.FileSystem:
        """The filesystem, the local one included (for code that reads either)."""
        return self.filesystem or pafs.LocalFileSystem()

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def files(self) -> list[str]:
        """Every file below this folder, as paths relative to it (empty if it does not exist)."""
        if not self.exists():
            return []
        base = self.path.rstrip("/") + "/"
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True))
        return sorted(i.path.removeprefix(base) for i in infos if i.type == pafs.FileType.File)

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_file(self.join(relative).path) as f:
            return f.read()

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file below this folder: atomically on a local filesystem (:func:`atomic_write`), as one
        upload on an object store (whole or absent there by itself)."""
        target = self.join(relative)
        if self.is_local:
            target.local().parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target.local(), lambda tmp: tmp.write_bytes(data))
            return
        self.fs.create_dir(target.path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(target.path) as f:
            f.write(data)

    def ensure_folder(self) -> None:
        """Make the folder and check that it can be written (a local one; on an object store a folder is
        only a prefix): a ValueError naming the folder and the reason otherwise."""
        if not self.is_local:
            return
        try:
            self.local().mkdir(parents=True, exist_ok=True)
            probe = self.local() / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise ValueError(f"cannot write the folder {self}: {err.strerror or err}") from None

    def __str__(self) -> str:
        if self.is_local:
            return self.path
        return f"{self.filesystem.type_name}://{self.path}"


def location(out: str | os.PathLike[str] | Location, filesystem: pafs.FileSystem | None = None) -> Location:
    """Where ``out`` is: a local path, or a URI pyarrow resolves (``s3://bucket/x``, ``gs://...``, ``file:///x``).

    ``filesystem`` (a configured ``pyarrow.fs`` filesystem: credentials, endpoint)
    takes ``out`` as a path on it. A ``file://`` URI is the local filesystem.
    """
    if isinstance(out, Location):
        return out
    text = os.fspath(out)
    if filesystem is not None:
        return Location(None, text) if isinstance(filesystem, pafs.LocalFileSystem) else Location(filesystem, text)
    if "://" not in text:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/(?!/)", text):
            raise ValueError(
                f"{text!r} looks like a URI with one slash; write {text.replace(':/', '://', 1)!r}, or ./{text} for a "
                "local folder"
            )
        return Location(None, os.path.abspath(text))  # absolute: Ray's workers need not share the driver's folder
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, ValueError, OSError) as err:
        raise ValueError(f"cannot open {text!r}: {str(err).splitlines()[0]}") from None
    return Location(None, path) if isinstance(fs, pafs.LocalFileSystem) else Location(fs, path)


def download(source: Location, target: Path, skip: tuple[str, ...] = ()) -> Path:
    """Copy the folder ``source`` into the local folder ``target``; files or folders named in ``skip`` are left out."""
    for relative in source.files():
        if _skipped(relative) or set(relative.split("/")) & set(skip):
            continue
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes(relative))
    return target


def scratch_folder(remote: Location) -> Path:
    """A local working folder for a remote one, the same for the same remote folder on this machine."""
    digest = hashlib.sha1(str(remote).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "layerscope-mirror" / f"{digest}-{remote.path.rstrip('/').rsplit('/', 1)[-1]}"


class Mirror:
    """A local working copy of a remote run folder, uploaded while it is written.

    ``with Mirror(remote) as local: ...`` downloads the remote folder (if any) into a
    fresh local folder, uploads what changed every ``interval`` seconds from a
    background thread, and once more at the end, also when the work inside raised.
    """

    def __init__(
        self, remote: Location, interval: float = 5.0, local: Path | None = None, skip: tuple[str, ...] = ()
    ) -> None:
        self.remote, self.interval, self.skip = remote, interval, skip
        self.local = local or scratch_folder(remote)
        self._sent: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def download(self) -> Path:
        import shutil

        if self.local.exists():
            shutil.rmtree(self.local)  # the remote folder is the truth: a stale local copy would resume the wrong state
        self.local.mkdir(parents=True)
        download(self.remote, self.local, self.skip)
        self._sent = {str(p.relative_to(self.local)): self._stamp(p) for p in self.local.rglob("*") if p.is_file()}
        return self.local

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns

    def upload(self) -> int:
        """Send the files that changed since the last upload; returns how many were sent."""
        with self._lock:
            last = {}
            for name in _LAST:  # read first: files written after this are newer than this state
                path = self.local / name
                if path.is_file():
                    last[name] = (path.read_bytes(), self._stamp(path))
            sent = 0
            for path in sorted(self.local.rglob("*")):
                relative = path.relative_to(self.local).as_posix()
                if not path.is_file() or relative in _LAST or _skipped(relative):
                    continue
                try:
                    stamp = self._stamp(path)
                    if self._sent.get(relative) == stamp:
                        continue
                    data = path.read_bytes()
                except FileNotFoundError:  # replaced or removed while we looked
                    continue
                self.remote.write_bytes(relative, data)
                self._sent[relative] = stamp
                sent += 1
            for name in _LAST:
                if name in last and self._sent.get(name) != last[name][1]:
                    self.remote.write_bytes(name, last[name][0])
                    self._sent[name] = last[name][1]
                    sent += 1
            return sent

    def _loop(self) -> None:
        # Upload as soon as a checkpoint is complete (the training state changed), so that a
        # retry elsewhere resumes from the last checkpoint; otherwise every ``interval`` seconds.
        last = time.monotonic()
        while not self._stop.wait(0.2):
            state = self.local / "state.pt"
            changed = state.is_file() and self._sent.get("state.pt") != self._stamp(state)
            if changed or time.monotonic() - last >= self.interval:
                try:
                    self.upload()
                except OSError:  # a network blip: the next round (or the final upload) tries again
                    continue
                last = time.monotonic()

    def __enter__(self) -> Path:
        self.download()
        self._thread = threading.Thread(target=self._loop, name="layerscope-mirror", daemon=True)
        self._thread.start()
        return self.local

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.upload()
        if exc_type is None:  # all of it is remote now: the local copy is not needed
            import shutil

            shutil.rmtree(self.local, ignore_errors=True)


@contextlib.contextmanager
def working_copy(folder: Location) -> Iterator[Path]:
    """A local folder to write a run in: ``folder`` itself if it is local, else a :class:`Mirror` of it
    (downloaded first, uploaded as it changes and at the end)."""
    if folder.is_local:
        yield folder.local()
        return
    with Mirror(folder) as local:
        yield local


@contextlib.contextmanager
def local_view(folder: Location, upload: bool = True) -> Iterator[Path]:
    """A local folder holding ``folder``'s tables: ``folder`` itself if it is local, else a temporary copy
    (without weights and training states) whose new or changed files (reports, figures) are uploaded at the end."""
    if folder.is_local:
        yield folder.local()
        return
    with tempfile.TemporaryDirectory(prefix="layerscope-view-") as tmp:
        mirror = Mirror(folder, local=Path(tmp) / "view", skip=("weights", "state.pt"))
        mirror.download()
        yield mirror.local
        if upload:
            mirror.upload()
