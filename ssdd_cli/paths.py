"""Output paths: refuse to clobber, write atomically, never leave a partial file behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: str | Path, directory: bool) -> None:
    """Give a temporary file or folder the permissions a plain ``open``/``mkdir`` would (mkstemp uses 0600)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def check_output(path: str | Path, overwrite: bool, *, kind: str = "file") -> Path:
    """Validate an output path before any work starts.

    Raises:
        OutputError: the path exists and ``overwrite`` is false, or its folder cannot be written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it or choose another path")
    if path.exists() and kind == "file" and path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
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
        fd, tmp = tempfile.mkstemp(prefix=".ssdd-write-check.", dir=probe)
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: creating a file in {probe} failed ({exc.strerror or exc}); "
                          "choose a writable location") from None
    os.close(fd)
    os.unlink(tmp)
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _default_mode(tmp, directory=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        _default_mode(tmp, directory=True)
        if path.exists() and overwrite:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
