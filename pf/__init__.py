"""pf: reproducing PruneFuse (Kousar, Bhatti, Moon; arXiv 2501.01118, 2603.26138) and its
neighbours: prune an untrained network, let it pick which samples get labeled, fuse it
back into the dense network and train that with distillation.

The library is organised one module per step: ``data``, ``models``, ``train``,
``flops``, ``experiment``, ``results``, ``config`` and ``cli``.
"""

__version__ = "0.1.0"
