"""Outputs that never clobber inputs, survive a crash, and have one writer at a time.

- :func:`refuse_inputs` stops a run whose output would overwrite one of its
  inputs (the BED, the FASTA or its index, a model, weights, references).
- :func:`durable_replace` moves a finished temporary file to its final name
  after flushing it to disk, so the final name only ever holds a complete file.
- :func:`atomic_output` wraps a write in that: it refuses an existing output
  (without ``force``), hands out a temporary beside it, and on success moves
  it into place; on failure it removes the temporary. :func:`check_absent`
  is its check alone, for a command that checks its outputs before any work.
- :class:`OutputLock` is an exclusive lock on an output, held for the whole
  run. A second run on the same output is refused, naming the process that
  holds it. The lock is a POSIX record lock (``fcntl.lockf``): the kernel
  releases it when its process dies, kill -9 included, and it works on NFS.
- :func:`disk_error` turns a failed write (disk full, quota, file too large,
  read-only or unwritable folder) into one line that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import time
from pathlib import Path

from .errors import OutputError

#: errno values of a write that failed for lack of room or of permission.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS}


def refuse_inputs(outputs, inputs: dict) -> None:
    """Raise :class:`OutputError` when an output path is one of the inputs.

    Parameters
    ----------
    outputs : iterable of str or Path
        Every path the run writes (finals and temporaries).
    inputs : dict
        Option name (for the message, e.g. ``--fasta``) -> path or None.
    """
    known = {}
    for option, path in inputs.items():
        if path:
            known[os.path.realpath(path)] = (option, path)
    for out in outputs:
        real = os.path.realpath(out)
        hit = known.get(real)
        if hit is None and os.path.exists(out):
            hit = next((v for k, v in known.items() if os.path.exists(k) and os.path.samefile(k, out)), None)
        if hit is not None:
            option, path = hit
            raise OutputError(
                f"output {out} is the input {path} ({option}); writing it would destroy the input: choose another "
                "output path"
            )


def fsync_dir(path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def durable_replace(tmp, final) -> None:
    """Flush ``tmp`` to disk and rename it to ``final`` (atomic on one file system)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def check_absent(path, force: bool = False, *, folder: bool = False) -> Path:
    """``path`` as a Path, after checking that it can be written: it exists only with ``force``, and its folder does.

    Raises :class:`OutputError` otherwise; ``folder`` words the message for an output folder.
    """
    path = Path(path)
    if not force and (path.exists() or path.is_symlink()):
        raise _exists(path, folder)
    parent = Path(os.path.abspath(path)).parent if folder else path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist; create it first")
    return path


def _exists(path, folder: bool) -> OutputError:
    if folder:
        return OutputError(f"output folder {path} exists; use --force to replace it")
    return OutputError(f"output {path} exists; use --force to overwrite it")


def temporary_path(final, suffix: str = ".partial", *, folder: bool = False) -> Path:
    """Where :func:`atomic_output` writes ``final`` until it is complete: beside it, its name plus ``suffix``."""
    if folder:  # a folder may be given as "out/" or "a/..": name the temporary after the folder itself
        final = Path(os.path.abspath(final))
        return final.parent / (final.name + suffix)
    return Path(str(final) + suffix)


@contextlib.contextmanager
def atomic_output(final, *, force: bool = False, folder: bool = False, suffix: str = ".partial"):
    """Write ``final`` whole or not at all: yield a temporary path to write, then move it into place.

    On entry, :func:`check_absent` refuses an existing ``final`` unless ``force``. The temporary is
    ``<final><suffix>`` (see :func:`temporary_path`); in folder mode it is created empty. When the
    block ends normally, the temporary is flushed to disk and renamed to ``final``; when ``force``
    replaces a folder, the old one is moved aside and removed only after the new one is in place.
    Without ``force``, a ``final`` that another run finished meanwhile is refused, not overwritten.
    When the block raises, the temporary is removed and the exception goes on; ``final`` is untouched.

    Parameters
    ----------
    final : str or Path
        The output file (or folder, with ``folder``).
    force : bool
        Replace an existing output.
    folder : bool
        The output is a folder.
    suffix : str
        Ending of the temporary's name; one that holds the process id keeps concurrent writers apart.
    """
    final = check_absent(final, force, folder=folder)
    tmp = temporary_path(final, suffix, folder=folder)
    if folder:
        _remove(tmp)  # left by a run that was killed
        tmp.mkdir()
    try:
        yield tmp
        if folder:
            _publish_folder(tmp, final, force)
        else:
            _publish_file(tmp, final, force)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(folder)


def _publish_file(tmp: Path, final: Path, force: bool) -> None:
    if force:
        durable_replace(tmp, final)
        return
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    try:
        os.link(tmp, final)  # fails, unlike a rename, when another run has made final meanwhile
    except FileExistsError:
        raise _exists(final, folder=False) from None
    except OSError:  # a file system without hard links
        check_absent(final)
        os.replace(tmp, final)
    else:
        tmp.unlink()
    fsync_dir(final.parent)


def _publish_folder(tmp: Path, final: Path, force: bool) -> None:
    _fsync_tree(tmp)
    old = None
    if final.exists() or final.is_symlink():
        if not force:
            raise _exists(final, folder=True)
        old = temporary_path(final, f".old.{os.getpid()}", folder=True)
        _remove(old)
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    fsync_dir(Path(os.path.abspath(final)).parent)
    if old is not None:
        _remove(old)


def disk_error(exc: OSError, what, hint: str) -> OutputError | None:
    """One-line :class:`OutputError` for a write that failed for lack of room or permission, else None.

    Parameters
    ----------
    exc : OSError
        The failure; h5py reports some as ``OSError`` with the errno in the text only.
    what : str or Path
        The file that was being written.
    hint : str
        What the user does next (e.g. how to continue).
    """
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in _NO_ROOM or "No space left" in text or "Disk quota" in text or "File too large" in text:
        return OutputError(f"no room left to write {what} ({os.strerror(code or errno.ENOSPC)}); {hint}")
    if code in _NO_WRITE or "Permission denied" in text or "Read-only file system" in text:
        return OutputError(f"cannot write {what} ({os.strerror(code or errno.EACCES)}); {hint}")
    return None


class OutputLock:
    """An exclusive lock on ``path`` (a lock file), with the holder's process id and host written in it.

    Raises :class:`OutputError` naming the holder when another process has it.
    Use as a context manager, or call :meth:`release`.
    """

    def __init__(self, path, what):
        self.path = Path(path)
        self.fd = None
        for _ in range(10):  # the file may be removed by its holder between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    raise OutputError(
                        f"{what} is being written by {holder} (lock {self.path}); wait for that run to end or stop it"
                    ) from None
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                break
            os.close(fd)
            time.sleep(0.01)
        else:
            raise OutputError(f"cannot lock {self.path}: it keeps being removed; is another run cleaning it up?")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
