"""Output paths: never destroy what a user has, write atomically, leave nothing partial behind.

The rules every output of ssdd follows:

* an existing path is replaced only with ``overwrite``, and then only a regular file (never a
  device, FIFO, socket, symlink or folder) or, for folders, one that ssdd wrote itself (see
  :func:`check_replaceable_dir`);
* files are written to a hidden temporary beside the target, flushed to disk (fsync), then renamed
  over it, so a reader sees the old file or the new one, never a mix;
* temporaries are named ``.<target>.<pid>.<random>.ssdd-tmp``; those of processes that no longer
  run (killed mid-write) are swept on the next write to the same folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import OutputError

TMP_SUFFIX = ".ssdd-tmp"
MANIFEST = "manifest.json"
MANIFEST_TAG = "ssdd expand"  # manifest["written_by"]: the folder is ssdd's own
REPORT_TAG = "ssdd evaluate"  # the same for `ssdd evaluate --report DIR`
MAX_NAME_BYTES = 200  # 255 on common file systems, less the temporary's ".<pid>.<random>.ssdd-tmp"
_STALE_S = 24 * 3600.0  # a temporary this old is swept even if its pid was reused


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: str | Path, directory: bool) -> None:
    """Give a temporary file or folder the permissions a plain ``open``/``mkdir`` would (mkstemp uses 0600)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "not a regular file"


def check_output(path: str | Path, overwrite: bool, *, kind: str = "file", protect: Iterable[str | Path] = ()) -> Path:
    """Validate an output path before any work starts.

    Args:
        path: the file (or, with ``kind="dir"``, folder) to create.
        overwrite: whether an existing output may be replaced.
        kind: ``file`` or ``dir``.
        protect: paths that must survive (e.g. the input of ``expand``).

    Raises:
        OutputError: the path exists and ``overwrite`` is false, exists as something ssdd never
            replaces, or its folder cannot be written.
    """
    path = Path(path)
    if len(path.name.encode()) > MAX_NAME_BYTES:
        raise OutputError(f"the file name {path.name[:24]}… is {len(path.name.encode())} bytes long; file systems "
                          f"allow 255 and ssdd's temporary beside it needs room, so keep it under {MAX_NAME_BYTES}")
    if os.path.lexists(path):
        if not overwrite:
            raise OutputError(f"{path} already exists; pass --overwrite to replace it or choose another path")
        mode = os.lstat(path).st_mode
        if kind == "file" and not stat.S_ISREG(mode):
            hint = "give a file path" if stat.S_ISDIR(mode) else "ssdd only replaces regular files; choose another path"
            raise OutputError(f"{path} is {_kind(mode)}; {hint}")
        if kind == "dir":
            check_replaceable_dir(path, protect)
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create {parent}: {probe} is a file")
    if not os.access(probe, os.W_OK):
        raise OutputError(f"cannot write to {parent} (permission denied); choose a writable location")
    # os.access trusts permission bits, which root bypasses; a read-only mount or a pseudo file
    # system only shows itself when a file is actually created.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".ssdd-write-check.{os.getpid()}.", suffix=TMP_SUFFIX, dir=probe)
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: creating a file in {probe} failed ({exc.strerror or exc}); "
                          "choose a writable location") from None
    os.close(fd)
    os.unlink(tmp)
    return path


def check_replaceable_dir(path: Path, protect: Iterable[str | Path] = ()) -> None:
    """Refuse to replace a folder unless ssdd wrote it and it holds nothing else.

    Raises:
        OutputError: ``path`` is not a folder written by ``ssdd expand``/``evaluate``, holds files its manifest does not
            list, is the working folder or one of its parents, or holds a protected path.
    """
    mode = os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        raise OutputError(f"{path} is {_kind(mode)}, not a folder ssdd wrote; choose another path")
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise OutputError(f"{path} is the working folder or holds it; ssdd never replaces it; choose another path")
    for keep in protect:
        k = Path(keep).resolve()
        if k == real or real in k.parents:
            raise OutputError(f"{path} holds {keep}, an input of this command; choose another output folder")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("written_by") not in (MANIFEST_TAG, REPORT_TAG):
        raise OutputError(f"{path} was not written by `ssdd expand` or `ssdd evaluate` (no ssdd manifest); ssdd only "
                          "replaces folders it wrote; choose another path")
    owned = {MANIFEST, *(str(f) for f in manifest.get("owned", []))}
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if item.is_dir() and not item.is_symlink():
            continue
        if rel not in owned:
            raise OutputError(f"{path} holds {rel}, which ssdd did not write; move it away or choose another path")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_stale_temporaries(folder: Path) -> list[Path]:
    """Remove ssdd temporaries in ``folder`` left by processes that no longer run; return what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for tmp in folder.glob(f".*{TMP_SUFFIX}"):
            parts = tmp.name[: -len(TMP_SUFFIX)].split(".")
            pid = next((int(p) for p in reversed(parts[:-1]) if p.isdigit()), None)
            try:
                old = time.time() - tmp.lstat().st_mtime > _STALE_S
                if old or pid is None or not _pid_alive(pid):
                    shutil.rmtree(tmp) if tmp.is_dir() and not tmp.is_symlink() else tmp.unlink()
                    removed.append(tmp)
            except OSError:
                continue
    return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _default_mode(tmp, directory=False)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool, protect: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path``.

    An existing ``path`` is replaced only when ``overwrite`` and :func:`check_replaceable_dir` allow it
    (checked again here, after the work): it is first renamed aside, then the new folder takes its place,
    then the old one is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent))
    try:
        yield tmp
        _default_mode(tmp, directory=True)
        old = None
        if os.path.lexists(path):
            if not overwrite:
                raise OutputError(f"{path} already exists; pass --overwrite to replace it or choose another path")
            check_replaceable_dir(path, protect)
            old = path.with_name(f".{path.name}.{os.getpid()}.old{TMP_SUFFIX}")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def output_errors(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` (a full disk, a vanished folder) into a one-line :class:`OutputError`."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from exc


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir(override: str | Path | None = None) -> Path:
    """The ssdd cache folder: ``override``, else ``$SSDD_CACHE``, else ``~/.cache/ssdd``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("SSDD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ssdd"
