"""scpert.data.download against a local HTTP server (tests/http_fixture.py): resume, verification,
clear errors, nothing left behind."""

from __future__ import annotations

import gzip
import hashlib
import logging

import numpy as np
import pytest

from scpert.data import download
from scpert.data.download import Checksum, DownloadError, fetch, partial_path, record_path

from .http_fixture import FixtureServer

DATA = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
SHA256 = hashlib.sha256(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()


@pytest.fixture
def server():
    srv = FixtureServer(files={"/data/file.bin": DATA}).start()
    yield srv
    srv.stop()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_first_download_records_sha256_and_says_so(server, tmp_path, caplog):
    dest = tmp_path / "file.bin"
    with caplog.at_level(logging.INFO, logger="scpert"):
        got = fetch(server.url("/data/file.bin"), dest, size=len(DATA))
    assert dest.read_bytes() == DATA
    assert got == Checksum("sha256", SHA256)
    assert record_path(dest).read_text() == f"sha256:{SHA256}  {len(DATA)}\n"
    assert "publishes no checksum; recorded sha256:" in caplog.text
    assert leftovers(tmp_path) == ["file.bin", "file.bin.sha256"]


def test_later_download_is_verified_against_the_record(server, tmp_path):
    dest = tmp_path / "file.bin"
    fetch(server.url("/data/file.bin"), dest)
    dest.unlink()
    fetch(server.url("/data/file.bin"), dest)  # same bytes: verifies
    assert dest.read_bytes() == DATA
    dest.unlink()
    server.files["/data/file.bin"] = DATA[:-1] + b"\x00"  # the source changed underneath
    with pytest.raises(DownloadError, match="differs from the recorded by the first download"):
        fetch(server.url("/data/file.bin"), dest)
    assert not dest.exists() and not partial_path(dest).exists()


def test_published_checksum_is_verified(server, tmp_path):
    dest = tmp_path / "file.bin"
    got = fetch(server.url("/data/file.bin"), dest, checksum=f"md5:{MD5.upper()}")
    assert got == Checksum("md5", MD5)
    assert not record_path(dest).exists()  # nothing recorded when a checksum is published


def test_dropped_connection_resumes_with_a_range_request(server, tmp_path):
    server.drop_after["/data/file.bin"] = 12_345
    dest = tmp_path / "file.bin"
    fetch(server.url("/data/file.bin"), dest, checksum=f"sha256:{SHA256}", backoff=0)
    assert dest.read_bytes() == DATA
    assert server.requests == [("/data/file.bin", None), ("/data/file.bin", "bytes=12345-")]


def test_partial_file_of_a_killed_job_is_resumed(server, tmp_path):
    dest = tmp_path / "file.bin"
    partial_path(dest).write_bytes(DATA[:30_000])
    fetch(server.url("/data/file.bin"), dest, size=len(DATA), checksum=f"sha256:{SHA256}")
    assert dest.read_bytes() == DATA
    assert server.requests == [("/data/file.bin", "bytes=30000-")]
    assert leftovers(tmp_path) == ["file.bin"]


def test_server_ignoring_range_restarts_the_partial_file(server, tmp_path):
    server.ignore_range.add("/data/file.bin")
    dest = tmp_path / "file.bin"
    partial_path(dest).write_bytes(b"stale bytes from another version")
    fetch(server.url("/data/file.bin"), dest, checksum=f"sha256:{SHA256}")
    assert dest.read_bytes() == DATA


def test_complete_partial_file_answered_416_is_kept(server, tmp_path):
    dest = tmp_path / "file.bin"
    partial_path(dest).write_bytes(DATA)
    fetch(server.url("/data/file.bin"), dest, checksum=f"sha256:{SHA256}")
    assert dest.read_bytes() == DATA
    assert server.requests == [("/data/file.bin", f"bytes={len(DATA)}-")]


def test_wrong_checksum_names_the_url_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "file.bin"
    wrong = "0" * 64
    url = server.url("/data/file.bin")
    with pytest.raises(DownloadError) as err:
        fetch(url, dest, checksum=f"sha256:{wrong}")
    assert str(err.value) == f"{url}: sha256 {SHA256} differs from the expected {wrong}"
    assert leftovers(tmp_path) == []


def test_wrong_size_is_an_error(server, tmp_path):
    url = server.url("/data/file.bin")
    with pytest.raises(DownloadError, match=f"^{url}: received 50000 bytes, expected size 50001$"):
        fetch(url, tmp_path / "file.bin", size=len(DATA) + 1)
    assert leftovers(tmp_path) == []


def test_404_names_the_url_and_leaves_nothing(server, tmp_path):
    url = server.url("/data/missing.bin")
    with pytest.raises(DownloadError, match=f"^{url}: HTTP 404 Not Found$"):
        fetch(url, tmp_path / "missing.bin")
    assert leftovers(tmp_path) == []
    assert len(server.requests) == 1  # a 404 is not retried


def test_connection_refused_is_retried_then_reported(tmp_path):
    srv = FixtureServer().start()
    url = srv.url("/x.bin")
    srv.stop()  # nothing listens on that port any more
    with pytest.raises(DownloadError, match=rf"^{url}: failed after 2 attempts: connection failed"):
        fetch(url, tmp_path / "x.bin", retries=1, backoff=0, timeout=5)
    assert leftovers(tmp_path) == []


def test_checksum_list_of_geo_sha512sums(server, tmp_path):
    sha512 = hashlib.sha512(DATA).hexdigest()
    listing = tmp_path / "GSE1_SHA512SUMS.txt.gz"
    listing.write_bytes(gzip.compress(f"{'a' * 128}  other.txt.gz\n{sha512}  file.bin\n".encode()))
    want = download.read_checksum_list(listing, "file.bin")
    assert want == Checksum("sha512", sha512)
    fetch(server.url("/data/file.bin"), tmp_path / "file.bin", checksum=want)
    with pytest.raises(DownloadError, match="no sha512 checksum listed for 'absent.gz'"):
        download.read_checksum_list(listing, "absent.gz")


@pytest.mark.parametrize(
    "text, message",
    [
        ("sha256", "is not '<algorithm>:<hex>'"),
        ("crc32:abcd", "is not '<algorithm>:<hex>'"),
        ("md5:abc", "a md5 digest has 32 hex digits"),
    ],
)
def test_bad_checksum_text(text, message):
    with pytest.raises(DownloadError, match=message):
        Checksum.parse(text, "downloads.x.checksum")


# ------------------------------------------------------------------------- config -> download jobs
def test_plan_expands_shards_and_resolves_checksum_lists():
    plan = download.plan_downloads(
        {
            "shards": {
                "url": "https://h/x/train-{shard}-of-00003.parquet",
                "file": "t/train-{shard}.parquet",
                "shards": 3,
            },
            "sums": {"url": "https://geo/GSE1_SHA512SUMS.txt.gz?x=1"},
            "gctx": {
                "url": "https://geo/GSE1.gctx.gz",
                "file": "geo/GSE1.gctx.gz",
                "checksum_list": "sums",
            },
        }
    )
    assert [j.file for j in plan["shards"]] == [f"t/train-{i:05d}.parquet" for i in range(3)]
    assert plan["shards"][2].url == "https://h/x/train-00002-of-00003.parquet"
    assert plan["sums"][0].file == "GSE1_SHA512SUMS.txt.gz"  # the URL's file name
    assert plan["gctx"][0].checksum_list == "GSE1_SHA512SUMS.txt.gz"
    assert plan["gctx"][0].path == "resources/downloads/geo/GSE1.gctx.gz"


@pytest.mark.parametrize(
    "entries, message",
    [
        (
            {"a": {"url": "https://h/{shard}.p", "shards": 2, "file": "a.p"}},
            "downloads.a: with 'shards', both url and file",
        ),
        (
            {"a": {"url": "https://h/{shard}.p"}},
            r"downloads.a: '\{shard\}' in url or file needs 'shards: N'",
        ),
        (
            {"a": {"url": "https://h/a", "checksum_list": "b"}},
            "downloads.a.checksum_list: 'b' is not an entry",
        ),
        ({"a": {"url": "https://h/a", "checksum": "md5:12"}}, "a md5 digest has 32 hex digits"),
        (
            {"a": {"url": "https://h/a", "file": "../a"}},
            "downloads.a.file: '../a' must be a relative path",
        ),
        (
            {"a": {"url": "https://h/x/f"}, "b": {"url": "https://g/f"}},
            "downloads.b.file: 'f' is also the file of downloads.a",
        ),
    ],
)
def test_plan_errors_name_the_key(entries, message):
    from scpert.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        download.plan_downloads(entries)


# ------------------------------------------------------------------------------ gunzip / extract
def test_gunzip_and_truncated_gzip(tmp_path):
    from scpert import steps

    (tmp_path / "a.gz").write_bytes(gzip.compress(DATA))
    steps.gunzip(tmp_path / "a.gz", tmp_path / "out/a")
    assert (tmp_path / "out/a").read_bytes() == DATA
    (tmp_path / "b.gz").write_bytes(gzip.compress(DATA)[:-100])
    with pytest.raises(DownloadError, match="b.gz: not a complete gzip file"):
        steps.gunzip(tmp_path / "b.gz", tmp_path / "out/b")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a"]


def test_extract_strips_a_single_top_folder_and_refuses_escapes(tmp_path):
    import io
    import tarfile
    import zipfile

    from scpert import steps

    with zipfile.ZipFile(tmp_path / "model.zip", "w") as zf:
        zf.writestr("model_v1.1/encoder.ckpt", b"enc")
        zf.writestr("model_v1.1/annotation/labels.tsv", b"x")
    steps.extract(tmp_path / "model.zip", tmp_path / "out/model")
    assert (tmp_path / "out/model/encoder.ckpt").read_bytes() == b"enc"
    assert (tmp_path / "out/model/annotation/labels.tsv").exists()
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(
        DownloadError, match="member '../outside.txt' is a link, a device or outside"
    ):
        steps.extract(tmp_path / "evil.tar", tmp_path / "out/evil")
    assert not (tmp_path / "out/evil").exists() and not (tmp_path / "outside.txt").exists()
