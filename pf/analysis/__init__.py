"""Reading finished runs back: tables (``results``) and the figures drawn from them.

Nothing here trains, prunes or imports the trainer: drawing a figure needs only the
run records and the registries that name what they hold.
"""

__all__: list[str] = []
