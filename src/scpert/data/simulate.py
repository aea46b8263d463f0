"""The synthetic perturbation world (DESIGN §5): every raw artifact the pipeline reads, plus truth.

Generative model (all randomness from one ``numpy.random.Generator`` seeded by ``params["seed"]``):

Genes
    Real symbols: ``n_landmarks`` L1000 landmarks (``resources/genes/l1000_landmarks.tsv``) and the
    rest from the SCimilarity gene order, never another landmark. ``protein_coding`` marks all
    landmarks plus symbols that do not look non-coding (naming heuristic ``NONCODING_SYMBOL``:
    ``LINC``/``MIR``/``SNOR``, ``-AS1``, clone-based ``AC012345.1``, ...). 70 % of genes belong to
    one of ``n_programs`` co-expression programs with loading ``W[g, p] ~ ±N(1, 0.25)``.
Cells
    log-rate ``b_g + W a_l + o_lg + phase_φ + W z_c + batch_kg + Δ_g`` and counts
    ``NB(size=dispersion, mean=L * s_c * softmax(log-rate))``: ``b_g`` gene baseline, ``a_l`` the
    line's program activity (lineage profile + line deviation), ``o_lg`` line-specific gene offsets,
    ``phase_φ`` raises one cell-cycle program per non-first phase (programs 0, 1, ...), ``z_c ~
    N(0, 0.25²)`` per cell and program (co-expression), ``batch_kg ~ N(0, batch_effect_sd²)`` plate
    shift, ``s_c`` plate library factor × cell size factor (log-normal, sd 0.2 and 0.65), ``L``
    the library size calibrated so that the expected fraction of zero counts,
    ``mean((r / (r + μ))^r)``, equals ``zero_fraction``.
Drug effects
    Each MoA (named after a group of ``resources/drugs/drug_panel.tsv``, whose structures cluster
    by group: the drug's scaffold group) moves 1–2 target programs (not the cell-cycle ones) with
    a sign, and every program a little (``N(0, (0.3 · moa_effect_size)²)``, the same for all its
    drugs: a mechanism's downstream response is broad). Drugs are drawn from the MoAs' scaffold
    groups; a fraction ``moa_scaffold_mismatch`` of them is given the MoA of another group
    (scaffold hopping / activity cliffs: structural neighbours with another mechanism), along a
    random cycle of the MoAs, so every MoA receives drugs of one other group and keeps a majority
    of its own (:func:`moa_mismatch_counts`). A
    drug's program effect is its (assigned) MoA's times ``1 + N(0, 0.25²)`` plus one off-target
    program, and it moves a few genes directly (its targets within the MoA programs and ten random
    genes); its DTI targets, L1000 signatures and ``drugs.tsv`` ``moa`` follow the assigned MoA,
    ``drugs.tsv`` ``scaffold`` names its panel group. Dose enters through a Hill curve
    ``f(d) = d^h / (d^h + EC50^h)`` with per-drug EC50 (log10 ~ N(-0.7, 0.8²) µM) and
    ``h ~ U(0.8, 2)``.
    ``Δ_g = Σ_i f_i(d_i) [ Σ_p W[g,p] (e_ip S_lp M_φp + a_i σ_l v_p) + t_ig exp(mean_p log S_lp) ]``
    with line sensitivities ``S_lp`` (lineage + line, log-normal), phase response multipliers
    ``M_φp`` (1 for the first phase) and the shared response ``a_i σ_l v_p`` (below).
    Combinations add ``f_a f_b Σ_p W[g,p] I_abp S_lp`` with ``I_abp ~ N(0, interaction_sd²)`` on
    the union of both MoAs' programs; their parts' shared responses add up.
Shared response
    A common program every drug moves, the systematic part of perturbation responses (in the real
    A375 L1000 plate of ``resources/realism/`` the mean response of 59 compounds has proliferation
    genes TOP2A, CCNB2, PCNA, PLK1, CDK1 at the top; Systema's reference corrects for it). Program
    effect ``v`` (P,): the cell-cycle programs at ``-1.5`` (proliferation goes down), every other
    program ``N(0, 1)``, scaled to root-mean-square ``shared_response_size`` over the programs.
    Drug ``i`` moves it with strength ``a_i ~ logN(0, shared_response_drug_sd²)`` times its Hill
    fraction ``f_i(d)``; cell line ``l`` responds with sensitivity ``σ_l ~ logN(0,
    shared_response_line_sd²)`` (not with ``S_lp`` or ``M_φp``). Its draws happen whatever its size,
    so ``shared_response_size: 0`` gives the same world without it. ``ground_truth.h5ad``
    ``uns["shared_response"]`` holds ``v`` (``program``), ``W v`` (``genes``) and ``σ_l``
    (``line_sensitivity``); ``uns["drug_potency"]`` ``shared_strength`` holds ``a_i``.
Calibration against real data
    The shared response, the MoAs' broad component, the EC50 distribution, the cell size factor
    and the L1000 measurement (z per log-rate unit, replicate noise) were chosen so that every
    statistic of rule ``world_vs_real`` (:mod:`scpert.data.realism`) lies within ±25 % of the real
    references on the default world (docs/world_vs_real.md: the table before and after, and the
    command that reproduces it).
Truth
    ``ground_truth.h5ad`` X = ``log1p(1e4 · E[p_g])`` where ``p`` is the softmax of the log-rate and
    the expectation runs over the phase mix, the plates and the cell noise ``z`` (log-normal mean
    correction ``½ σ_z² Σ_p W²``); this is the noise-free expression, not the mean of noisy log1p
    values. ``layers["lfc"]`` = X(condition) − X(same line's control). The cell model is saved too
    (``obsm["log_rate"]``: the noise-free log-rate per condition and phase without the plate
    shift, float32; ``varm["plate_shift"]`` per plate, ``varm["loadings"]``, ``uns["cell_model"]``:
    plate library factors, library size, dispersion, noise sds), so that :func:`sample_cells`
    draws new cells of any condition (the oracle reference row, ``scpert.metrics.reference``).
L1000
    Level-5-like signatures on the world's landmarks in ``l1000_cell_lines`` further lines (same
    lineages, not in the single-cell data) for all world drugs at all ``doses``: replicate z-scores
    ``2.2 · Δ_g`` (phase-averaged) ``+ N(0, 1.1²)``, consensus by MODZ (:func:`modz`),
    ``distil_cc_q75`` = 75th percentile of the replicates' pairwise Spearman correlations,
    ``distil_ss`` = number of landmarks with |consensus z| >= 2 and
    ``tas = sqrt(distil_ss · max(distil_cc_q75, 0) / n_landmarks)`` (CMap transcriptional activity
    score; CMap divides by its 978 landmarks, here by the landmark rows of the file). Each line
    also has 26 vehicle controls (``pert_iname`` DMSO, ``pert_type`` ctl_vehicle, ``pert_dose``
    -666 as CMap writes a missing value; consensus of noise-only replicates), as many as the DMSO
    wells of the real A375 plate: the controls of the DE statistic of ``world_vs_real``.
Priors
    DTI scores for targets (0.7–1) and a few off-targets (0.05–0.4); STRING-like PPI among
    protein-coding genes (within a program with probability 0.2, score 400–999; otherwise 0.002,
    150–499; complex members 700–999); 1–2 CORUM-like complexes of 3–6 coding genes per program;
    GMT with one set per program plus mixed sets.
CITE-seq
    Untreated cells of the single-cell lines in their own batch, plus treated cells (every
    single-cell drug at every dose, the drug effect of the single-cell data) in the first
    ``citeseq_treated_lines`` lines (obs ``drug``, ``dose``; controls ``control``, ``0``; one
    ``plate``, so that the set is also a perturbation dataset of the data contract); ADT
    counts for ``n_proteins`` coding genes ``NB(10, a_c (bg + amp · sigmoid(k · x + c)))`` with
    ``x`` the latent RNA log-rate of the protein's gene standardised over the untreated cells
    (saturating, noisy). The panel holds whole complexes of ``complexes.tsv`` (at most 40 % of
    it), whose subunits share their amplitude ``amp`` (x ``logN(0, 0.1²)``), so that complex
    coherence (StateXDiff App. A.2.1 s_cx) has complexes with >= 3 subunits on the panel.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import brentq
from scipy.special import expit, softmax
from scipy.stats import rankdata

from scpert.data import schema
from scpert.layout import WORLD_FILES  # the raw files written below, declared once
from scpert.runtime import write_atomic

DEFAULT_PARAMS: dict[str, Any] = {
    "seed": 0,
    "n_genes": 1000,
    "n_landmarks": 200,
    "n_programs": 20,
    "protein_fraction": 0.6,
    "n_lineages": 2,
    "n_cell_lines": 4,
    "phases": ["G1", "S", "G2M"],
    "phase_fractions": [0.5, 0.3, 0.2],
    "n_moas": 6,
    "drugs_per_moa": 4,
    "n_l1000_only_drugs": 24,
    "moa_scaffold_mismatch": 0.25,
    "moa_effect_size": 1.5,
    "doses": [0.1, 1.0, 10.0],
    "n_plates": 3,
    "cells_per_condition": 30,
    "control_cells_per_plate": 60,
    "n_combos": 12,
    "combo_dose": 1.0,
    "dispersion": 5.0,
    "zero_fraction": 0.75,
    "batch_effect_sd": 0.1,
    "interaction_sd": 0.5,
    "shared_response_size": 0.17,
    "shared_response_drug_sd": 0.5,
    "shared_response_line_sd": 0.3,
    "l1000_cell_lines": 6,
    "l1000_replicates": 3,
    "citeseq_cells": 2000,
    "n_proteins": 50,
    "citeseq_treated_lines": 2,
    "citeseq_cells_per_condition": 10,
}


NONCODING_SYMBOL = re.compile(
    r"^(LINC|MIR|SNOR|SCARNA|RNU|RNA5|RNY|Y_RNA|LOC|RP\d+-|CT[ABCD]-|A[CLPF]\d{6})"
    r"|-AS\d|-IT\d|-DT$|"
    r"-OT\d|\.\d+$"
)
GENES_IN_PROGRAMS = 0.7
BASE_LOG_SD = 1.5
PROGRAM_GENE_BOOST = 0.5
LOADING_SD = 0.25
NEGATIVE_LOADING = 0.15
LINEAGE_ACTIVITY_SD = 0.6
LINE_ACTIVITY_SD = 0.3
LINE_GENE_SD = 0.15
LINEAGE_SENSITIVITY_SD = 0.25
LINE_SENSITIVITY_SD = 0.15
PHASE_SHIFT = 1.0
PHASE_RESPONSE_SD = 0.3
SHARED_CELL_CYCLE = 1.5
CELL_PROGRAM_SD = 0.25
MOA_SECONDARY = 0.6
MOA_BROAD_SD = 0.3
DRUG_PROGRAM_JITTER = 0.25
DRUG_OFF_PROGRAM_SD = 0.4
DRUG_GENES = 10
DRUG_GENE_SD = 0.5
TARGET_POOL = 6
TARGET_EFFECT = 0.5
EC50_LOG10_MEAN = -0.7
EC50_LOG10_SD = 0.8
HILL_RANGE = (0.8, 2.0)
PLATE_LIBRARY_SD = 0.2
#: the CITE-seq set is one plate (obs ``plate``, so that it is also a perturbation dataset of
#: the data contract, config/statexdiff_protein_modality.yaml)
CITESEQ_PLATE = "citeseq"
CELL_LIBRARY_SD = 0.65
L1000_Z_PER_LOG = 2.2
L1000_NOISE_SD = 1.1
L1000_CONTROLS_PER_LINE = 26  # DMSO wells of the real A375 plate (resources/realism/)
L1000_CONTROL = "DMSO"
CMAP_MISSING = -666  # CMap's code for a missing metadata value
L1000_MIN_WEIGHT = 0.01
PROTEIN_DISPERSION = 10.0
CITESEQ_COMPLEX_SHARE = 0.4  # at most this share of the protein panel are whole complexes
PPI_WITHIN, PPI_BETWEEN = 0.2, 0.002
TARGET_SUM = 1e4


# --------------------------------------------------------------------------------------- params
def resolve_params(params: dict | None) -> dict:
    """Defaults overlaid with ``params``; raise ``ValueError`` naming a bad key."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(
            f"simulate params: unknown key(s) {unknown} (known: {', '.join(DEFAULT_PARAMS)})"
        )
    p = {**DEFAULT_PARAMS, **params}
    p["phases"] = [str(x) for x in p["phases"]]
    p["phase_fractions"] = [float(x) for x in p["phase_fractions"]]
    p["doses"] = [float(x) for x in p["doses"]]

    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ValueError(f"simulate params: '{key}' = {p[key]!r} {why}")

    for key in (
        "n_genes",
        "n_landmarks",
        "n_programs",
        "n_lineages",
        "n_cell_lines",
        "n_moas",
        "drugs_per_moa",
        "n_plates",
        "cells_per_condition",
        "control_cells_per_plate",
        "l1000_cell_lines",
        "l1000_replicates",
        "citeseq_cells",
        "n_proteins",
        "citeseq_cells_per_condition",
    ):
        need(isinstance(p[key], int) and p[key] >= 1, key, "must be an integer >= 1")
    for key in ("n_l1000_only_drugs", "n_combos", "seed", "citeseq_treated_lines"):
        need(isinstance(p[key], int) and p[key] >= 0, key, "must be an integer >= 0")
    need(p["l1000_replicates"] >= 2, "l1000_replicates", "must be >= 2 (replicate correlation)")
    need(0 < p["zero_fraction"] < 1, "zero_fraction", "must lie in (0, 1)")
    need(0 < p["protein_fraction"] <= 1, "protein_fraction", "must lie in (0, 1]")
    need(
        round(p["protein_fraction"] * p["n_genes"]) >= max(p["n_landmarks"], p["n_proteins"]),
        "protein_fraction",
        "gives fewer protein-coding genes than n_landmarks or n_proteins",
    )
    need(p["n_landmarks"] <= p["n_genes"], "n_landmarks", "exceeds n_genes")
    need(
        round(GENES_IN_PROGRAMS * p["n_genes"]) >= 3 * p["n_programs"],
        "n_programs",
        "leaves fewer than 3 genes per program (70 % of n_genes are in programs)",
    )
    need(
        len(p["phases"]) >= 1 and len(set(p["phases"])) == len(p["phases"]),
        "phases",
        "must be distinct names",
    )
    need(
        len(p["phase_fractions"]) == len(p["phases"]) and min(p["phase_fractions"]) > 0,
        "phase_fractions",
        "must give one positive fraction per phase",
    )
    need(
        p["n_programs"] >= len(p["phases"]) - 1 + 2,
        "n_programs",
        "must exceed the cell-cycle programs (len(phases) - 1) by at least 2",
    )
    need(
        len(p["doses"]) >= 1
        and all(d > 0 for d in p["doses"])
        and len(set(p["doses"])) == len(p["doses"]),
        "doses",
        "must be distinct positive numbers",
    )
    need(p["combo_dose"] > 0, "combo_dose", "must be positive")
    need(p["dispersion"] > 0, "dispersion", "must be positive")
    need(p["batch_effect_sd"] >= 0, "batch_effect_sd", "must be >= 0")
    need(p["interaction_sd"] >= 0, "interaction_sd", "must be >= 0")
    for key in ("shared_response_size", "shared_response_drug_sd", "shared_response_line_sd"):
        need(p[key] >= 0, key, "must be >= 0")
    need(p["n_lineages"] <= p["n_cell_lines"], "n_lineages", "exceeds n_cell_lines")
    rate = p["moa_scaffold_mismatch"]
    need(0 <= rate < 0.5, "moa_scaffold_mismatch", "must lie in [0, 0.5)")
    need(rate == 0 or p["n_moas"] >= 2, "moa_scaffold_mismatch", "needs n_moas >= 2")
    moved_single, moved_only, total = moa_mismatch_counts(p)
    moved = moved_single + moved_only
    need(
        min(total - moved) > max(moved),
        "moa_scaffold_mismatch",
        "leaves an MoA without a majority of drugs from its own scaffold group "
        f"(drugs per MoA {total.tolist()}, reassigned {moved.tolist()})",
    )
    n_sc = p["n_moas"] * p["drugs_per_moa"]
    need(
        p["n_combos"] <= n_sc * (n_sc - 1) // 2,
        "n_combos",
        "exceeds the pairs of single-cell drugs",
    )
    return p


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def l1000_only_counts(p: dict) -> list[int]:
    """L1000-only drugs of each MoA: ``n_l1000_only_drugs`` spread evenly, the first MoAs first."""
    n_only, n_moas = p["n_l1000_only_drugs"], p["n_moas"]
    return [n_only // n_moas + (i < n_only % n_moas) for i in range(n_moas)]


def moa_mismatch_counts(p: dict) -> tuple[int, np.ndarray, np.ndarray]:
    """Per scaffold group: single-cell drugs given another MoA (one number, the same for every
    group, so each MoA keeps ``drugs_per_moa`` single-cell drugs), L1000-only drugs given another
    MoA (n_moas,), and drugs drawn (n_moas,).

    With rate ``moa_scaffold_mismatch`` > 0: ``max(1, round(rate * drugs_per_moa))`` single-cell
    drugs and ``round(rate * n_only)`` of a group's ``n_only`` L1000-only drugs (half up).
    """
    rate, per = p["moa_scaffold_mismatch"], p["drugs_per_moa"]
    only = np.asarray(l1000_only_counts(p))
    if rate == 0:
        return 0, np.zeros_like(only), per + only
    moved_only = np.array([_round_half_up(rate * n) for n in only], dtype=int)
    return max(1, _round_half_up(rate * per)), moved_only, per + only


# ------------------------------------------------------------------------------------ resources
def _read_table(path: Path, columns: tuple[str, ...], **kwargs) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shipped resource is missing")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, **kwargs)
    for col in columns:
        if col not in table.columns:
            raise ValueError(f"{path}: column '{col}' is missing")
    return table


def _read_resources(resources: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    panel_path = resources / "drugs" / "drug_panel.tsv"
    panel = _read_table(panel_path, ("drug", "smiles", "moa"))
    bad = panel["drug"][panel["drug"].str.contains(r"[+|]", regex=True)]
    if len(bad):
        raise ValueError(
            f"{panel_path}: column 'drug' has names with '+' or '|', e.g. {bad.iloc[0]}"
        )
    landmarks = _read_table(
        resources / "genes" / "l1000_landmarks.tsv", ("pr_gene_symbol", "pr_gene_id")
    )
    order = _read_table(resources / "genes" / "scimilarity_gene_order.tsv", (), header=None)
    return panel, landmarks, order[0].tolist()


# ---------------------------------------------------------------------------------------- world
@dataclass
class Genes:
    symbols: np.ndarray  # (G,) str
    entrez: np.ndarray  # (G,) str, "" for non-landmarks
    program: np.ndarray  # (G,) int, -1 if none
    is_landmark: np.ndarray  # (G,) bool
    protein_coding: np.ndarray  # (G,) bool
    loadings: np.ndarray  # (G, P)
    base: np.ndarray  # (G,) baseline log-rate


@dataclass
class Lines:
    names: list[str]
    lineage: list[str]
    in_single_cell: np.ndarray  # (L,) bool
    baseline: np.ndarray  # (L, G) line log-rate offset W a_l + o_l
    log_sensitivity: np.ndarray  # (L, P)
    shared_sensitivity: np.ndarray  # (L,) sensitivity sigma_l to the shared response


@dataclass
class Drugs:
    table: pd.DataFrame  # drug, smiles, moa, targets, in_single_cell, scaffold
    program_effect: np.ndarray  # (D, P) at saturation
    gene_effect: np.ndarray  # (D, G) direct effects at saturation
    ec50: np.ndarray  # (D,) µM
    hill: np.ndarray  # (D,)
    moa_programs: dict[str, list[int]]
    moa_sign: dict[str, int]
    shared_program: np.ndarray  # (P,) program effect v of the shared response at strength 1
    shared_strength: np.ndarray  # (D,) a_i, the drug's strength of the shared response


@dataclass
class Condition:
    line: int
    drug: str  # "control", "A" or "A+B"
    dose: str  # schema.format_dose text
    parts: list[tuple[int, float]]  # (drug index, dose)
    interaction: np.ndarray | None  # (P,) for combinations


def _make_genes(p: dict, landmarks: pd.DataFrame, order: list[str], rng) -> Genes:
    n_genes, n_lm = p["n_genes"], p["n_landmarks"]
    n_coding = round(p["protein_fraction"] * n_genes)
    lm_rows = np.sort(rng.choice(len(landmarks), n_lm, replace=False))
    lm = landmarks.iloc[lm_rows]
    excluded = set(landmarks["pr_gene_symbol"])
    pool = list(dict.fromkeys(s for s in order if s and s not in excluded))
    noncoding_like = np.array([bool(NONCODING_SYMBOL.search(s)) for s in pool])
    coding_pool = np.array(pool, dtype=object)[~noncoding_like]
    noncoding_pool = np.array(pool, dtype=object)[noncoding_like]
    n_extra_coding, n_noncoding = n_coding - n_lm, n_genes - n_coding
    if n_extra_coding > len(coding_pool) or n_noncoding > len(noncoding_pool):
        raise ValueError(
            "simulate params: n_genes exceeds the symbols of scimilarity_gene_order.tsv"
        )
    extra = rng.choice(coding_pool, n_extra_coding, replace=False)
    noncoding = rng.choice(noncoding_pool, n_noncoding, replace=False)
    symbols = np.concatenate([lm["pr_gene_symbol"].to_numpy(dtype=object), extra, noncoding])
    entrez = np.concatenate([lm["pr_gene_id"].to_numpy(dtype=object), [""] * (n_genes - n_lm)])
    is_landmark = np.arange(n_genes) < n_lm
    coding = np.arange(n_genes) < n_coding
    order_idx = np.argsort(symbols.astype(str), kind="stable")
    symbols, entrez = symbols[order_idx].astype(str), entrez[order_idx].astype(str)
    is_landmark, coding = is_landmark[order_idx], coding[order_idx]

    n_prog = p["n_programs"]
    members = rng.permutation(n_genes)[: round(GENES_IN_PROGRAMS * n_genes)]
    program = np.full(n_genes, -1)
    program[members] = np.arange(len(members)) % n_prog
    loadings = np.zeros((n_genes, n_prog))
    sign = np.where(rng.random(len(members)) < NEGATIVE_LOADING, -1.0, 1.0)
    loadings[members, program[members]] = sign * rng.normal(1.0, LOADING_SD, len(members))
    base = rng.normal(0.0, BASE_LOG_SD, n_genes) + PROGRAM_GENE_BOOST * (program >= 0)
    return Genes(symbols, entrez, program, is_landmark, coding, loadings, base)


def _make_lines(p: dict, genes: Genes, rng) -> Lines:
    n_prog, n_lin = p["n_programs"], p["n_lineages"]
    lineage_activity = rng.normal(0.0, LINEAGE_ACTIVITY_SD, (n_lin, n_prog))
    lineage_sens = rng.normal(0.0, LINEAGE_SENSITIVITY_SD, (n_lin, n_prog))
    n_sc, n_lk = p["n_cell_lines"], p["l1000_cell_lines"]
    names = [f"CL{i + 1:02d}" for i in range(n_sc)] + [f"LK{i + 1:02d}" for i in range(n_lk)]
    lineage_idx = np.concatenate([np.arange(n_sc) % n_lin, np.arange(n_lk) % n_lin])
    activity = lineage_activity[lineage_idx] + rng.normal(
        0.0, LINE_ACTIVITY_SD, (len(names), n_prog)
    )
    offset = rng.normal(0.0, LINE_GENE_SD, (len(names), len(genes.symbols)))
    log_sens = lineage_sens[lineage_idx] + rng.normal(
        0.0, LINE_SENSITIVITY_SD, (len(names), n_prog)
    )
    shared_sens = np.exp(rng.normal(0.0, p["shared_response_line_sd"], len(names)))
    return Lines(
        names,
        [f"lineage{i + 1}" for i in lineage_idx],
        np.arange(len(names)) < n_sc,
        activity @ genes.loadings.T + offset,
        log_sens,
        shared_sens,
    )


def _make_phases(p: dict, genes: Genes, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-phase log-rate shift (Φ, G) and drug-response multipliers (Φ, P)."""
    n_phase, n_prog = len(p["phases"]), p["n_programs"]
    shift = np.zeros((n_phase, len(genes.symbols)))
    for k in range(1, n_phase):
        shift[k] = PHASE_SHIFT * genes.loadings[:, k - 1]
    response = np.exp(rng.normal(0.0, PHASE_RESPONSE_SD, (n_phase, n_prog)))
    response[0] = 1.0
    return shift, response


def _make_drugs(p: dict, panel: pd.DataFrame, genes: Genes, rng) -> Drugs:
    """MoAs (programs, sign, target pool), the drugs drawn from their scaffold groups, the MoA each
    drug is assigned (module docstring, :func:`moa_mismatch_counts`) and its effects."""
    groups = list(dict.fromkeys(panel["moa"]))
    n_moas, per_moa = p["n_moas"], p["drugs_per_moa"]
    if n_moas > len(groups):
        raise ValueError(
            f"simulate params: n_moas = {n_moas} exceeds the {len(groups)} MoA groups "
            "of resources/drugs/drug_panel.tsv"
        )
    chosen = [groups[i] for i in np.sort(rng.choice(len(groups), n_moas, replace=False))]
    only_counts = l1000_only_counts(p)
    n_prog, n_genes = p["n_programs"], len(genes.symbols)
    drug_programs = np.arange(len(p["phases"]) - 1, n_prog)
    primary = rng.permutation(drug_programs)
    moa_vecs, target_pools, picked, moa_programs, moa_sign = {}, {}, {}, {}, {}
    for m, moa in enumerate(chosen):
        members = panel[panel["moa"] == moa]
        need = per_moa + only_counts[m]
        if need > len(members):
            raise ValueError(
                f"simulate params: drugs_per_moa + n_l1000_only_drugs / n_moas needs {need} "
                f"drugs of MoA '{moa}', drug_panel.tsv has {len(members)}"
            )
        progs = [int(primary[m % len(primary)])]
        if rng.random() < 0.5:
            progs.append(int(rng.choice(drug_programs[drug_programs != progs[0]])))
        sign = int(rng.choice([-1, 1]))
        moa_vec = np.zeros(n_prog)
        moa_vec[progs] = (
            sign
            * p["moa_effect_size"]
            * rng.uniform(0.7, 1.3)
            * np.array([1.0, MOA_SECONDARY][: len(progs)])
        )
        moa_vec += rng.normal(0.0, MOA_BROAD_SD * p["moa_effect_size"], n_prog)
        in_progs = np.flatnonzero(np.isin(genes.program, progs))
        coding = in_progs[genes.protein_coding[in_progs]]
        candidates = coding if len(coding) >= 2 else in_progs
        target_pools[moa] = rng.choice(candidates, min(TARGET_POOL, len(candidates)), replace=False)
        moa_programs[moa], moa_sign[moa], moa_vecs[moa] = progs, sign, moa_vec
        picked[moa] = members.iloc[rng.permutation(len(members))[:need]]
    # scaffold hopping: the first k single-cell and the first k' L1000-only draws of each group
    # (drawn in random order) take the MoA of the group that follows on a random cycle
    cycle = rng.permutation(n_moas)
    receiver = {chosen[cycle[i]]: chosen[cycle[(i + 1) % n_moas]] for i in range(n_moas)}
    moved_single, moved_only, _ = moa_mismatch_counts(p)
    rows, prog_eff, gene_eff = [], [], []
    for m, group in enumerate(chosen):
        for j, (_, drug) in enumerate(picked[group].iterrows()):
            single = j < per_moa
            foreign = j < moved_single if single else j - per_moa < moved_only[m]
            moa = receiver[group] if foreign else group
            vec = moa_vecs[moa] * (1.0 + rng.normal(0.0, DRUG_PROGRAM_JITTER, n_prog))
            vec[rng.integers(n_prog)] += rng.normal(0.0, DRUG_OFF_PROGRAM_SD * p["moa_effect_size"])
            target_pool = target_pools[moa]
            n_targets = min(int(rng.integers(2, 4)), len(target_pool))
            targets = np.sort(rng.choice(target_pool, n_targets, replace=False))
            direct = np.zeros(n_genes)
            direct[rng.choice(n_genes, DRUG_GENES, replace=False)] = rng.normal(
                0.0, DRUG_GENE_SD, DRUG_GENES
            )
            direct[targets] += moa_sign[moa] * TARGET_EFFECT
            prog_eff.append(vec)
            gene_eff.append(direct)
            rows.append(
                {
                    "drug": drug["drug"],
                    "smiles": drug["smiles"],
                    "moa": moa,
                    "targets": ";".join(genes.symbols[targets]),
                    "in_single_cell": single,
                    "scaffold": group,
                }
            )
    table = pd.DataFrame(rows)
    order = np.argsort(~table["in_single_cell"].to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    n = len(table)
    ec50 = 10.0 ** rng.normal(EC50_LOG10_MEAN, EC50_LOG10_SD, n)
    hill = rng.uniform(*HILL_RANGE, n)
    return Drugs(
        table,
        np.array(prog_eff)[order],
        np.array(gene_eff)[order],
        ec50,
        hill,
        moa_programs,
        moa_sign,
        _shared_program(p, rng),
        np.exp(rng.normal(0.0, p["shared_response_drug_sd"], n)),
    )


def _shared_program(p: dict, rng) -> np.ndarray:
    """Program effect ``v`` (P,) of the shared response: the cell-cycle programs go down with
    weight ``SHARED_CELL_CYCLE``, every other program moves by ``N(0, 1)``; scaled to RMS
    ``shared_response_size`` over the programs."""
    u = rng.normal(0.0, 1.0, p["n_programs"])
    u[: len(p["phases"]) - 1] = -SHARED_CELL_CYCLE
    return p["shared_response_size"] * u / np.sqrt(np.mean(u**2))


def hill_response(dose: float, ec50: float, hill: float) -> float:
    """Fraction of the maximal effect at ``dose``: ``d^h / (d^h + EC50^h)`` (0 at dose 0)."""
    return 0.0 if dose <= 0 else 1.0 / (1.0 + (ec50 / dose) ** hill)


def _make_conditions(p: dict, drugs: Drugs, lines: Lines, rng) -> list[Condition]:
    single = drugs.table.index[drugs.table["in_single_cell"]].to_numpy()
    names = drugs.table["drug"].to_numpy()
    pool_size = 2
    while pool_size * (pool_size - 1) // 2 < p["n_combos"]:
        pool_size += 1
    pool_size = min(len(single), pool_size + 1) if p["n_combos"] else 0
    pool = rng.choice(single, pool_size, replace=False)
    pairs = [(a, b) for i, a in enumerate(pool) for b in pool[i + 1 :]]
    combos = [pairs[i] for i in np.sort(rng.choice(len(pairs), p["n_combos"], replace=False))]
    combo_specs = []
    for a, b in combos:
        a, b = sorted((int(a), int(b)), key=lambda i: names[i])
        progs = sorted(
            set(drugs.moa_programs[drugs.table.at[a, "moa"]])
            | set(drugs.moa_programs[drugs.table.at[b, "moa"]])
        )
        inter = np.zeros(p["n_programs"])
        inter[progs] = rng.normal(0.0, p["interaction_sd"], len(progs))
        combo_specs.append((a, b, inter))
    conditions = []
    cd = p["combo_dose"]
    for line in np.flatnonzero(lines.in_single_cell):
        conditions.append(Condition(int(line), schema.DEFAULT_CONTROL, "0", [], None))
        for d in single:
            for dose in p["doses"]:
                conditions.append(
                    Condition(int(line), names[d], schema.format_dose(dose), [(int(d), dose)], None)
                )
        for a, b, inter in combo_specs:
            conditions.append(
                Condition(
                    int(line),
                    f"{names[a]}+{names[b]}",
                    f"{schema.format_dose(cd)}+{schema.format_dose(cd)}",
                    [(a, cd), (b, cd)],
                    inter,
                )
            )
    return conditions


def _program_gene_effects(
    cond: Condition, drugs: Drugs, lines: Lines, phase_response: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Program-level effect per phase (Φ, P) and direct gene effect (G,) of a condition."""
    sens = np.exp(lines.log_sensitivity[cond.line])
    prog = np.zeros(phase_response.shape[1])
    gene = np.zeros(drugs.gene_effect.shape[1])
    fractions, shared = [], 0.0
    for d, dose in cond.parts:
        f = hill_response(dose, drugs.ec50[d], drugs.hill[d])
        fractions.append(f)
        prog += f * drugs.program_effect[d]
        gene += f * drugs.gene_effect[d]
        shared += f * drugs.shared_strength[d]
    per_phase = phase_response * (prog * sens)[None, :]
    per_phase += (shared * lines.shared_sensitivity[cond.line] * drugs.shared_program)[None, :]
    if cond.interaction is not None:
        per_phase += (np.prod(fractions) * cond.interaction * sens)[None, :]
    return per_phase, gene * math.exp(lines.log_sensitivity[cond.line].mean())


# ------------------------------------------------------------------------------------ single cell
def _condition_state_rates(
    conditions: list[Condition],
    genes: Genes,
    lines: Lines,
    drugs: Drugs,
    phase_shift: np.ndarray,
    phase_response: np.ndarray,
    plate_shift: np.ndarray,
) -> np.ndarray:
    """Log-rates without cell noise, shape (condition, phase, plate, gene)."""
    n_phase, n_plate = phase_shift.shape[0], plate_shift.shape[0]
    out = np.empty((len(conditions), n_phase, n_plate, len(genes.symbols)))
    for i, cond in enumerate(conditions):
        per_phase, gene = _program_gene_effects(cond, drugs, lines, phase_response)
        delta = per_phase @ genes.loadings.T + gene[None, :]
        state = genes.base + lines.baseline[cond.line] + phase_shift + delta
        out[i] = state[:, None, :] + plate_shift[None, :, :]
    return out


def _calibrate_library(q: np.ndarray, size: float, target: float) -> float:
    """Library ``L`` with mean((r / (r + L q))^r) = target (expected NB zero fraction)."""

    def excess(log_lib: float) -> float:
        return float(np.mean(np.exp(size * np.log(size / (size + math.exp(log_lib) * q))))) - target

    lo, hi = math.log(1e-3), math.log(1e9)
    if excess(lo) < 0 or excess(hi) > 0:
        raise ValueError(f"simulate params: zero_fraction = {target} is not reachable")
    return math.exp(brentq(excess, lo, hi, xtol=1e-6))


def _sample_counts(rates: np.ndarray, library: float, size: float, rng) -> sp.csr_matrix:
    mean = library * rates
    counts = rng.negative_binomial(size, size / (size + mean))
    return sp.csr_matrix(counts.astype(np.float32))


def _cell_noise(n_cells: int, genes: Genes, rng) -> np.ndarray:
    z = rng.normal(0.0, CELL_PROGRAM_SD, (n_cells, genes.loadings.shape[1]))
    return z @ genes.loadings.T


def _single_cell(
    p: dict, conditions: list[Condition], state: np.ndarray, lines: Lines, genes: Genes, rng
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Cell table, relative rates ``s_c softmax(log-rate)`` (cells, G) and the plates' library
    factors (K,)."""
    n_plate = p["n_plates"]
    plates = [f"plate{k + 1}" for k in range(n_plate)]
    plate_library = np.exp(rng.normal(0.0, PLATE_LIBRARY_SD, n_plate))
    cond_idx, plate_idx = [], []
    for i, cond in enumerate(conditions):
        n = p["control_cells_per_plate"] * n_plate if not cond.parts else p["cells_per_condition"]
        cond_idx.append(np.full(n, i))
        plate_idx.append(np.arange(n) % n_plate)
    cond_idx, plate_idx = np.concatenate(cond_idx), np.concatenate(plate_idx)
    n_cells = len(cond_idx)
    phase_idx = rng.choice(
        len(p["phases"]), n_cells, p=np.asarray(p["phase_fractions"]) / sum(p["phase_fractions"])
    )
    log_rate = state[cond_idx, phase_idx, plate_idx] + _cell_noise(n_cells, genes, rng)
    cell_size = plate_library[plate_idx] * np.exp(rng.normal(0.0, CELL_LIBRARY_SD, n_cells))
    rates = softmax(log_rate, axis=1) * cell_size[:, None]
    obs = pd.DataFrame(
        {
            schema.CELL_LINE: [lines.names[conditions[i].line] for i in cond_idx],
            schema.DRUG: [conditions[i].drug for i in cond_idx],
            schema.DOSE: [conditions[i].dose for i in cond_idx],
            schema.PLATE: np.asarray(plates, dtype=object)[plate_idx],
            schema.PHASE: np.asarray(p["phases"], dtype=object)[phase_idx],
        },
        index=[f"cell{i:06d}" for i in range(n_cells)],
    )
    for col in obs.columns:
        obs[col] = pd.Categorical(obs[col], categories=list(dict.fromkeys(obs[col])))
    return obs, rates, plate_library


def _var(genes: Genes) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "program": genes.program.astype(np.int64),
            "is_landmark": genes.is_landmark,
            "protein_coding": genes.protein_coding,
        },
        index=pd.Index(genes.symbols, name="gene"),
    )


def _ground_truth(
    p: dict,
    conditions: list[Condition],
    state: np.ndarray,
    genes: Genes,
    lines: Lines,
    drugs: Drugs,
    plate_shift: np.ndarray,
    plate_library: np.ndarray,
    library: float,
) -> ad.AnnData:
    weights = np.asarray(p["phase_fractions"]) / sum(p["phase_fractions"])
    correction = 0.5 * CELL_PROGRAM_SD**2 * (genes.loadings**2).sum(axis=1)
    prop = softmax(state + correction, axis=-1)  # (C, Φ, K, G)
    expected = np.einsum("cfkg,f->cg", prop, weights) / state.shape[2]
    X = np.log1p(TARGET_SUM * expected)
    moa_of = dict(zip(drugs.table["drug"], drugs.table["moa"]))
    obs = pd.DataFrame(
        {
            schema.CELL_LINE: [lines.names[c.line] for c in conditions],
            schema.DRUG: [c.drug for c in conditions],
            schema.DOSE: [c.dose for c in conditions],
            "moa": [
                schema.DEFAULT_CONTROL
                if not c.parts
                else schema.COMBO_SEP.join(moa_of[x] for x in schema.components(c.drug))
                for c in conditions
            ],
        }
    )
    obs[schema.CONDITION] = schema.add_condition(obs)
    obs.index = obs[schema.CONDITION].to_numpy()
    control_row = {c.line: i for i, c in enumerate(conditions) if not c.parts}
    lfc = X - X[[control_row[c.line] for c in conditions]]
    truth = ad.AnnData(X.astype(np.float32), obs=obs, var=_var(genes))
    truth.layers["lfc"] = lfc.astype(np.float32)
    truth.uns["params"] = p
    truth.uns["programs"] = {
        str(k): genes.symbols[genes.program == k] for k in range(p["n_programs"])
    }
    truth.uns["cell_cycle_programs"] = {ph: k - 1 for k, ph in enumerate(p["phases"]) if k > 0}
    truth.uns["moa_programs"] = {m: np.asarray(v) for m, v in drugs.moa_programs.items()}
    truth.uns["moa_direction"] = dict(drugs.moa_sign)
    truth.uns["drug_potency"] = pd.DataFrame(
        {
            "drug": drugs.table["drug"],
            "ec50": drugs.ec50,
            "hill": drugs.hill,
            "shared_strength": drugs.shared_strength,
        }
    )
    truth.uns["shared_response"] = {
        "program": drugs.shared_program,
        "genes": genes.loadings @ drugs.shared_program,
        "line_sensitivity": dict(zip(lines.names, lines.shared_sensitivity.tolist())),
    }
    # the cell-level model, so that new cells of any condition can be drawn (sample_cells)
    n_phase, n_plate = state.shape[1], state.shape[2]
    truth.obsm["log_rate"] = (
        (state[:, :, 0, :] - plate_shift[0][None, None, :])
        .reshape(len(conditions), n_phase * len(genes.symbols))
        .astype(np.float32)
    )
    truth.varm["plate_shift"] = plate_shift.T.astype(np.float32)
    truth.varm["loadings"] = genes.loadings.astype(np.float32)
    truth.uns["cell_model"] = {
        "plates": np.asarray([f"plate{k + 1}" for k in range(n_plate)]),
        "plate_library": np.asarray(plate_library, dtype=np.float64),
        "library": float(library),
        "dispersion": float(p["dispersion"]),
        "cell_program_sd": CELL_PROGRAM_SD,
        "cell_library_sd": CELL_LIBRARY_SD,
    }
    return truth


def sample_cells(truth: ad.AnnData, requests: pd.DataFrame, seed: int) -> ad.AnnData:
    """New cells of the world's conditions, drawn from the world's own cell model (raw counts).

    truth: ``ground_truth.h5ad`` (its ``obsm["log_rate"]``, ``varm["plate_shift"]``,
    ``varm["loadings"]`` and ``uns["cell_model"]``). requests: one row per (condition, plate)
    with ``condition, plate, n_cells``. Each cell draws a phase from the phase mix, program noise
    ``z ~ N(0, cell_program_sd²)``, a size factor ``plate_library[k] · logN(0,
    cell_library_sd²)`` and negative-binomial counts with the world's library and dispersion:
    the generative process of the module docstring ("Cells") with fresh randomness. Returns
    counts (CSR float32) with obs ``condition, plate, phase`` and the world's genes.
    """
    for key, where in (("log_rate", "obsm"), ("plate_shift", "varm"), ("loadings", "varm")):
        if key not in getattr(truth, where):
            raise schema.SchemaError(
                f"ground truth: {where}['{key}'] is missing (written by simulate_world since the "
                "oracle reference row; re-run rule simulate_world)"
            )
    model = truth.uns["cell_model"]
    params = truth.uns["params"]
    n_genes = truth.n_vars
    phases = list(params["phases"])
    weights = np.asarray(params["phase_fractions"], dtype=float)
    weights = weights / weights.sum()
    plates = [str(x) for x in model["plates"]]
    log_rate = np.asarray(truth.obsm["log_rate"], dtype=np.float64).reshape(
        truth.n_obs, len(phases), n_genes
    )
    plate_shift = np.asarray(truth.varm["plate_shift"], dtype=np.float64).T
    loadings = np.asarray(truth.varm["loadings"], dtype=np.float64)
    row_of = {str(c): i for i, c in enumerate(truth.obs_names)}
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for condition, plate, n in requests[["condition", "plate", "n_cells"]].itertuples(index=False):
        if str(condition) not in row_of:
            raise schema.SchemaError(f"ground truth: no condition '{condition}' in the world")
        if str(plate) not in plates:
            raise schema.SchemaError(f"ground truth: no plate '{plate}' in the world ({plates})")
        k, n = plates.index(str(plate)), int(n)
        phase = rng.choice(len(phases), n, p=weights)
        z = rng.normal(0.0, model["cell_program_sd"], (n, loadings.shape[1]))
        rate = log_rate[row_of[str(condition)], phase] + plate_shift[k] + z @ loadings.T
        size = model["plate_library"][k] * np.exp(rng.normal(0.0, model["cell_library_sd"], n))
        mean = model["library"] * softmax(rate, axis=1) * size[:, None]
        r = model["dispersion"]
        blocks.append(sp.csr_matrix(rng.negative_binomial(r, r / (r + mean)).astype(np.float32)))
        obs += [(str(condition), str(plate), phases[f]) for f in phase]
    table = pd.DataFrame(obs, columns=[schema.CONDITION, schema.PLATE, schema.PHASE])
    table.index = [f"oracle{i:06d}" for i in range(len(table))]
    x = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, n_genes), dtype=np.float32)
    return ad.AnnData(x, obs=table, var=pd.DataFrame(index=truth.var_names.copy()))


# ---------------------------------------------------------------------------------------- L1000
def _spearman_rows(z: np.ndarray) -> np.ndarray:
    """Pairwise Spearman correlations among the rows of each block, shape (..., R, R)."""
    ranks = rankdata(z, axis=-1)
    ranks -= ranks.mean(axis=-1, keepdims=True)
    ranks /= np.linalg.norm(ranks, axis=-1, keepdims=True)
    return ranks @ np.swapaxes(ranks, -1, -2)


def modz(replicates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MODZ consensus and ``distil_cc_q75`` of replicate signatures: (S, R, G) -> (S, G), (S,).

    Weights follow cmapPy ``math/agg_wt_avg.py``: Spearman correlations between replicates, clipped
    at 0, averaged over the other replicates, floored at 0.01 and normalised to sum 1.
    ``distil_cc_q75`` is the 75th percentile of the unclipped pairwise correlations.
    """
    n_rep = replicates.shape[1]
    corr = _spearman_rows(replicates)
    iu, ju = np.triu_indices(n_rep, k=1)
    cc_q75 = np.quantile(corr[:, iu, ju], 0.75, axis=1)
    others = ~np.eye(n_rep, dtype=bool)
    raw = np.clip(corr, 0.0, None)[:, others].reshape(-1, n_rep, n_rep - 1).mean(axis=2)
    raw = np.maximum(raw, L1000_MIN_WEIGHT)
    weights = raw / raw.sum(axis=1, keepdims=True)
    return np.einsum("sr,srg->sg", weights, replicates), cc_q75


def _l1000(
    p: dict, genes: Genes, lines: Lines, drugs: Drugs, phase_response: np.ndarray, rng
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Consensus signatures (signatures, landmarks) with column and row metadata."""
    weights = np.asarray(p["phase_fractions"]) / sum(p["phase_fractions"])
    mean_response = (weights @ phase_response)[None, :]
    lm = np.flatnonzero(genes.is_landmark)
    lk_lines = np.flatnonzero(~lines.in_single_cell)
    names = drugs.table["drug"].to_numpy()
    keys, truth = [], []
    for d in range(len(names)):
        for line in lk_lines:
            for dose in p["doses"]:
                cond = Condition(int(line), names[d], schema.format_dose(dose), [(d, dose)], None)
                per_phase, gene = _program_gene_effects(cond, drugs, lines, mean_response)
                delta = per_phase[0] @ genes.loadings[lm].T + gene[lm]
                keys.append((names[d], lines.names[line], dose))
                truth.append(L1000_Z_PER_LOG * delta)
    for line in lk_lines:  # vehicle controls: signatures of no effect, as a plate's DMSO wells
        for k in range(L1000_CONTROLS_PER_LINE):
            keys.append((L1000_CONTROL, lines.names[line], k))
            truth.append(np.zeros(len(lm)))
    truth = np.asarray(truth)
    control = np.array([k[0] == L1000_CONTROL for k in keys])
    n_rep = p["l1000_replicates"]
    reps = truth[:, None, :] + rng.normal(0.0, L1000_NOISE_SD, (len(truth), n_rep, len(lm)))
    consensus, cc_q75 = modz(reps)
    ss = (np.abs(consensus) >= 2).sum(axis=1)
    tas = np.sqrt(ss * np.maximum(cc_q75, 0.0) / len(lm))
    dose_text = [schema.format_dose(k[2]) for k in keys]
    col = pd.DataFrame(
        {
            "id": [
                f"SIM001_{line}_24H:{drug}:{dose}" for (drug, line, _), dose in zip(keys, dose_text)
            ],
            "pert_id": [k[0] for k in keys],
            "pert_iname": [k[0] for k in keys],
            "pert_type": np.where(control, "ctl_vehicle", "trt_cp").astype(object),
            "cell_id": [k[1] for k in keys],
            "pert_dose": np.where(control, CMAP_MISSING, [float(k[2]) for k in keys]),
            "pert_dose_unit": np.where(control, str(CMAP_MISSING), "um").astype(object),
            "pert_idose": np.where(
                control, str(CMAP_MISSING), [f"{d} um" for d in dose_text]
            ).astype(object),
            "pert_time": 24,
            "pert_time_unit": "h",
            "pert_itime": "24 h",
            "distil_nsample": n_rep,
            "distil_cc_q75": cc_q75,
            "distil_ss": ss,
            "tas": tas,
        }
    )
    row = pd.DataFrame(
        {
            "id": genes.entrez[lm],
            "pr_gene_id": genes.entrez[lm],
            "pr_gene_symbol": genes.symbols[lm],
            "pr_is_lmark": 1,
        }
    )
    return consensus.astype(np.float32), col, row


def write_gctx(
    path: Path,
    matrix: np.ndarray,
    col: pd.DataFrame,
    row: pd.DataFrame,
    *,
    src: str = "l1000.gctx",
    decimals: int | None = None,
) -> None:
    """GCTX 1.0 (cmapPy ``write_gctx`` layout): ``/0/DATA/0/matrix`` is (columns, rows) float32,
    ``/0/META/{ROW,COL}`` one dataset per field (strings as fixed-length bytes), root attrs
    ``version`` and ``src``. ``decimals``: keep that many decimals of the matrix (HDF5
    scale-offset filter plus gzip, read transparently by any HDF5 reader); None stores it as is."""
    packed = (
        {}
        if decimals is None
        else {
            "scaleoffset": decimals,
            "shuffle": True,
            "compression": "gzip",
            "compression_opts": 9,
        }
    )
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["version"] = np.bytes_("GCTX1.0")
        f.attrs["src"] = np.bytes_(src)
        f.create_dataset(
            "/0/DATA/0/matrix", data=matrix, dtype=np.float32, track_times=False, **packed
        )
        for node, table in (("/0/META/ROW", row), ("/0/META/COL", col)):
            group = f.create_group(node)
            for field in table.columns:
                values = table[field].to_numpy()
                data = values.astype(np.bytes_) if values.dtype == object else values
                group.create_dataset(field, data=data, track_times=False)


# ---------------------------------------------------------------------------------------- priors
def _dti(drugs: Drugs, genes: Genes, rng) -> pd.DataFrame:
    coding = np.flatnonzero(genes.protein_coding)
    rows = []
    for drug, targets in zip(drugs.table["drug"], drugs.table["targets"]):
        tset = targets.split(";")
        for gene in tset:
            rows.append((drug, gene, round(float(rng.uniform(0.7, 1.0)), 3)))
        off = [g for g in genes.symbols[rng.choice(coding, 3, replace=False)] if g not in tset]
        for gene in off:
            rows.append((drug, gene, round(float(rng.uniform(0.05, 0.4)), 3)))
    return pd.DataFrame(rows, columns=["drug", "gene", "score"])


def _complexes(p: dict, genes: Genes, rng) -> pd.DataFrame:
    rows = []
    for k in range(p["n_programs"]):
        members = np.flatnonzero((genes.program == k) & genes.protein_coding)
        if len(members) < 3:
            continue
        for _ in range(int(rng.integers(1, 3))):
            size = int(rng.integers(3, min(6, len(members)) + 1))
            chosen = np.sort(rng.choice(members, size, replace=False))
            rows.append((f"SIMCPLX{len(rows) + 1:04d}", ";".join(genes.symbols[chosen])))
    return pd.DataFrame(rows, columns=["complex_id", "genes"])


def _ppi(genes: Genes, complexes: pd.DataFrame, rng) -> pd.DataFrame:
    coding = np.flatnonzero(genes.protein_coding)
    i, j = np.triu_indices(len(coding), k=1)
    a, b = coding[i], coding[j]
    same = (genes.program[a] == genes.program[b]) & (genes.program[a] >= 0)
    u = rng.random(len(a))
    keep = np.where(same, u < PPI_WITHIN, u < PPI_BETWEEN)
    score = np.where(same, rng.integers(400, 1000, len(a)), rng.integers(150, 500, len(a)))
    score = np.where(keep, score, 0)
    n_coding = len(coding)
    coding_pos = {g: n for n, g in enumerate(genes.symbols[coding])}
    for members in complexes["genes"]:
        pos = sorted(coding_pos[g] for g in members.split(";"))
        for s, x in enumerate(pos):
            for y in pos[s + 1 :]:
                n = x * (2 * n_coding - x - 1) // 2 + (y - x - 1)  # row-major upper-triangle index
                score[n] = max(score[n], int(rng.integers(700, 1000)))
    kept = score > 0
    return pd.DataFrame(
        {
            "gene1": genes.symbols[a[kept]],
            "gene2": genes.symbols[b[kept]],
            "score": score[kept].astype(np.int64),
        }
    )


def _gene_sets(p: dict, genes: Genes, rng) -> list[tuple[str, str, list[str]]]:
    sets = [
        (
            f"PROGRAM_{k:02d}",
            f"simulated co-expression program {k}",
            genes.symbols[genes.program == k].tolist(),
        )
        for k in range(p["n_programs"])
    ]
    for m in range(max(2, p["n_programs"] // 4)):
        a, b = rng.choice(p["n_programs"], 2, replace=False)
        picked = []
        for k in (a, b):
            members = np.flatnonzero(genes.program == k)
            picked.extend(rng.choice(members, len(members) // 2, replace=False))
        picked.extend(rng.choice(len(genes.symbols), 5, replace=False))
        symbols = sorted(set(genes.symbols[np.asarray(picked, dtype=int)]))
        sets.append(
            (f"MIXED_{m:02d}", f"half of programs {a} and {b} plus 5 random genes", symbols)
        )
    return sets


# -------------------------------------------------------------------------------------- CITE-seq
def _protein_panel(p: dict, genes: Genes, complexes: pd.DataFrame, rng) -> tuple[np.ndarray, list]:
    """Panel gene indices (sorted) and the complexes whose subunits all are on it: whole complexes
    first (up to ``CITESEQ_COMPLEX_SHARE`` of the panel), the rest from expressed coding genes."""
    pos = {g: i for i, g in enumerate(genes.symbols)}
    chosen: list[int] = []
    on_panel = []
    for k in rng.permutation(len(complexes)):
        members = [pos[g] for g in complexes["genes"].iloc[k].split(";")]
        if len(chosen) + len(members) > CITESEQ_COMPLEX_SHARE * p["n_proteins"]:
            continue
        chosen += [m for m in members if m not in chosen]
        on_panel.append(members)
    coding = np.flatnonzero(genes.protein_coding & (genes.base > np.median(genes.base)))
    rest = np.setdiff1d(coding, chosen)
    if len(rest) < p["n_proteins"] - len(chosen):
        rest = np.setdiff1d(np.flatnonzero(genes.protein_coding), chosen)
    fill = rng.choice(rest, p["n_proteins"] - len(chosen), replace=False)
    return np.sort(np.concatenate([np.asarray(chosen, dtype=int), fill])), on_panel


def _citeseq(
    p: dict,
    genes: Genes,
    lines: Lines,
    drugs: Drugs,
    complexes: pd.DataFrame,
    phase_shift: np.ndarray,
    phase_response: np.ndarray,
    library: float,
    rng,
) -> ad.AnnData:
    sc_lines = np.flatnonzero(lines.in_single_cell)
    n = p["citeseq_cells"]
    line_idx = sc_lines[np.arange(n) % len(sc_lines)]
    fractions = np.asarray(p["phase_fractions"]) / sum(p["phase_fractions"])
    phase_idx = rng.choice(len(fractions), n, p=fractions)
    batch = rng.normal(0.0, p["batch_effect_sd"], len(genes.symbols))
    log_rate = (
        genes.base
        + lines.baseline[line_idx]
        + phase_shift[phase_idx]
        + batch
        + _cell_noise(n, genes, rng)
    )
    size = np.exp(rng.normal(0.0, CELL_LIBRARY_SD, n))
    rna = _sample_counts(softmax(log_rate, axis=1) * size[:, None], library, p["dispersion"], rng)
    prot_genes, panel_complexes = _protein_panel(p, genes, complexes, rng)
    x = log_rate[:, prot_genes]
    centre_x, scale_x = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    amp = np.exp(rng.normal(math.log(200.0), 0.5, len(prot_genes)))
    column = {g: j for j, g in enumerate(prot_genes)}
    for members in panel_complexes:  # subunits of a complex share their abundance scale
        cols = [column[m] for m in members]
        amp[cols] = amp[cols[0]] * np.exp(rng.normal(0.0, 0.1, len(cols)))
    background = np.exp(rng.normal(math.log(10.0), 0.3, len(prot_genes)))
    steep = rng.uniform(1.0, 3.0, len(prot_genes))
    centre = rng.normal(0.0, 0.5, len(prot_genes))

    def adt_counts(rates: np.ndarray) -> np.ndarray:
        z = (rates[:, prot_genes] - centre_x) / scale_x
        adt_size = np.exp(rng.normal(0.0, 0.2, len(rates)))[:, None]
        mean = adt_size * (background + amp * expit(steep * z + centre))
        return rng.negative_binomial(
            PROTEIN_DISPERSION, PROTEIN_DISPERSION / (PROTEIN_DISPERSION + mean)
        )

    adt = adt_counts(log_rate)
    obs = pd.DataFrame(
        {
            schema.CELL_LINE: [lines.names[i] for i in line_idx],
            schema.DRUG: schema.DEFAULT_CONTROL,
            schema.DOSE: "0",
            schema.PLATE: CITESEQ_PLATE,
            schema.PHASE: np.asarray(p["phases"])[phase_idx],
        },
        index=[f"cite{i:06d}" for i in range(n)],
    )
    # treated cells: every single-cell drug at every dose in the first citeseq_treated_lines lines
    treated_lines = sc_lines[: p["citeseq_treated_lines"]]
    single = np.flatnonzero(drugs.table["in_single_cell"].to_numpy())
    names = drugs.table["drug"].to_numpy()
    per = p["citeseq_cells_per_condition"]
    blocks, adts, rows = [rna], [adt], [obs]
    for line in treated_lines:
        for d in single:
            for dose in p["doses"]:
                cond = Condition(int(line), names[d], schema.format_dose(dose), [(d, dose)], None)
                per_phase, gene = _program_gene_effects(cond, drugs, lines, phase_response)
                ph = rng.choice(len(fractions), per, p=fractions)
                rate = (
                    genes.base
                    + lines.baseline[line]
                    + phase_shift[ph]
                    + batch
                    + per_phase[ph] @ genes.loadings.T
                    + gene
                    + _cell_noise(per, genes, rng)
                )
                cell_size = np.exp(rng.normal(0.0, CELL_LIBRARY_SD, per))
                blocks.append(
                    _sample_counts(
                        softmax(rate, axis=1) * cell_size[:, None], library, p["dispersion"], rng
                    )
                )
                adts.append(adt_counts(rate))
                start = sum(len(r) for r in rows)
                rows.append(
                    pd.DataFrame(
                        {
                            schema.CELL_LINE: lines.names[line],
                            schema.DRUG: cond.drug,
                            schema.DOSE: cond.dose,
                            schema.PLATE: CITESEQ_PLATE,
                            schema.PHASE: np.asarray(p["phases"])[ph],
                        },
                        index=[f"cite{start + i:06d}" for i in range(per)],
                    )
                )
    obs = pd.concat(rows)
    for col in obs.columns:
        obs[col] = pd.Categorical(obs[col], categories=list(dict.fromkeys(obs[col])))
    adata = ad.AnnData(sp.vstack(blocks).tocsr(), obs=obs, var=_var(genes))
    adata.obsm["protein"] = pd.DataFrame(
        np.concatenate(adts).astype(np.int64), index=obs.index, columns=genes.symbols[prot_genes]
    )
    return adata


# ----------------------------------------------------------------------------------------- write
def _write_tsv(path: Path, table: pd.DataFrame) -> None:
    write_atomic(path, lambda tmp: table.to_csv(tmp, sep="\t", index=False, lineterminator="\n"))


def _write_gmt(path: Path, sets: list[tuple[str, str, list[str]]]) -> None:
    text = "".join("\t".join([name, desc, *members]) + "\n" for name, desc, members in sets)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def simulate_world(params: dict, outdir: Path, resources: Path) -> dict:
    """Simulate the synthetic world and write its files to ``outdir`` (see the module docstring).

    params (all optional; defaults in ``DEFAULT_PARAMS``):
        seed (int, 0): seed of the single ``numpy.random.Generator`` used for everything.
        n_genes (int, 1000): genes (real symbols).
        n_landmarks (int, 200): of which L1000 landmark genes (rows of ``l1000.gctx``).
        n_programs (int, 20): co-expression programs; the first ``len(phases) - 1`` are cell-cycle
            programs, drugs act on the others (must be >= len(phases) + 1 and leave >= 3 genes
            per program, i.e. 3 * n_programs <= 0.7 * n_genes).
        protein_fraction (float, 0.6): fraction of protein-coding genes (>= landmarks, proteins).
        n_lineages (int, 2): lineages sharing baseline program activity and drug sensitivity.
        n_cell_lines (int, 4): cell lines in the single-cell data (``CL01``...).
        phases (list[str], ["G1", "S", "G2M"]): cell-cycle phases (sub-populations).
        phase_fractions (list[float], [0.5, 0.3, 0.2]): phase proportions (normalised).
        n_moas (int, 6): MoA groups of the drug panel used (at most the panel's 10).
        drugs_per_moa (int, 4): single-cell drugs per MoA.
        n_l1000_only_drugs (int, 24): further drugs, spread over the MoAs, only in L1000.
        moa_scaffold_mismatch (float, 0.25): fraction of drugs, in [0, 0.5), whose MoA is not
            their scaffold group's (drugs.tsv ``moa`` != ``scaffold``): per group
            ``max(1, round(rate * drugs_per_moa))`` single-cell and ``round(rate * n_only)``
            L1000-only drugs (:func:`moa_mismatch_counts`; 12 of 48 drugs at the defaults) take the
            MoA of the next group on a seeded random cycle; every MoA must keep a majority of
            drugs from its own group. 0: MoA = scaffold group for every drug.
        moa_effect_size (float, 1.5): saturating log-rate shift of an MoA's primary program.
        doses (list[float], [0.1, 1.0, 10.0]): µM; every single drug in every line at every dose.
        n_plates (int, 3): plates (batches); every condition is spread evenly over them.
        cells_per_condition (int, 30): cells per treated (line, drug, dose) condition.
        control_cells_per_plate (int, 60): control cells per line and plate.
        n_combos (int, 12): drug pairs (among a pool of single-cell drugs) measured in every line.
        combo_dose (float, 1.0): dose of both parts of a combination (dose text ``"1+1"``).
        dispersion (float, 5.0): negative-binomial size r (variance μ + μ²/r).
        zero_fraction (float, 0.75): target fraction of zero counts (library size is calibrated).
        batch_effect_sd (float, 0.1): sd of the per-plate per-gene log-rate shift.
        interaction_sd (float, 0.5): sd of the combination interaction on the MoA programs.
        shared_response_size (float, 0.17): root-mean-square program effect of the shared
            response at saturation (module docstring); 0 removes it.
        shared_response_drug_sd (float, 0.5): sd of the log of a drug's shared-response strength.
        shared_response_line_sd (float, 0.3): sd of the log of a line's shared-response
            sensitivity.
        l1000_cell_lines (int, 6): L1000-only lines (``LK01``...).
        l1000_replicates (int, 3): replicates per L1000 signature (>= 2).
        citeseq_cells (int, 2000): untreated cells of the CITE-seq-like dataset.
        n_proteins (int, 50): ADT proteins (named after their protein-coding genes).
        citeseq_treated_lines (int, 2): single-cell lines (the first ones) whose CITE-seq set
            also has treated cells: every single-cell drug at every dose (0 = none).
        citeseq_cells_per_condition (int, 10): CITE-seq cells per treated (line, drug, dose).

    outdir: folder for ``WORLD_FILES``; resources: the repository's ``resources/`` folder.
    Returns ``{"n_cells", "n_genes", "zero_fraction", "library_size", "n_conditions", "files"}``.
    """
    p = resolve_params(params)
    outdir, resources = Path(outdir), Path(resources)
    panel, landmarks, order = _read_resources(resources)
    rng = np.random.default_rng(p["seed"])

    genes = _make_genes(p, landmarks, order, rng)
    lines = _make_lines(p, genes, rng)
    phase_shift, phase_response = _make_phases(p, genes, rng)
    drugs = _make_drugs(p, panel, genes, rng)
    conditions = _make_conditions(p, drugs, lines, rng)
    plate_shift = rng.normal(0.0, p["batch_effect_sd"], (p["n_plates"], len(genes.symbols)))
    state = _condition_state_rates(
        conditions, genes, lines, drugs, phase_shift, phase_response, plate_shift
    )
    obs, rates, plate_library = _single_cell(p, conditions, state, lines, genes, rng)
    step = max(1, len(rates) // 1000)
    library = _calibrate_library(rates[::step], p["dispersion"], p["zero_fraction"])
    counts = _sample_counts(rates, library, p["dispersion"], rng)
    zero_fraction = 1.0 - counts.nnz / (counts.shape[0] * counts.shape[1])
    adata = ad.AnnData(counts, obs=obs, var=_var(genes))
    schema.validate(adata, outdir / "counts.h5ad", kind="raw")
    truth = _ground_truth(
        p, conditions, state, genes, lines, drugs, plate_shift, plate_library, library
    )
    l1000 = _l1000(p, genes, lines, drugs, phase_response, rng)
    dti = _dti(drugs, genes, rng)
    complexes = _complexes(p, genes, rng)
    ppi = _ppi(genes, complexes, rng)
    gene_sets = _gene_sets(p, genes, rng)
    citeseq = _citeseq(p, genes, lines, drugs, complexes, phase_shift, phase_response, library, rng)

    outdir.mkdir(parents=True, exist_ok=True)
    write_atomic(outdir / "counts.h5ad", adata.write_h5ad)
    drug_table = drugs.table.assign(
        in_single_cell=drugs.table["in_single_cell"].map({True: "true", False: "false"})
    )
    _write_tsv(outdir / "drugs.tsv", drug_table)
    _write_tsv(
        outdir / "cell_lines.tsv",
        pd.DataFrame(
            {
                "cell_line": lines.names,
                "lineage": lines.lineage,
                "in_single_cell": np.where(lines.in_single_cell, "true", "false"),
            }
        ),
    )
    write_atomic(outdir / "l1000.gctx", lambda tmp: write_gctx(tmp, *l1000))
    _write_tsv(outdir / "dti.tsv", dti)
    _write_tsv(outdir / "ppi.tsv", ppi)
    _write_tsv(outdir / "complexes.tsv", complexes)
    _write_gmt(outdir / "gene_sets.gmt", gene_sets)
    write_atomic(outdir / "citeseq.h5ad", citeseq.write_h5ad)
    write_atomic(outdir / "ground_truth.h5ad", truth.write_h5ad)
    return {
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "zero_fraction": float(zero_fraction),
        "library_size": float(library),
        "n_conditions": len(conditions),
        "files": [str(outdir / f) for f in WORLD_FILES],
    }
