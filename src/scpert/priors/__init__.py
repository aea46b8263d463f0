"""Drug priors of StateXDiff's MDT (arXiv:2605.16104 §3.3, App. A.3): the biological graph prior
z_b and the L1000 mechanism-aware drug templates.

Modules: ``sources`` (STRING / DTI / CORUM / GMT readers), ``graph`` (hetero drug–gene graph,
HeteroSAGE pretraining), ``l1000`` (GCT/GCTX reader, TAS, views), ``mdt`` (soft-label contrastive
pretraining with distillation), ``determinism`` (reproducible CPU kernels), ``outputs`` (the
prior folders' files: formats, readers and writers), ``evaluate`` (the evaluation rule). The rules
themselves are :mod:`scpert.steps.priors`; each prior is one folder (docs/architecture.md
"Priors").
"""
