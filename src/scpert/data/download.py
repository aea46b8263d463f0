"""Resumable, verified downloads of the paper datasets and resources (rule ``download``).

:func:`fetch` is the whole protocol for one file:

1. The bytes go to a partial file beside the destination, ``.<name>.part``; the destination only
   ever appears complete, by an atomic rename.
2. A partial file left by an earlier, killed job (a SLURM time limit, Ctrl-C) or by a connection
   that dropped is resumed with an HTTP ``Range: bytes=<size>-`` request. A server that answers
   ``200`` instead of ``206`` sends the whole file again and the partial file is restarted; a
   ``206`` whose ``Content-Range`` does not start at the requested byte is an error. Dropped
   connections, timeouts, 5xx and 429 answers are retried (``retries`` times, each resuming).
3. The finished file is checked against the configured ``size`` (bytes) and checksum
   (``<algorithm>:<hex>``, algorithm md5, sha1, sha256 or sha512). A checksum comes from the
   config (the source's published value, e.g. a Zenodo md5), from a published checksum list such
   as GEO's ``GSE92742_SHA512SUMS.txt.gz`` (:func:`read_checksum_list`), or -- when the source
   publishes none -- from the record the first download wrote beside the file
   (``<name>.sha256``, :func:`record_path`): the first download says in the log that it recorded
   the file's sha256, later downloads of the same file are verified against it.
4. Any definitive failure (HTTP 4xx, retries exhausted, size or checksum mismatch) raises
   :class:`DownloadError` with one line naming the URL, and removes the partial file: nothing
   is left behind. An interrupted process (a signal, KeyboardInterrupt) keeps the partial file
   so that the next run resumes it.

Progress is logged every ``progress_every`` seconds (bytes, rate, ETA).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scpert.errors import ConfigError, InputError

log = logging.getLogger(__name__)

ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
#: algorithm of the checksum recorded when the source publishes none
RECORD_ALGORITHM = "sha256"
USER_AGENT = "scpert-download/1 (+https://github.com/; python-urllib)"
#: HTTP statuses worth another attempt (the rest of 4xx/5xx are definitive)
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
CHUNK_BYTES = 1 << 20


class DownloadError(InputError):
    """A download failed for good; the message names the URL and what went wrong."""


class _Transient(Exception):
    """A transfer problem worth retrying (dropped connection, timeout, 5xx)."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str, where: str = "checksum") -> Checksum:
        """``"<algorithm>:<hex>"``, e.g. ``"md5:0123..."``; raises DownloadError naming ``where``."""
        algorithm, sep, digest = str(text).strip().partition(":")
        algorithm, digest = algorithm.lower(), digest.strip().lower()
        if not sep or algorithm not in ALGORITHMS:
            raise DownloadError(
                f"{where}: '{text}' is not '<algorithm>:<hex>' with algorithm one of "
                f"{', '.join(ALGORITHMS)}"
            )
        n_hex = hashlib.new(algorithm).digest_size * 2
        if not re.fullmatch(f"[0-9a-f]{{{n_hex}}}", digest):
            raise DownloadError(
                f"{where}: a {algorithm} digest has {n_hex} hex digits, got '{digest}'"
            )
        return cls(algorithm, digest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


def partial_path(dest: str | Path) -> Path:
    """The partial file of ``dest`` (hidden, beside it; resumed by the next attempt)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def record_path(dest: str | Path) -> Path:
    """Where the first download of a file without a published checksum records its sha256."""
    dest = Path(dest)
    return dest.with_name(f"{dest.name}.{RECORD_ALGORITHM}")


def file_digest(path: str | Path, algorithm: str = RECORD_ALGORITHM) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            h.update(block)
    return h.hexdigest()


def read_checksum_list(path: str | Path, filename: str, algorithm: str = "sha512") -> Checksum:
    """The checksum of ``filename`` in a published list (``<hex>  <name>`` lines, as written by
    ``sha512sum``; gzip-compressed or plain), e.g. GEO's ``GSE92742_SHA512SUMS.txt.gz``."""
    path = Path(path)
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rt") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 2 and fields[-1].lstrip("*").split("/")[-1] == filename:
                return Checksum.parse(f"{algorithm}:{fields[0]}", f"{path}: entry of {filename}")
    raise DownloadError(f"{path}: no {algorithm} checksum listed for '{filename}'")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def read_record(dest: str | Path) -> Checksum | None:
    record = record_path(dest)
    if not record.is_file():
        return None
    return Checksum.parse(record.read_text().split()[0], str(record))


def fetch(
    url: str,
    dest: str | Path,
    *,
    size: int | None = None,
    checksum: str | Checksum | None = None,
    record: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress_every: float = 5.0,
    chunk_bytes: int = CHUNK_BYTES,
) -> Checksum:
    """Download ``url`` to ``dest`` (see the module docstring); returns the verified checksum.

    size: expected bytes (checked when given). checksum: the expected ``"<alg>:<hex>"``; without
    it, the checksum recorded by an earlier download of ``dest`` is verified, or -- on the first
    download -- the file's sha256 is recorded beside it (when ``record``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    expected = Checksum.parse(checksum, url) if isinstance(checksum, str) else checksum
    recorded = read_record(dest) if expected is None else None
    if recorded is not None:
        log.info(
            "%s: no published checksum; verifying the one recorded in %s", url, record_path(dest)
        )
    try:
        _transfer_with_retries(
            url, part, size, retries, timeout, backoff, progress_every, chunk_bytes
        )
        got = part.stat().st_size
        if size is not None and got != size:
            raise DownloadError(f"{url}: received {got} bytes, expected size {size}")
        want = expected or recorded
        digest = Checksum(
            want.algorithm if want else RECORD_ALGORITHM,
            file_digest(part, want.algorithm if want else RECORD_ALGORITHM),
        )
        if want is not None and digest != want:
            source = "recorded by the first download" if want is recorded else "expected"
            raise DownloadError(
                f"{url}: {digest.algorithm} {digest.hexdigest} differs from the {source} {want.hexdigest}"
            )
        os.replace(part, dest)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    if want is None and record:
        record_path(dest).write_text(f"{digest}  {got}\n")
        log.info(
            "%s: the source publishes no checksum; recorded %s in %s -- later downloads of this "
            "file are verified against it",
            url,
            digest,
            record_path(dest),
        )
    else:
        log.info("%s: %d bytes, %s verified", url, got, digest.algorithm)
    return digest


def _transfer_with_retries(url, part, size, retries, timeout, backoff, progress_every, chunk_bytes):
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, size, timeout, progress_every, chunk_bytes)
            return
        except _Transient as err:
            if attempt == retries:
                raise DownloadError(f"{url}: failed after {retries + 1} attempts: {err}") from None
            have = part.stat().st_size if part.exists() else 0
            log.warning(
                "%s: %s; retrying from byte %d (attempt %d of %d)",
                url,
                err,
                have,
                attempt + 2,
                retries + 1,
            )
            time.sleep(backoff * (attempt + 1))


def _transfer(url: str, part: Path, size: int | None, timeout, progress_every, chunk_bytes) -> None:
    """One HTTP request: resume ``part`` if it exists, append what the server sends."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        log.warning("%s: partial file is larger than the expected size; restarting", url)
        part.unlink()
        offset = 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            total = _content_range_total(err.headers.get("Content-Range", ""))
            if total == offset:
                return  # the partial file is already complete
            log.warning("%s: the server refuses to resume at byte %d; restarting", url, offset)
            part.unlink()
            raise _Transient("HTTP 416 Range Not Satisfiable") from None
        if err.code in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {err.code} {err.reason}") from None
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        # DNS failures and bad URLs are definitive; refused/reset/timed-out connections are not
        if isinstance(err.reason, OSError) and not isinstance(err.reason, socket.gaierror):
            raise _Transient(f"connection failed ({err.reason})") from None
        raise DownloadError(f"{url}: {err.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Transient(f"connection failed ({err})") from None
    with response:
        mode = "ab"
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(
                    f"{url}: asked to resume at byte {offset}, the server sent a range from "
                    f"{response.headers.get('Content-Range')!r}"
                )
        elif offset:
            log.info("%s: the server ignores Range requests; downloading from the start", url)
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        _copy(url, response, part, mode, offset, total, progress_every, chunk_bytes)
        received = part.stat().st_size
        if length is not None and received < offset + int(length):
            raise _Transient(f"connection closed at byte {received} of {offset + int(length)}")


def _copy(url, response, part: Path, mode: str, offset: int, total, progress_every, chunk_bytes):
    start = last = time.monotonic()
    done = 0
    with open(part, mode) as out:
        while True:
            try:
                block = response.read(chunk_bytes)
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
                out.flush()
                raise _Transient(f"connection dropped ({err.__class__.__name__}: {err})") from None
            if not block:
                break
            out.write(block)
            done += len(block)
            now = time.monotonic()
            if now - last >= progress_every:
                last = now
                rate = done / max(now - start, 1e-9)
                have = offset + done
                eta = f", ETA {(total - have) / rate:.0f} s" if total and rate > 0 else ""
                of = f" of {total}" if total else ""
                log.info("%s: %d%s bytes, %.1f MB/s%s", url, have, of, rate / 1e6, eta)


def _content_range_start(value: str) -> int | None:
    match = re.match(r"bytes (\d+)-", value.strip())
    return int(match.group(1)) if match else None


def _content_range_total(value: str) -> int | None:
    match = re.search(r"/(\d+)\s*$", value.strip())
    return int(match.group(1)) if match else None


# ------------------------------------------------------------------------------ config -> files
#: folder (relative to the workflow's working directory) that downloads are written to
DOWNLOAD_DIR = "resources/downloads"


@dataclass(frozen=True)
class DownloadJob:
    """One file to fetch: entry ``name`` of the config's ``downloads`` (shard ``shard``)."""

    name: str
    url: str
    file: str  # path relative to DOWNLOAD_DIR
    size: int | None = None
    checksum: str | None = None
    checksum_list: str | None = None  # file (relative to DOWNLOAD_DIR) of a published list
    checksum_algorithm: str = "sha512"
    shard: int | None = None

    @property
    def path(self) -> str:
        return f"{DOWNLOAD_DIR}/{self.file}"

    def recordable(self) -> dict:
        """Plain values for a rule's ``params`` (a changed URL or checksum reruns the job)."""
        return {
            "name": self.name,
            "url": self.url,
            "size": self.size,
            "checksum": self.checksum,
            "checksum_algorithm": self.checksum_algorithm if self.checksum_list else None,
        }


def plan_downloads(entries: dict) -> dict[str, list[DownloadJob]]:
    """Config ``downloads`` -> entry name -> its files (several for a sharded entry).

    An entry: ``url`` and ``file`` (relative to ``resources/downloads``; default: the URL's last
    path component), optional ``size`` (bytes), ``checksum`` (``<alg>:<hex>``, the source's
    published value) or ``checksum_list`` (the name of another entry: a published list such as
    GEO's SHA512SUMS, looked up by the URL's file name; ``checksum_algorithm``, default sha512),
    and ``shards``: N with ``{shard}`` in ``url`` and ``file``, formatted with ``shard_format``
    (default ``05d``: Tahoe-100M's ``train-00000-of-03388.parquet``). Errors name the key.
    """
    plan: dict[str, list[DownloadJob]] = {}
    for name, entry in entries.items():
        key = f"downloads.{name}"
        url = entry.get("url")
        if not url:
            raise ConfigError(f"{key}.url is required")
        file = entry.get("file") or url_filename(url)
        if file.startswith("/") or ".." in Path(file).parts:
            raise ConfigError(f"{key}.file: '{file}' must be a relative path without '..'")
        if entry.get("checksum"):
            try:
                Checksum.parse(entry["checksum"], f"{key}.checksum")
            except DownloadError as err:
                raise ConfigError(str(err)) from None
        listed = entry.get("checksum_list")
        if listed and listed not in entries:
            raise ConfigError(f"{key}.checksum_list: '{listed}' is not an entry of downloads")
        if listed and entries[listed].get("shards"):
            raise ConfigError(f"{key}.checksum_list: '{listed}' is sharded, expected one file")
        shards = entry.get("shards")
        if shards and ("{shard}" not in url or "{shard}" not in file):
            raise ConfigError(f"{key}: with 'shards', both url and file must contain '{{shard}}'")
        if not shards and ("{shard}" in url or "{shard}" in file):
            raise ConfigError(f"{key}: '{{shard}}' in url or file needs 'shards: N'")
        if entry.get("size") is not None and shards:
            raise ConfigError(f"{key}.size: one size cannot describe {shards} shards")
        fmt = entry.get("shard_format", "05d")
        jobs = []
        for shard in range(shards) if shards else [None]:
            label = format(shard, fmt) if shard is not None else None
            jobs.append(
                DownloadJob(
                    name=name,
                    url=url.replace("{shard}", label) if label else url,
                    file=file.replace("{shard}", label) if label else file,
                    size=entry.get("size"),
                    checksum=entry.get("checksum"),
                    checksum_list=None,  # filled below, once every entry's file is known
                    checksum_algorithm=entry.get("checksum_algorithm", "sha512"),
                    shard=shard,
                )
            )
        plan[name] = jobs
    for name, entry in entries.items():
        if entry.get("checksum_list"):
            listed = plan[entry["checksum_list"]][0].file
            plan[name] = [
                DownloadJob(**{**job.__dict__, "checksum_list": listed}) for job in plan[name]
            ]
    seen: dict[str, str] = {}
    for name, jobs in plan.items():
        for job in jobs:
            if job.file in seen:
                raise ConfigError(
                    f"downloads.{name}.file: '{job.file}' is also the file of downloads.{seen[job.file]}"
                )
            seen[job.file] = name
    return plan


def url_filename(url: str) -> str:
    """The last path component of a URL (query string dropped): the name checksum lists use."""
    return url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
