"""A swap file that cannot be made fails at compile time with a clear SwapError, leaves no
file behind and leaves the model as it was: its weights unchanged, still training. Cases:
the directory is missing, is a regular file, cannot be written (injected: the tests run
as root), or is too small (injected ENOSPC from fallocate and from the zero-writing
fallback, and a real size-limited tmpfs where mounting is allowed)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetrain.swapping import SwapFile
from swap_faults import fails_cleanly


def test_a_missing_directory(tmp_path: Path) -> None:
    fails_cleanly(tmp_path / "nowhere", r"swap directory .*nowhere does not exist")


def test_a_directory_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fails_cleanly(blocker / "swap", "does not exist", watch=tmp_path)
    fails_cleanly(blocker, "is not a directory", watch=tmp_path)


def test_an_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    fails_cleanly(tmp_path, r"cannot create the swap file \(.*\) in .*: Permission denied")


def test_no_space_for_the_swap_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    fails_cleanly(tmp_path, "not enough space")


def test_no_space_where_the_file_system_cannot_preallocate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    monkeypatch.setattr(os, "pwrite", full)
    fails_cleanly(tmp_path, "not enough space")


def test_the_zero_writing_fallback_makes_a_full_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    swap = SwapFile(tmp_path, 3 * 1024 * 1024 + 100)
    assert swap.path.stat().st_size == 3 * 1024 * 1024 + 100
    assert not swap.array.any()
    swap.close()
    assert not swap.path.exists()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test, where the machine allows it."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)


def test_a_real_file_system_too_small(small_tmpfs: Path) -> None:
    fails_cleanly(small_tmpfs, "not enough space", batch=64)
    big = SwapFile(small_tmpfs, 32 * 1024)  # what fits is made and removed as usual
    big.close()
    assert not list(small_tmpfs.iterdir())
