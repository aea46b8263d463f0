"""Drug priors of StateXDiff's MDT (§3.3, App. A.3): the biological graph prior z_b and the
L1000 mechanism-aware drug templates.

Modules: ``sources`` (STRING / DTI / CORUM / GMT readers), ``graph`` (hetero drug–gene graph,
HeteroSAGE pretraining), ``l1000`` (GCT/GCTX reader, TAS, views), ``mdt`` (soft-label contrastive
pretraining with distillation), ``determinism`` (reproducible CPU kernels), ``outputs`` (file
formats, readers and writers), ``steps`` (the pretraining rules as functions of paths),
``evaluate`` (the evaluation rule).
"""
