"""pf: reproducing PruneFuse (Kousar, Bhatti, Moon; arXiv 2501.01118, 2603.26138) and its
neighbours: prune an untrained network, let it pick which samples get labeled, fuse it
back into the dense network and train that with distillation.

The library is organised as the flow of one experiment, each stage importing only from those
before it: the substrate (``data``, ``batches``, ``models``, ``graphs``, ``train``, ``flops``,
``storage``, ``provenance``, ``paths``) -> the algorithms (``prune``, ``fuse``, ``select``,
``scores``, ``extrapolate``) -> ``experiments`` (the methods' rules, the config, the cost
plan, the two experiments' loops, the run record, one run) -> ``analysis`` (tables and
figures from records) -> operation (``sweep``, ``executors``, ``cli``, the ``pf`` command).
"""

__version__ = "0.1.0"
