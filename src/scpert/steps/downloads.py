"""Rule steps of the downloads: download, gunzip, extract (scpert.data.download)."""

from __future__ import annotations

import gzip
import logging
import shutil
import tarfile
import zipfile
from pathlib import Path

from scpert import runtime
from scpert.data import download as dl

log = logging.getLogger(__name__)


def download(job: dict, out_path, checksum_list=None) -> None:
    """Rule download: one file of config ``downloads`` (``job``: DownloadJob.recordable())."""
    checksum = job.get("checksum")
    if checksum_list:
        checksum = dl.read_checksum_list(
            checksum_list, dl.url_filename(job["url"]), job.get("checksum_algorithm") or "sha512"
        )
        log.info("%s: published %s checksum from %s", job["url"], checksum.algorithm, checksum_list)
    dl.fetch(job["url"], out_path, size=job.get("size"), checksum=checksum)


def gunzip(gz_path, out_path) -> None:
    """Rule gunzip: a ``.gz`` download decompressed (GCTX files must be plain HDF5 to be read)."""

    def write(tmp: Path) -> None:
        try:
            with gzip.open(gz_path, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, length=dl.CHUNK_BYTES)
        except (OSError, EOFError) as err:
            raise dl.DownloadError(f"{gz_path}: not a complete gzip file ({err})") from None

    runtime.write_atomic(out_path, write)
    log.info("decompressed %s -> %s", gz_path, out_path)


def extract(archive, out_dir) -> None:
    """Rule extract: a ``.tar``/``.tar.gz``/``.zip`` download extracted into a folder; members
    outside the folder, links and devices are refused. An archive whose members all sit in one
    top folder (``model_v1.1/...``) is extracted without it, like ``tar --strip-components=1``,
    so that the folder is the release itself (e.g. SCimilarity's ``encoder.ckpt`` at its top)."""
    archive = Path(archive)
    with runtime.atomic_dir(out_dir) as tmp:
        root = (tmp / ".scpert-extract").resolve()
        root.mkdir()
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
                for name in names:
                    _check_member(archive, name, root, is_plain=True)
                zf.extractall(root)
        else:
            try:
                with tarfile.open(archive) as tar:
                    members = tar.getmembers()
                    names = [m.name for m in members]
                    for m in members:
                        _check_member(archive, m.name, root, is_plain=m.isfile() or m.isdir())
                    # Python >= 3.11.4's extraction filter refuses the same (belt and braces)
                    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                    tar.extractall(root, members=members, **safe)
            except tarfile.TarError as err:
                raise dl.DownloadError(
                    f"{archive}: not a readable tar or zip archive ({err})"
                ) from None
        entries = list(root.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else root
        for entry in top.iterdir():
            entry.rename(tmp / entry.name)
        shutil.rmtree(root)
    log.info("extracted %d members of %s -> %s", len(names), archive, out_dir)


def _check_member(archive, name: str, root: Path, is_plain: bool) -> None:
    target = (root / name).resolve()
    if not is_plain or not (target == root or target.is_relative_to(root)):
        raise dl.DownloadError(
            f"{archive}: member '{name}' is a link, a device or outside the archive's folder; refused"
        )
