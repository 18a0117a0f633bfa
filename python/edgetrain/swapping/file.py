"""The swap file: created at its planned size before training, mapped, removed at the end.

Creating the whole file up front (``posix_fallocate``, or writing zeros where the file
system cannot preallocate) means a missing or unwritable directory or a full disk is
reported when the model is compiled, never in the middle of an epoch. The file is
removed by :meth:`SwapFile.close`, when the object is garbage collected, and at
interpreter exit (``weakref.finalize`` runs at exit), so errors do not leave it behind;
only a process killed outright (SIGKILL) can, and its name says what it is
(``edgetrain-swap-*.bin``).
"""

from __future__ import annotations

import errno
import mmap
import os
import tempfile
import weakref
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import SwapError
from ..planning.report import format_bytes

#: errnos meaning "this file system cannot preallocate": fall back to writing zeros
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_ZERO_CHUNK = 1 << 20


def default_swap_dir() -> Path:
    """Where the swap file goes unless the user says: the system temporary directory."""
    return Path(tempfile.gettempdir())


def _preallocate(fd: int, nbytes: int) -> None:
    """Give the file ``nbytes`` of real blocks (not a sparse hole that fails on first write)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, nbytes)
            return
        except OSError as err:
            if err.errno not in _NO_FALLOCATE:
                raise
    os.ftruncate(fd, nbytes)
    zeros = bytes(_ZERO_CHUNK)
    done = 0
    while done < nbytes:
        done += os.pwrite(fd, zeros[: min(_ZERO_CHUNK, nbytes - done)], done)


class _Handle:
    """What the finalizer needs, kept apart from :class:`SwapFile` so it does not keep the
    file object alive."""

    def __init__(self, fd: int, path: Path, mapping: mmap.mmap | None) -> None:
        self.fd = fd
        self.path = path
        self.mapping = mapping


def _release(handle: _Handle) -> None:
    """Unmap, close and delete. A mapping still viewed by a numpy array cannot be closed
    yet; it is then unmapped when the last view goes, and the file is deleted now."""
    if handle.mapping is not None:
        try:
            handle.mapping.close()
        except BufferError:
            pass
        handle.mapping = None
    if handle.fd >= 0:
        os.close(handle.fd)
        handle.fd = -1
    try:
        handle.path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # Windows cannot delete a file still mapped by a live view; nothing else to do


class SwapFile:
    """A file of ``nbytes`` in ``directory``, preallocated and mapped read-write;
    ``array`` is the mapping as ``uint8``."""

    def __init__(self, directory: str | os.PathLike[str] | None, nbytes: int) -> None:
        folder = Path(directory) if directory is not None else default_swap_dir()
        self.nbytes = int(nbytes)
        what = f"the swap file ({format_bytes(self.nbytes)})"
        if not folder.exists():
            raise SwapError(
                f"swap directory {folder} does not exist: create it or choose another for {what}"
            )
        if not folder.is_dir():
            raise SwapError(f"swap directory {folder} is not a directory")
        try:
            fd, name = tempfile.mkstemp(prefix="edgetrain-swap-", suffix=".bin", dir=folder)
        except OSError as err:
            raise SwapError(f"cannot create {what} in {folder}: {err.strerror or err}") from None
        handle = _Handle(fd, Path(name), None)
        try:
            if self.nbytes:
                _preallocate(fd, self.nbytes)
                size = os.fstat(fd).st_size
                if size != self.nbytes:
                    raise OSError(errno.EIO, f"the file has {size} bytes after preallocation")
                handle.mapping = mmap.mmap(fd, self.nbytes)
        except OSError as err:
            _release(handle)
            reason = err.strerror or str(err)
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                reason = f"not enough space ({reason})"
            raise SwapError(f"cannot create {what} in {folder}: {reason}") from None
        self.path = handle.path
        self._handle = handle
        self._finalizer = weakref.finalize(self, _release, handle)
        self.array: NDArray[np.uint8] = (
            np.frombuffer(handle.mapping, dtype=np.uint8)
            if handle.mapping is not None
            else np.zeros(0, dtype=np.uint8)
        )

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def release_pages(self, start: int, stop: int) -> None:
        """Tell the kernel this process no longer needs the pages of ``[start, stop)``: they
        leave the resident set (the page cache keeps them, written back in time), so the
        swapped bytes stop counting as this process's memory."""
        mapping = self._handle.mapping
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if mapping is None or advice is None or stop <= start:
            return
        page = mmap.PAGESIZE
        first = start // page * page
        last = min(-(-stop // page) * page, self.nbytes)
        if last > first:
            mapping.madvise(advice, first, last - first)

    def close(self) -> None:
        """Unmap and delete the file (idempotent). Views of ``array`` must be dropped first
        for the mapping itself to close."""
        self.array = np.zeros(0, dtype=np.uint8)
        self._finalizer()
