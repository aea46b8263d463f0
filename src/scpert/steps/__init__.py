"""The workflow's rules as plain functions of paths: one function per rule, named after the rule.

The Snakemake scripts (``workflow/scripts/<rule>.py``) only unpack ``snakemake`` and call
``scpert.steps.<rule>`` through :func:`scpert.runtime.run_step`, so every rule is testable without
Snakemake and rules stay thin. Functions are grouped by family in submodules and resolved lazily
(``steps.train`` imports :mod:`scpert.steps.methods` on first use), so a job imports only what its
rule needs (no torch in a preprocessing job, no RDKit in the Snakemake head process).

========================  =====================================
rule                      function
========================  =====================================
simulate_world            :func:`scpert.steps.data.simulate_world`
world_vs_real             :func:`scpert.steps.world.world_vs_real`
preprocess                :func:`scpert.steps.data.preprocess`
make_split                :func:`scpert.steps.data.make_split`
select_hvg                :func:`scpert.steps.data.select_hvg`
pretrain_graph            :func:`scpert.steps.priors.pretrain_graph`
pretrain_mdt              :func:`scpert.steps.priors.pretrain_mdt`
evaluate_priors           :func:`scpert.steps.priors.evaluate_priors`
train_translator          :func:`scpert.steps.priors.train_translator`
infer_protein             :func:`scpert.steps.priors.infer_protein`
train_vmcs                :func:`scpert.steps.priors.train_vmcs`
measure_protein           :func:`scpert.steps.priors.measure_protein`
finetune_translator       :func:`scpert.steps.priors.finetune_translator`
validate_pqm              :func:`scpert.steps.priors.validate_pqm`
finetune_latent           :func:`scpert.steps.latent.finetune_latent`
pretrain_perturbdiff      :func:`scpert.steps.pretrain.pretrain_perturbdiff`
train                     :func:`scpert.steps.methods.train`
sample                    :func:`scpert.steps.methods.sample`
oracle                    :func:`scpert.steps.evaluate.oracle`
evaluate                  :func:`scpert.steps.evaluate.evaluate`
aggregate                 :func:`scpert.steps.evaluate.aggregate`
comparisons               :func:`scpert.steps.evaluate.comparisons`
heatmap                   :func:`scpert.steps.figures.heatmap`
figure_radar              :func:`scpert.steps.figures.figure_radar`
figure_scatter            :func:`scpert.steps.figures.figure_scatter`
figure_combinations       :func:`scpert.steps.figures.figure_combinations`
figure_dose_response      :func:`scpert.steps.figures.figure_dose_response`
figure_padj_density       :func:`scpert.steps.figures.figure_padj_density`
figure_umap               :func:`scpert.steps.figures.figure_umap`
figure_gsea               :func:`scpert.steps.figures.figure_gsea`
figure_ablations          :func:`scpert.steps.figures.figure_ablations`
figure_comparisons        :func:`scpert.steps.figures.figure_comparisons`
figure_protein_modality   :func:`scpert.steps.figures.figure_protein_modality`
corrupt_dataset           :func:`scpert.steps.experiments.corrupt_dataset`
diversity_dataset         :func:`scpert.steps.experiments.diversity_dataset`
experiment_table          :func:`scpert.steps.experiments.experiment_table`
figure_robustness         :func:`scpert.steps.experiments.figure_robustness`
figure_diversity          :func:`scpert.steps.experiments.figure_diversity`
screening_sample          :func:`scpert.steps.experiments.screening_sample`
screening_screen          :func:`scpert.steps.experiments.screening`
download                  :func:`scpert.steps.downloads.download`
gunzip                    :func:`scpert.steps.downloads.gunzip`
extract                   :func:`scpert.steps.downloads.extract`
import_dataset            :func:`scpert.steps.sources.import_dataset`
import_citeseq            :func:`scpert.steps.sources.import_citeseq`
prepare_l1000             :func:`scpert.steps.sources.prepare_l1000`
qc_shard                  :func:`scpert.steps.out_of_core.qc_shard`
plan_shards               :func:`scpert.steps.out_of_core.plan_shards`
preprocess_shard          :func:`scpert.steps.out_of_core.preprocess_shard`
gather_shards             :func:`scpert.steps.out_of_core.gather_shards`
select_hvg_streamed       :func:`scpert.steps.out_of_core.select_hvg_streamed`
perturbation_table        :func:`scpert.steps.out_of_core.perturbation_table`
========================  =====================================
"""

from __future__ import annotations

import importlib

#: rule name -> submodule of scpert.steps holding its function
RULES = {
    "simulate_world": "data",
    "world_vs_real": "world",
    "preprocess": "data",
    "make_split": "data",
    "select_hvg": "data",
    "pretrain_graph": "priors",
    "pretrain_mdt": "priors",
    "evaluate_priors": "priors",
    "train_translator": "priors",
    "infer_protein": "priors",
    "train_vmcs": "priors",
    "measure_protein": "priors",
    "finetune_translator": "priors",
    "validate_pqm": "priors",
    "finetune_latent": "latent",
    "pretrain_perturbdiff": "pretrain",
    "train": "methods",
    "sample": "methods",
    "oracle": "evaluate",
    "evaluate": "evaluate",
    "aggregate": "evaluate",
    "comparisons": "evaluate",
    "heatmap": "figures",
    "figure_radar": "figures",
    "figure_scatter": "figures",
    "figure_combinations": "figures",
    "figure_dose_response": "figures",
    "figure_padj_density": "figures",
    "figure_umap": "figures",
    "figure_gsea": "figures",
    "figure_ablations": "figures",
    "figure_comparisons": "figures",
    "figure_protein_modality": "figures",
    "corrupt_dataset": "experiments",
    "diversity_dataset": "experiments",
    "experiment_table": "experiments",
    "figure_robustness": "experiments",
    "figure_diversity": "experiments",
    "screening_sample": "experiments",
    "screening": "experiments",
    "download": "downloads",
    "gunzip": "downloads",
    "extract": "downloads",
    "import_dataset": "sources",
    "import_citeseq": "sources",
    "prepare_l1000": "sources",
    "qc_shard": "out_of_core",
    "plan_shards": "out_of_core",
    "preprocess_shard": "out_of_core",
    "gather_shards": "out_of_core",
    "select_hvg_streamed": "out_of_core",
    "perturbation_table": "out_of_core",
}

__all__ = sorted(RULES)


def __getattr__(name: str):
    if name in RULES:
        module = importlib.import_module(f"scpert.steps.{RULES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'scpert.steps' has no attribute '{name}'")
