"""Experiments beyond the benchmark tables, run as config overlays (docs/experiments.md):

- :mod:`.corruption`: technical noise and extra sparsity of a processed dataset at a level
  (StateXDiff arXiv:2605.16104 App. B.5, Table 10; curves as its Fig. 8);
- :mod:`.diversity`: identity-balanced training subsets of a fixed size with K drugs or K cell
  lines (StateXDiff App. B.6; curves as its Fig. 9);
- :mod:`.tables`: the tidy table of one experiment from its variants' metric tables.

Light: numpy, pandas and anndata only.
"""
