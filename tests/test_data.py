"""Omniglot loading: location order, the cache (atomic, keyed, reused), corrupt input, preprocessing."""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mllib.data.build as build
import mllib.data.locate as locate
from mllib.data import (
    PREPROCESS_VERSION,
    OmniglotDataError,
    load_omniglot,
    locate_omniglot,
    write_synthetic_omniglot,
)
from mllib.data.synthetic import synthetic_characters


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """About 16 characters x 20 drawers in the upstream zip layout."""
    return write_synthetic_omniglot(tmp_path_factory.mktemp("tiny"), per_part=2)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("MLLIB_DATA", raising=False)
    monkeypatch.delenv("MLLIB_CACHE", raising=False)


def cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ the loaded data


def test_images_are_uint8_strokes_bright(omniglot):
    images = omniglot.images
    assert images.dtype == torch.uint8 and images.shape[1:] == (20, 28, 28)
    assert images.shape[0] == len(omniglot.characters) == len(omniglot.sets)
    assert int(images.max()) == 255 and int(images.min()) == 0
    # background (0) dominates; a border pixel is background in most images
    assert (images == 0).float().mean() > 0.6
    assert (images[:, :, 0, 0] == 0).float().mean() > 0.95
    assert (images.flatten(2).amax(dim=2) > 128).all()  # every image has strokes


def test_characters_sorted_background_first(omniglot):
    sets = omniglot.sets
    n_bg = sets.count("background")
    assert sets == ["background"] * n_bg + ["evaluation"] * (len(sets) - n_bg)
    assert omniglot.characters[:n_bg] == sorted(omniglot.characters[:n_bg])
    assert omniglot.characters[n_bg:] == sorted(omniglot.characters[n_bg:])
    assert len(omniglot.alphabets) == len({c.split("/")[0] for c in omniglot.characters})
    assert omniglot.alphabets[int(omniglot.alphabet_index[-1])] == omniglot.characters[-1].split("/")[0]
    if omniglot.complete:
        assert (len(omniglot.characters), n_bg, len(omniglot.alphabets)) == (1623, 964, 50)
    else:
        assert omniglot.characters == sorted(synthetic_characters(), key=lambda c: (synthetic_characters()[c], c))


def test_image_equals_pil_reference_of_its_source_png(omniglot):
    """Cached pixel = 255 - LANCZOS 28x28 resize of the grey PNG, for a character of each set."""
    for char_index in (0, len(omniglot.characters) - 1):
        name, set_name = omniglot.characters[char_index], omniglot.sets[char_index]
        source = Path(omniglot.source_paths[set_name])
        prefix = f"images_{set_name}/{name}/"
        if source.suffix == ".zip":
            with zipfile.ZipFile(source) as zf:
                members = sorted((m for m in zf.namelist() if m.startswith(prefix)), key=lambda m: int(m[-6:-4]))
                data = zf.read(members[3])  # drawer 4
        else:
            files = sorted((source / name).glob("*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
            data = files[3].read_bytes()
        png = Image.open(io.BytesIO(data))
        assert png.mode == "1" and png.size == (105, 105)
        expected = 255 - np.asarray(png.convert("L").resize((28, 28), Image.LANCZOS))
        assert torch.equal(omniglot.images[char_index, 3], torch.from_numpy(expected))


# ------------------------------------------------------------------ where the data comes from


def test_zip_folder_and_member_order_give_identical_data(tmp_path, tiny_root):
    folder = write_synthetic_omniglot(tmp_path / "folder", per_part=2, layout="folder")
    shuffled = write_synthetic_omniglot(tmp_path / "shuffled", per_part=2, shuffle_members=True)
    a = load_omniglot(tiny_root, cache_dir=tmp_path / "c", progress=False)
    b = load_omniglot(folder, cache_dir=tmp_path / "c", progress=False)
    c = load_omniglot(shuffled, cache_dir=tmp_path / "c", progress=False)
    assert Path(b.source_paths["background"]).is_dir() and b.source_paths["background"].endswith("images_background")
    assert a.characters == b.characters == c.characters
    assert torch.equal(a.images, b.images) and torch.equal(a.images, c.images)


def test_explicit_root_wins_over_environment(tmp_path, tiny_root, monkeypatch):
    monkeypatch.setenv("MLLIB_DATA", str(tmp_path / "nowhere"))
    assert locate_omniglot(tiny_root).root == Path(tiny_root)


def test_environment_variable_is_used(tmp_path, tiny_root, monkeypatch):
    monkeypatch.setenv("MLLIB_DATA", str(tiny_root))
    monkeypatch.setenv("MLLIB_CACHE", str(tmp_path / "envcache"))
    data = load_omniglot(progress=False)
    assert data.source == str(tiny_root)
    assert Path(data.cache_path).parent == tmp_path / "envcache"


def test_default_data_folder_in_working_directory(tmp_path, tiny_root, no_env, monkeypatch):
    monkeypatch.setattr(locate, "repo_root", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    shutil.copytree(tiny_root, tmp_path / "work" / "data")
    monkeypatch.chdir(tmp_path / "work")
    assert locate_omniglot().root == tmp_path / "work" / "data"
    assert locate.default_cache_dir() == tmp_path / "xdg" / "mllib"


def test_missing_data_error_names_env_download_and_url(tmp_path, no_env):
    with pytest.raises(OmniglotDataError) as err:
        load_omniglot(tmp_path / "empty", cache_dir=tmp_path / "c")
    message = str(err.value)
    assert "MLLIB_DATA" in message and "--download" in message and "download=True" in message
    assert "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_background.zip" in message
    assert cache_files(tmp_path / "c") == []


# ------------------------------------------------------------------ download and checks

class FakeResponse(io.BytesIO):
    """What urllib returns for a URL: the body, its length, the final URL; may fail mid-way."""

    def __init__(self, body: bytes, url: str, fail_after: int | None = None):
        super().__init__(body)
        self.length, self.url, self.fail_after, self.status, self.code = len(body), url, fail_after, 200, 200
        self.headers = {"Content-Length": str(len(body))}

    def geturl(self):
        return self.url

    def info(self):
        return self.headers

    def getheader(self, name, default=None):
        return self.headers.get(name, default)

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)


@pytest.fixture
def serve(monkeypatch):
    """Answer every urllib request with the given files: {file name: bytes}; records the URLs."""
    import urllib.request

    state = {"files": {}, "urls": [], "final_url": None, "fail_after": None}

    def fake_open(self, request, data=None, timeout=None):
        url = request if isinstance(request, str) else request.full_url
        state["urls"].append(url)
        body = state["files"][url.rsplit("/", 1)[1]]
        return FakeResponse(body, state["final_url"] or url, state["fail_after"])

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", fake_open)
    return state


@pytest.fixture
def strict(monkeypatch):
    """Custom copies refused (the default outside the tests)."""
    monkeypatch.delenv(locate.CUSTOM_ENV, raising=False)
    monkeypatch.setattr(locate, "_verified", {})


@pytest.fixture
def tiny_as_upstream(tiny_root, monkeypatch):
    """Pretend the tiny zips are the upstream files (their MD5 sums become the known values)."""
    md5 = {s: locate.file_md5(Path(tiny_root) / f"images_{s}.zip") for s in locate.SETS}
    monkeypatch.setattr(locate, "UPSTREAM_MD5", md5)
    return {f"images_{s}.zip": (Path(tiny_root) / f"images_{s}.zip").read_bytes() for s in locate.SETS}


def test_download_fetches_upstream_zips_over_https_only_when_allowed(tmp_path, serve, tiny_as_upstream, strict):
    serve["files"] = tiny_as_upstream
    target = tmp_path / "dl"
    with pytest.raises(OmniglotDataError):
        locate_omniglot(target)
    assert serve["urls"] == []
    source = locate_omniglot(target, download=True, progress=False)
    assert sorted(serve["urls"]) == [locate.UPSTREAM_BASE + "images_background.zip",
                                     locate.UPSTREAM_BASE + "images_evaluation.zip"]
    assert all(url.startswith("https://") for url in serve["urls"])
    assert source.paths["background"] == target / "images_background.zip"
    assert sorted(p.name for p in target.iterdir()) == ["images_background.zip", "images_evaluation.zip"]


def test_download_failing_its_checksum_keeps_nothing_and_is_not_used_next_time(tmp_path, serve, tiny_root, strict):
    serve["files"] = {f"images_{s}.zip": (Path(tiny_root) / f"images_{s}.zip").read_bytes() for s in locate.SETS}
    target = tmp_path / "dl"
    with pytest.raises(OmniglotDataError, match="MD5"):
        locate_omniglot(target, download=True, progress=False)
    assert list(target.iterdir()) == []  # no zip under the final name, no temporary file
    with pytest.raises(OmniglotDataError, match="not found"):
        locate_omniglot(target)


def test_interrupted_download_leaves_no_zip_behind(tmp_path, serve, tiny_as_upstream, strict):
    serve["files"], serve["fail_after"] = tiny_as_upstream, 1000
    target = tmp_path / "dl"
    with pytest.raises(OmniglotDataError, match="could not download"):
        locate_omniglot(target, download=True, progress=False)
    assert list(target.iterdir()) == []


def test_stale_temporary_download_files_are_removed(tmp_path, serve, tiny_as_upstream, strict):
    serve["files"] = tiny_as_upstream
    target = tmp_path / "dl"
    target.mkdir()
    stale, fresh = target / ".images_background.zip.99999.part", target / ".images_background.zip.99998.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    os.utime(stale, (0, 0))
    locate_omniglot(target, download=True, progress=False)
    assert not stale.exists() and fresh.exists()  # a download still running elsewhere is left alone


def test_download_never_goes_to_plain_http(tmp_path, serve, tiny_as_upstream, strict):
    serve["files"], serve["final_url"] = tiny_as_upstream, "http://example.org/images_background.zip"
    with pytest.raises(OmniglotDataError, match="not https"):
        locate_omniglot(tmp_path / "dl", download=True, progress=False)
    assert list((tmp_path / "dl").iterdir()) == []
    with pytest.raises(OmniglotDataError, match="only https"):
        locate._open_https("http://example.org/x.zip")
    handler = locate._HttpsOnlyRedirects()
    request = __import__("urllib.request").request.Request("https://example.org/a.zip")
    with pytest.raises(OmniglotDataError, match="not https"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://example.org/a.zip")
    assert handler.redirect_request(request, None, 302, "Found", {}, "https://mirror.org/a.zip") is not None


def test_zip_in_data_folder_that_is_not_upstream_is_refused_with_a_switch(tmp_path, tiny_root, strict, monkeypatch):
    with pytest.raises(OmniglotDataError) as err:
        load_omniglot(tiny_root, cache_dir=tmp_path / "c", progress=False)
    message = str(err.value)
    assert "images_background.zip" in message and locate.UPSTREAM_MD5["background"] in message
    assert "--download" in message and "MLLIB_DATA_CUSTOM=1" in message
    assert cache_files(tmp_path / "c") == []
    monkeypatch.setenv(locate.CUSTOM_ENV, "1")
    with pytest.warns(locate.CustomOmniglotWarning, match="not the upstream"):
        data = load_omniglot(tiny_root, cache_dir=tmp_path / "c", progress=False)
    assert data.images.shape[1] == 20


def test_truncated_zip_is_refused_even_as_a_custom_copy(tmp_path, tiny_root, strict, monkeypatch):
    monkeypatch.setenv(locate.CUSTOM_ENV, "1")
    root = tmp_path / "half"
    shutil.copytree(tiny_root, root)
    zip_path = root / "images_evaluation.zip"
    zip_path.write_bytes(zip_path.read_bytes()[:1000])
    with pytest.raises(OmniglotDataError, match="corrupt or truncated.*--download"):
        locate_omniglot(root)


def test_rebuilt_zip_with_the_upstream_images_is_accepted(tmp_path, tiny_root, strict, monkeypatch):
    """Same members (any order, any compression) = same content digest; one changed image = refused."""
    rebuilt, changed = tmp_path / "rebuilt", tmp_path / "changed"
    for folder in (rebuilt, changed):
        folder.mkdir()
        shutil.copy(Path(tiny_root) / "images_evaluation.zip", folder / "images_evaluation.zip")
    with zipfile.ZipFile(Path(tiny_root) / "images_background.zip") as src, \
            zipfile.ZipFile(rebuilt / "images_background.zip", "w", zipfile.ZIP_STORED) as a, \
            zipfile.ZipFile(changed / "images_background.zip", "w", zipfile.ZIP_DEFLATED) as b:
        infos = sorted(src.infolist(), key=lambda i: i.filename, reverse=True)
        for i, info in enumerate(infos):
            a.writestr(info.filename, src.read(info))
            b.writestr(info.filename, src.read(info) + (b"x" if i == 0 else b""))
    digest = {s: locate.content_digest(Path(tiny_root) / f"images_{s}.zip") for s in locate.SETS}
    monkeypatch.setattr(locate, "UPSTREAM_CONTENT", digest)
    assert locate.file_md5(rebuilt / "images_background.zip") != locate.file_md5(Path(tiny_root) / "images_background.zip")
    assert locate.verify_zip(rebuilt / "images_background.zip", "background") == "upstream-images"
    assert locate_omniglot(rebuilt).root == rebuilt
    with pytest.raises(OmniglotDataError, match="does not hold the same images"):
        locate_omniglot(changed)


@pytest.mark.skipif(not os.environ.get("MLLIB_DATA"), reason="needs the real Omniglot (MLLIB_DATA)")
def test_real_omniglot_passes_the_check(strict):
    """The upstream zips (MD5) and the offline mirror (same images in rebuilt zips) both pass."""
    source = locate_omniglot()
    if any(source.kind(s) != "zip" for s in locate.SETS):
        pytest.skip("MLLIB_DATA holds extracted folders")
    assert {locate.verify_zip(source.paths[s], s) for s in locate.SETS} <= {"upstream", "upstream-images"}


# ------------------------------------------------------------------ the cache


def test_cache_is_built_once_then_loaded(tmp_path, tiny_root):
    first = load_omniglot(tiny_root, cache_dir=tmp_path, progress=False)
    second = load_omniglot(tiny_root, cache_dir=tmp_path, progress=False)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert torch.equal(first.images, second.images) and first.characters == second.characters
    name = cache_files(tmp_path)
    assert name == [Path(first.cache_path).name] and f"-v{PREPROCESS_VERSION}-" in name[0]
    assert not any(n.endswith(".tmp") for n in name)


def test_cache_key_follows_the_source(tmp_path, tiny_root):
    other = write_synthetic_omniglot(tmp_path / "other", per_part=2, seed=1)
    a = load_omniglot(tiny_root, cache_dir=tmp_path / "c", progress=False)
    b = load_omniglot(other, cache_dir=tmp_path / "c", progress=False)
    assert a.cache_path != b.cache_path and not torch.equal(a.images, b.images)
    assert len(cache_files(tmp_path / "c")) == 2


def test_interrupted_cache_write_leaves_nothing_then_rebuilds(tmp_path, tiny_root, monkeypatch):
    real_replace = os.replace

    def interrupted(src, dst):
        raise KeyboardInterrupt  # e.g. Ctrl-C between writing and renaming

    monkeypatch.setattr(build.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_omniglot(tiny_root, cache_dir=tmp_path, progress=False)
    assert cache_files(tmp_path) == []
    monkeypatch.setattr(build.os, "replace", real_replace)
    assert not load_omniglot(tiny_root, cache_dir=tmp_path, progress=False).cache_hit


def test_damaged_cache_file_is_rebuilt(tmp_path, tiny_root):
    data = load_omniglot(tiny_root, cache_dir=tmp_path, progress=False)
    Path(data.cache_path).write_bytes(b"not a cache")
    again = load_omniglot(tiny_root, cache_dir=tmp_path, progress=False)
    assert not again.cache_hit and torch.equal(again.images, data.images)


def test_truncated_zip_gives_clear_error_and_no_cache(tmp_path, tiny_root):
    root = tmp_path / "truncated"
    shutil.copytree(tiny_root, root)
    zip_path = root / "images_background.zip"
    zip_path.write_bytes(zip_path.read_bytes()[: zip_path.stat().st_size // 2])
    with pytest.raises(OmniglotDataError, match="corrupt or truncated") as err:
        load_omniglot(root, cache_dir=tmp_path / "c", progress=False)
    assert "images_background.zip" in str(err.value)
    assert cache_files(tmp_path / "c") == []


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_member_gives_clear_error_and_no_cache(tmp_path, tiny_root, workers):
    root = tmp_path / "corrupt"
    shutil.copytree(tiny_root, root)
    zip_path = root / "images_evaluation.zip"
    raw = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as zf:
        info = sorted(zf.infolist(), key=lambda i: i.filename)[-1]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 5, start + info.compress_size - 5):
        raw[i] ^= 0x5A
    zip_path.write_bytes(bytes(raw))
    with pytest.raises(OmniglotDataError, match="corrupt or truncated") as err:
        load_omniglot(root, cache_dir=tmp_path / "c", workers=workers, progress=False)
    assert info.filename in str(err.value)
    assert cache_files(tmp_path / "c") == []


def test_incomplete_extraction_is_reported(tmp_path):
    root = write_synthetic_omniglot(tmp_path / "folder", per_part=2, layout="folder")
    next((root / "images_background").rglob("*_07.png")).unlink()
    with pytest.raises(OmniglotDataError, match="same number of drawers"):
        load_omniglot(root, cache_dir=tmp_path / "c", progress=False)


def test_parallel_and_serial_builds_agree(tmp_path, tiny_root):
    serial = load_omniglot(tiny_root, cache_dir=tmp_path / "a", workers=1, progress=False)
    parallel = load_omniglot(tiny_root, cache_dir=tmp_path / "b", workers=2, progress=False)
    assert torch.equal(serial.images, parallel.images)


# ------------------------------------------------------------------ python -m mllib data


def test_cli_data_prints_json_summary(tmp_path, tiny_root, capsys):
    from mllib.__main__ import main

    assert main(["data", "--root", str(tiny_root), "--cache", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["source"]["root"] == str(tiny_root)
    assert summary["images"] == 20 * len(synthetic_characters(2))
    assert set(summary["characters"]) == {"lake", "maml", "vinyals"}
    assert summary["characters"]["maml"]["val"] >= 2
    assert Path(summary["cache"]).is_file() and summary["seconds"] >= 0


def test_cli_data_without_data_fails_with_message(tmp_path, no_env, capsys):
    from mllib.__main__ import main

    assert main(["data", "--root", str(tmp_path / "none"), "--cache", str(tmp_path / "c")]) != 0
    assert "MLLIB_DATA" in capsys.readouterr().err


# ------------------------------------------------------------------ issue 16: faults 4, 6, 8
def test_unwritable_default_cache_falls_back_to_the_user_cache_and_says_so(tmp_path, tiny_root, no_env,
                                                                            monkeypatch, capsys):
    import mllib.data.load as load

    (tmp_path / "read_only_checkout").write_text("a file: nothing can be written below it")
    monkeypatch.setattr(load, "default_cache_dir", lambda cache_dir=None: tmp_path / "read_only_checkout" / "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    data = load_omniglot(tiny_root, progress=False)
    assert Path(data.cache_path).parent == tmp_path / "user" / "mllib" and Path(data.cache_path).is_file()
    err = capsys.readouterr().err
    assert "read_only_checkout" in err and str(tmp_path / "user" / "mllib") in err


def test_unwritable_explicit_cache_fails_before_decoding(tmp_path, tiny_root, monkeypatch):
    (tmp_path / "plain").write_text("a file")
    monkeypatch.setattr(build, "decode_images", lambda *a, **k: pytest.fail("decoded before checking"))
    with pytest.raises(OSError) as err:
        load_omniglot(tiny_root, cache_dir=tmp_path / "plain" / "cache", progress=False)
    assert str(tmp_path / "plain") in str(err.value)


def test_orphaned_cache_temporary_files_of_dead_writers_are_removed(tmp_path, tiny_root):
    from test_run_lock import dead_pid

    orphan = tmp_path / f".omniglot.pt.tmp-{dead_pid()}-abc"
    orphan.write_bytes(b"half a cache")
    load_omniglot(tiny_root, cache_dir=tmp_path, progress=False)
    assert not orphan.exists()


def test_check_split_complete_names_the_missing_alphabets(monkeypatch):
    from mllib.data import PARTIAL_ENV, check_split_complete, split_names

    names = split_names("lake", "train") + split_names("lake", "test")
    assert check_split_complete(names, "maml", ("train", "val", "test")) is None
    assert check_split_complete(names[:10], None, ("test",)) is None  # no manifest, nothing to compare
    partial = [n for n in names if not n.startswith(("Korean/", "Bengali/"))]
    monkeypatch.delenv(PARTIAL_ENV, raising=False)
    with pytest.raises(OmniglotDataError, match=r"incomplete: .*Bengali, Korean.*allow_partial_data"):
        check_split_complete(partial, "lake", ("train",))
    assert check_split_complete(partial, "lake", ("test",)) is None  # neither is in the evaluation set
    with pytest.warns(UserWarning, match="non-standard"):
        note = check_split_complete(partial, "lake", ("train",), allow=True)
    assert "Bengali" in note and "Korean" in note
    monkeypatch.setenv(PARTIAL_ENV, "1")
    with pytest.warns(UserWarning):
        assert check_split_complete(partial, "lake", ("train",)) == note
