"""Rule steps of the loaders: import_dataset, import_citeseq, prepare_l1000 (scpert.data.sources)."""

from __future__ import annotations

import logging
import tempfile
import zipfile
from pathlib import Path

from scpert import runtime
from scpert.data import schema, sources

log = logging.getLogger(__name__)


def _extract_member(archive, member: str, folder: Path) -> str:
    """One file of a tar/zip archive, extracted into ``folder``; its path."""
    import tarfile

    from scpert.data.schema import SchemaError

    target = folder / Path(member).name
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            if member not in zf.namelist():
                raise SchemaError(f"{archive}: member '{member}' is not in the archive")
            target.write_bytes(zf.read(member))
    else:
        with tarfile.open(archive) as tar:
            try:
                handle = tar.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise SchemaError(f"{archive}: member '{member}' is not a file of the archive")
            target.write_bytes(handle.read())
    return str(target)


def resolve_files(files: dict, members: dict, folder: Path) -> dict:
    """Input files by role, archive members extracted into ``folder``."""
    out = {}
    for role, path in files.items():
        out[role] = _extract_member(path, members[role], folder) if members.get(role) else path
    return out


def import_dataset(
    source: str,
    files: dict,
    members: dict,
    options: dict,
    control: str,
    out_counts,
    out_drugs,
    where: str,
) -> None:
    """Rule import_dataset: a published dataset -> ``counts.h5ad`` (raw counts in the contract)
    and ``drugs.tsv`` (the perturbation table: drug, smiles, moa, targets, type)."""
    with tempfile.TemporaryDirectory(prefix="scpert-import-") as tmp:
        loaded = sources.load(
            source, resolve_files(files, members, Path(tmp)), options, control, where
        )
    adata = loaded.adata
    schema.validate(adata, f"{where} ({source})", control=control, kind="raw")
    runtime.write_h5ad(adata, out_counts)
    runtime.write_tsv(loaded.perturbations, out_drugs)
    log.info(
        "wrote %s (%d cells x %d genes) and %s (%d perturbations)",
        out_counts,
        adata.n_obs,
        adata.n_vars,
        out_drugs,
        len(loaded.perturbations),
    )


def import_citeseq(
    matrices, out_path, *, member=None, annotation=None, annotation_column="cell_type", samples=None
) -> None:
    """Rule import_citeseq: 10x feature-barcode matrices (RNA + ADT) -> ``citeseq.h5ad``."""
    from scpert.data.sources.citeseq import read_citeseq

    with tempfile.TemporaryDirectory(prefix="scpert-citeseq-") as tmp:
        path = _extract_member(matrices, member, Path(tmp)) if member else matrices
        adata = read_citeseq(
            path, samples=samples, annotation=annotation, annotation_column=annotation_column
        )
    runtime.write_h5ad(adata, out_path)


def prepare_l1000(
    gctx, out_path, *, sig_info=None, gene_info=None, landmarks_only=True, pert_types=("trt_cp",)
) -> None:
    """Rule prepare_l1000: GSE92742 level 5 -> landmark x compound-signature GCTX with metadata."""
    from scpert.data.sources.lincs import compact_l1000

    def write(tmp: Path) -> None:
        rows, cols = compact_l1000(
            gctx,
            tmp,
            sig_info=sig_info,
            gene_info=gene_info,
            landmarks_only=landmarks_only,
            pert_types=pert_types,
        )
        log.info("wrote %d rows x %d signatures", rows, cols)

    runtime.write_atomic(out_path, write)
