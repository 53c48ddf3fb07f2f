"""One experiment, from its configuration to its run record.

The methods' rules (``methods``) and the validated configuration (``config``) come first;
``cost`` plans what a run will compute; ``active_learning`` and ``data_pruning`` are the
two experiments' loops; ``record`` is what a finished run writes and how it is read
back; ``run`` runs one experiment and records it.
"""

__all__ = ["ACTIVE_LEARNING", "DATA_PRUNING", "EXPERIMENTS"]

ACTIVE_LEARNING = "active_learning"  # a selector picks the labels, budget after budget
DATA_PRUNING = "data_pruning"  # score the training set, keep the highest, retrain
EXPERIMENTS = (ACTIVE_LEARNING, DATA_PRUNING)
