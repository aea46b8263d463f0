# Downloads of the paper datasets and resources (config `downloads`, scpert.data.download):
# a partial file resumed with HTTP Range, size and checksum verified, atomic rename; plus the
# decompression and extraction of archives. Loaders reference entries in `load.files`.


# Fetch one configured file: partial file + HTTP Range resume, size and checksum verified
# (published checksum, published list, or the sha256 recorded by the first download).
rule download:
    input:
        unpack(download_inputs),
    output:
        file=f"{DOWNLOAD_DIR}/{{file}}",
    log:
        "results/logs/download/{file}.log",
    localrule: True
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        downloads=1,
        mem_mb=1000,
        runtime=RES["runtime"] * 20,
    params:
        job=lambda wc: download_job(wc).recordable(),
    script:
        "../scripts/download.py"


# Decompress a .gz download (GCTX and h5ad files must be plain to be read).
rule gunzip:
    input:
        gz=f"{DOWNLOAD_DIR}/{{file}}.gz",
    output:
        file="resources/unpacked/{file}",
    log:
        "results/logs/gunzip/{file}.log",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=RES["runtime"] * 4,
    script:
        "../scripts/gunzip.py"


# Extract a tar / zip download into a folder (members outside it and links are refused).
rule extract:
    input:
        archive=lambda wc: f"{DOWNLOAD_DIR}/{ARCHIVES[wc.stem]}",
    output:
        folder=directory("resources/extracted/{stem}"),
    log:
        "results/logs/extract/{stem}.log",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=RES["runtime"] * 4,
    script:
        "../scripts/extract.py"
