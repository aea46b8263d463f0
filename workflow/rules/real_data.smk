# Helpers of the real-data rules (download.smk, sources.smk, out_of_core.smk): the configured
# downloads, loader datasets and out-of-core shards, and input functions over them.

import re  # noqa: E402
from dataclasses import asdict  # noqa: E402

from scpert.data.download import DOWNLOAD_DIR, plan_downloads  # noqa: E402
from scpert.data.shard_settings import ONE_PASS_FLAVORS  # noqa: E402
from scpert.data.shard_settings import Settings as ShardSettings  # noqa: E402
from scpert.data.sources import SHARDED, SOURCES, check_files  # noqa: E402

# -- downloads (download.smk) ------------------------------------------------------------------
validate(config, "../../config/sources.schema.yaml")

try:
    DOWNLOADS = plan_downloads(config.get("downloads", {}))
except ConfigError as err:
    raise WorkflowError(f"config: {err}") from None
#: file under resources/downloads -> its DownloadJob
DOWNLOAD_FILES = {job.file: job for jobs in DOWNLOADS.values() for job in jobs}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def download_job(wildcards):
    job = DOWNLOAD_FILES.get(wildcards.file)
    if job is None:
        raise WorkflowError(
            f"{DOWNLOAD_DIR}/{wildcards.file} is not the file of any entry of config 'downloads'"
        )
    return job


def download_inputs(wildcards):
    """The published checksum list of the file, when its entry names one."""
    job = download_job(wildcards)
    return (
        {"checksum_list": f"{DOWNLOAD_DIR}/{job.checksum_list}"}
        if job.checksum_list
        else {}
    )


def archive_stem(file):
    """Folder name of an extracted archive: the file name without its archive suffix."""
    for suffix in ARCHIVE_SUFFIXES:
        if file.endswith(suffix):
            return file[: -len(suffix)]
    return None


#: extracted folder (relative to resources/extracted) -> archive file under resources/downloads
ARCHIVES = {archive_stem(f): f for f in DOWNLOAD_FILES if archive_stem(f)}


def data_file(value, key):
    """A `load.files` value -> (input path or paths, member inside an archive or None).

    A string names an entry of `downloads` (its file, or all shard files of a sharded entry) or
    else is a path; ``{download: NAME, gunzip: true}`` is the decompressed file of a .gz entry;
    ``{download: NAME, member: PATH}`` is one file inside an archive entry.
    """
    if isinstance(value, str):
        if value in DOWNLOADS:
            paths = [job.path for job in DOWNLOADS[value]]
            return (paths if DOWNLOADS[value][0].shard is not None else paths[0]), None
        return value, None
    name = value.get("download")
    if name not in DOWNLOADS:
        raise WorkflowError(
            f"config: {key}.download: '{name}' is not an entry of 'downloads'"
        )
    job = DOWNLOADS[name][0]
    if value.get("gunzip"):
        if not job.file.endswith(".gz"):
            raise WorkflowError(f"config: {key}: downloads.{name} is not a .gz file")
        return f"resources/unpacked/{job.file[:-3]}", None
    if value.get("member"):
        if not archive_stem(job.file):
            raise WorkflowError(
                f"config: {key}: downloads.{name} is not a tar or zip archive"
            )
        return job.path, value["member"]
    raise WorkflowError(
        f"config: {key}: give 'gunzip: true' or 'member: PATH' with 'download'"
    )


# -- loaders (sources.smk) ---------------------------------------------------------------------
LOADED = [
    name
    for name, ds in config["datasets"].items()
    if ds["source"] in SOURCES and not ds.get("out_of_core")
]
for _name, _ds in config["datasets"].items():
    if _ds["source"] in SOURCES:
        try:
            check_files(
                _ds["source"],
                _ds.get("load", {}).get("files", {}),
                f"datasets.{_name}.load",
            )
        except ConfigError as err:
            raise WorkflowError(f"config: {err}") from None
NEVER = "(?!x)x"  # a wildcard constraint that matches nothing (no dataset of that kind)


def names_regex(names):
    return "|".join(re.escape(n) for n in names) if names else NEVER


def resolve_load_files(name):
    """Dataset `name`'s `load.files`: role -> input path(s), role -> archive member."""
    files = config["datasets"][name].get("load", {}).get("files", {})
    paths, members = {}, {}
    for role, value in files.items():
        path, member = data_file(value, f"datasets.{name}.load.files.{role}")
        paths[role] = path
        if member:
            members[role] = member
    return paths, members


# resolved at parse time, so that a bad `load.files` entry fails before any job runs
LOAD_FILES = {
    name: resolve_load_files(name)
    for name, ds in config["datasets"].items()
    if ds["source"] in SOURCES
}


def load_files(name):
    """(role -> input path(s), role -> archive member) of loader dataset `name`."""
    return LOAD_FILES[name]


def resource_file(value, key):
    """A resource file (citeseq, lincs) -> its input path; archive members are not resources."""
    if value is None:
        return None
    path, member = data_file(value, key)
    if member:
        raise WorkflowError(
            f"config: {key}: archive members are read only by dataset loaders"
        )
    return path


# resources resolved at parse time too (a bad entry fails before any job runs)
for _kind, _keys in (
    ("citeseq", ("matrices", "annotation")),
    ("lincs", ("gctx", "sig_info", "gene_info")),
):
    for _name, _entry in config.get(_kind, {}).items():
        for _key in _keys:
            resource_file(_entry.get(_key), f"{_kind}.{_name}.{_key}")


def citeseq_inputs(wildcards):
    entry = config["citeseq"][wildcards.name]
    found = {}
    for key in ("matrices", "annotation"):
        path = resource_file(entry.get(key), f"citeseq.{wildcards.name}.{key}")
        if path:
            found[key] = path
    return found


def lincs_inputs(wildcards):
    entry = config["lincs"][wildcards.name]
    found = {}
    for key in ("gctx", "sig_info", "gene_info"):
        path = resource_file(entry.get(key), f"lincs.{wildcards.name}.{key}")
        if path:
            found[key] = path
    return found


# -- out-of-core shards (out_of_core.smk) ------------------------------------------------------
OUT_OF_CORE = [name for name, ds in config["datasets"].items() if ds.get("out_of_core")]
for _name in OUT_OF_CORE:
    if config["datasets"][_name]["source"] not in SHARDED:
        raise WorkflowError(
            f"config: datasets.{_name}.out_of_core: source "
            f"'{config['datasets'][_name]['source']}' cannot be streamed (streamed: {', '.join(SHARDED)})"
        )
    _flavor = config["datasets"][_name]["hvg"]["flavor"]
    if _flavor not in ONE_PASS_FLAVORS:
        raise WorkflowError(
            f"config: datasets.{_name}.hvg.flavor: '{_flavor}' needs a second pass over the cells "
            f"of each split; out-of-core datasets take {' or '.join(ONE_PASS_FLAVORS)}"
        )
OOC_DATASET = names_regex(OUT_OF_CORE)


def shard_role(dataset):
    """The `load.files` role holding the shard files (Tahoe: shards; h5ad sources: h5ad)."""
    return SOURCES[config["datasets"][dataset]["source"]].shard_role


def shard_files(dataset):
    """The shard files of an out-of-core dataset, in order."""
    paths = load_files(dataset)[0][shard_role(dataset)]
    return [paths] if isinstance(paths, str) else list(paths)


def shard_ids(dataset):
    return [f"{i:05d}" for i in range(len(shard_files(dataset)))]


def meta_files(dataset):
    """The dataset's load files other than its shards (metadata the reader needs)."""
    role = shard_role(dataset)
    return {k: v for k, v in load_files(dataset)[0].items() if k != role}


def shard_inputs(wildcards):
    """One shard plus the dataset's other load files."""
    files = meta_files(wildcards.dataset)
    return {"shard": shard_files(wildcards.dataset)[int(wildcards.shard)], **files}


def shard_settings(wildcards):
    ds = config["datasets"][wildcards.dataset]
    return asdict(ShardSettings.from_config(ds["preprocess"], ds["out_of_core"]))


def shard_options(wildcards):
    return loader_options(wildcards.dataset)
