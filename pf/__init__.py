"""pf: reproducing PruneFuse (Kousar, Bhatti, Moon; arXiv 2501.01118, 2603.26138) and its
neighbours: prune an untrained network, let it pick which samples get labeled, fuse it
back into the dense network and train that with distillation.

The library is organised one module per step, data flowing forward through them:
``config`` -> ``data``, ``models`` -> ``prune``, ``fuse`` -> ``train``, ``select`` ->
``active`` (the loop) -> ``experiment`` (one run, recorded) -> ``results``, ``figures``;
``flops`` counts costs, ``sweep`` runs grids of notebooks, ``cli`` is the ``pf`` command.
"""

__version__ = "0.1.0"
