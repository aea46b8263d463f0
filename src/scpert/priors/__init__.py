"""Priors of StateXDiff (arXiv:2605.16104). Drug priors of its MDT (§3.3, App. A.3): the
biological graph prior z_b and the L1000 mechanism-aware drug templates. Cell-state priors
(§3.2, App. A.1.2, A.2): ``protein`` (RNA -> protein translator, the per-cell protein prior),
``pqm`` (reliability q), ``vmcs`` (virtual multimodal cell state), ``pqm_validation`` (App. A.2.3).

Modules: ``sources`` (STRING / DTI / CORUM / GMT readers), ``graph`` (hetero drug–gene graph,
HeteroSAGE pretraining), ``l1000`` (GCT/GCTX reader, TAS, views), ``mdt`` (soft-label contrastive
pretraining with distillation), ``determinism`` (reproducible CPU kernels), ``outputs`` (the
prior folders' files: formats, readers and writers), ``evaluate`` (the evaluation rule). The rules
themselves are :mod:`scpert.steps.priors`; each prior is one folder (docs/architecture.md
"Priors").
"""
