# scpert: from raw data (or the embedded synthetic world) to the papers' metric tables and figures.
from snakemake.utils import min_version

min_version("9.0")


# The default config applies only when no --configfile is given: every config file is complete
# on its own (a --configfile replaces the default instead of being merged onto it).
if not workflow.overwrite_configfiles:

    configfile: workflow.source_path("config/config.yaml")


# common.smk validates the config against config/schema.yaml first (one line per error).
include: "workflow/rules/common.smk"
include: "workflow/rules/real_data.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/world.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/out_of_core.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/priors.smk"
include: "workflow/rules/latent.smk"
include: "workflow/rules/cell_state.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/experiment_common.smk"
include: "workflow/rules/experiments.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),


# every rule is defined: apply config `benchmark` (common.smk)
drop_benchmarks_unless_configured()
