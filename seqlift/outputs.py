"""Outputs that never clobber inputs, survive a crash, and have one writer at a time.

- :func:`refuse_inputs` stops a run whose output would overwrite one of its
  inputs (the BED, the FASTA or its index, a model, weights, references).
- :func:`durable_replace` moves a finished temporary file to its final name
  after flushing it to disk, so the final name only ever holds a complete file.
- :class:`OutputLock` is an exclusive lock on an output, held for the whole
  run. A second run on the same output is refused, naming the process that
  holds it. The lock is a POSIX record lock (``fcntl.lockf``): the kernel
  releases it when its process dies, kill -9 included, and it works on NFS.
- :func:`disk_error` turns a failed write (disk full, quota, file too large,
  read-only or unwritable folder) into one line that says what to do.
"""

from __future__ import annotations

import errno
import fcntl
import os
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
