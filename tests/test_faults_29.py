"""Issue 29, hangs and silent fallbacks: each test plants the fault the issue found and checks that it
now ends in one clear line (never a hang, a traceback or a silent fallback)."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

import mllib.data.build as build
from mllib.data import OmniglotDataError, load_omniglot, write_synthetic_omniglot
from mllib.signals import terminate_as_interrupt

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ mllib data: damaged PNGs, bombs, workers


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """About 16 characters x 2 drawers in the upstream zip layout (32 PNGs)."""
    return write_synthetic_omniglot(tmp_path_factory.mktemp("small"), per_part=2, drawers=2)


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG that declares ``width x height`` pixels but holds a few bytes of them
    (what a decompression bomb looks like before it is decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def replace_member(root: Path, data_of) -> str:
    """Rewrite ``root/images_background.zip`` with its middle PNG's bytes replaced by
    ``data_of(old_bytes)``; return that member's name."""
    path = root / "images_background.zip"
    with zipfile.ZipFile(path) as zf:
        items = [(info.filename, zf.read(info)) for info in zf.infolist()]
    pngs = [name for name, _ in items if name.endswith(".png")]
    target = pngs[len(pngs) // 2]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items:
            zf.writestr(name, data_of(data) if name == target else data)
    return target


def copy_with(tmp_path: Path, small_root: Path, data_of) -> tuple[Path, str]:
    root = tmp_path / "damaged"
    root.mkdir()
    for name in ("images_background.zip", "images_evaluation.zip"):
        (root / name).write_bytes((small_root / name).read_bytes())
    return root, replace_member(root, data_of)


def run_data_command(root: Path, cache: Path, workers: int) -> subprocess.CompletedProcess:
    """``python -m mllib data`` on ``root`` with 4 images per job (so a pool decodes 32 PNGs in 8 jobs)."""
    code = ("import sys, mllib.data.build as b; b._CHUNK = 4; from mllib.__main__ import main; "
            f"sys.exit(main(['data', '--root', {str(root)!r}, '--cache', {str(cache)!r}, '--workers', '{workers}']))")
    env = {**os.environ, "CI": "1", "MLLIB_DATA_CUSTOM": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("workers", [1, 2])
def test_undecodable_png_in_zip_ends_in_one_line_naming_it(tmp_path, small_root, workers):
    root, member = copy_with(tmp_path, small_root, lambda data: data[:40])
    done = run_data_command(root, tmp_path / "cache", workers)   # a hang fails here (timeout)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and member in lines[0], done.stderr


@pytest.mark.parametrize("size", [(3000, 3000), (20000, 20000)])   # ours (1 Mpx), PIL's (179 Mpx)
def test_decompression_bomb_is_refused_in_one_line(tmp_path, small_root, size):
    root, member = copy_with(tmp_path, small_root, lambda data: png_header_only(*size))
    done = run_data_command(root, tmp_path / "cache", workers=2)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "decompression bomb" in lines[0] and member in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def _handlers(_):
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def test_decode_workers_die_on_sigterm_even_under_terminate_as_interrupt():
    with terminate_as_interrupt():
        pool = build.decode_pool(2)
        try:
            handlers = set(pool.map(_handlers, range(4)))
        finally:
            pool.shutdown()
    assert handlers == {(signal.SIG_DFL, signal.SIG_IGN)}


def _killed(job):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_decode_worker_ends_the_build_instead_of_hanging(tmp_path, small_root, monkeypatch):
    monkeypatch.setattr(build, "_CHUNK", 4)
    monkeypatch.setattr(build, "_decode_job", _killed)
    with pytest.raises(OmniglotDataError, match="died"):
        load_omniglot(small_root, cache_dir=tmp_path, workers=2, progress=False)
    assert not any(tmp_path.iterdir())
