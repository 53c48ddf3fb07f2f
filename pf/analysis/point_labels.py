"""Labels of scattered points (Fig. 5's selectors) placed where they cover no mark.

A label is an annotation offset from its point by a spot of ``LABEL_SPOTS``
(``label_point``); ``clear_labels`` moves every label of an axes to the first combination
of spots, in each label's order of preference, in which no label covers a point, an error
bar or another label and every label stays inside the panel, joined to its point by a thin
line when it had to move further out (``LEADER_SPOTS``).
"""

from __future__ import annotations

from matplotlib.text import Text
from matplotlib.transforms import Bbox

__all__ = ["LABEL_SPOTS", "LEADER_SPOTS", "label_point", "clear_labels"]

# Where a label may sit: (dx, dy) points from its point, and its alignment; those on the
# side it was given first (beside the point, straight over it, a line further out), then
# the other side's; last, further out still, joined to its point by a line.
LABEL_SPOTS = {True: ((5, 4, "left", "bottom"), (-5, 4, "right", "bottom"),
                      (0, 8, "center", "bottom"), (5, 14, "left", "bottom"),
                      (-5, 14, "right", "bottom")),
               False: ((5, -4, "left", "top"), (-5, -4, "right", "top"),
                       (0, -8, "center", "top"), (5, -14, "left", "top"),
                       (-5, -14, "right", "top"))}
LEADER_SPOTS = tuple((dx, dy, ha, "bottom" if dy > 0 else "top")
                     for dy in (26, -26, 40, -40) for dx, ha in ((12, "left"), (-12, "right")))
LEADER = dict(arrowstyle="-", color="0.5", linewidth=0.6, shrinkA=1, shrinkB=4)
LABEL_SEARCH = 20000  # placements tried before settling for the greedy one


def _mark_boxes(ax) -> list[Bbox]:
    """Display boxes of every point, error-bar cap and error bar an axes draws (matplotlib's
    ``errorbar`` containers), a box per mark, not one around a whole line."""
    boxes = []
    pixels = ax.figure.dpi / 72  # per point
    for container in ax.containers:
        points, caps, bars = container.lines
        for line in (points, *caps):
            half = line.get_markersize() * pixels / 2
            boxes += [Bbox([[x - half, y - half], [x + half, y + half]])
                      for x, y in line.get_transform().transform(line.get_xydata())]
        for collection in bars:
            for segment in collection.get_segments():
                (x0, y0), (x1, y1) = ax.transData.transform(segment)
                boxes.append(Bbox([[min(x0, x1) - 1, min(y0, y1)], [max(x0, x1) + 1,
                                                                    max(y0, y1)]]))
    return boxes


def _put(label, spot: tuple) -> None:
    """Move an annotation to ``spot`` (dx, dy, horizontal and vertical alignment); its
    leader line shows only from the ``LEADER_SPOTS``."""
    label.xyann = spot[:2]
    label.set(ha=spot[2], va=spot[3])
    label.arrow_patch.set_visible(spot in LEADER_SPOTS)


def label_point(ax, text: str, xy: tuple[float, float], above: bool):
    """Label the point ``xy`` (data coordinates) of ``ax`` with ``text``, beside it above or
    below it (``LABEL_SPOTS``); ``clear_labels`` may move it later."""
    label = ax.annotate(text, xy, xytext=LABEL_SPOTS[above][0][:2], textcoords="offset points",
                        arrowprops=LEADER)
    _put(label, LABEL_SPOTS[above][0])
    return label


def _clear_of(option: tuple, chosen: list) -> bool:
    """Whether ``option``'s box overlaps none of the boxes already ``chosen``."""
    return not any(other and option[1].overlaps(other[1]) for other in chosen)


def _clear_combination(options: list[list]) -> list:
    """One (spot, box) per label from its ``options`` (in preference order) such that no two
    boxes overlap, the first such combination in preference order, most constrained labels
    first; None for a label without options. After ``LABEL_SEARCH`` tries, each label
    takes its first option clear of those before it (None where there is none)."""
    order = sorted(range(len(options)), key=lambda index: len(options[index]))
    chosen, tries = [None] * len(options), 0

    def place(position: int) -> bool:
        nonlocal tries
        if position == len(order):
            return True
        index = order[position]
        if not options[index]:
            return place(position + 1)
        for option in options[index]:
            tries += 1
            if tries > LABEL_SEARCH:
                return False
            if _clear_of(option, chosen):
                chosen[index] = option
                if place(position + 1):
                    return True
                chosen[index] = None
        return False

    if place(0):
        return chosen
    chosen = [None] * len(options)
    for index in order:
        chosen[index] = next((option for option in options[index]
                              if _clear_of(option, chosen)), None)
    return chosen


def clear_labels(ax) -> None:
    """Move ``ax``'s point labels to spots of ``LABEL_SPOTS`` (or ``LEADER_SPOTS``) where none
    covers a point, an error-bar cap, an error bar or another label, inside the panel
    (``_clear_combination``); a label without such a spot stays where ``label_point`` put
    it. Runs once the figure is laid out: the spots are in points, the marks in data
    coordinates."""
    renderer = ax.figure.canvas.get_renderer()
    marks, panel = _mark_boxes(ax), ax.get_window_extent(renderer)
    labels = list(ax.texts)
    sides = [label.xyann[1] > 0 for label in labels]  # above: the side label_point was given
    options = []
    for label, above in zip(labels, sides):
        fits = []
        for spot in (*LABEL_SPOTS[above], *LABEL_SPOTS[not above], *LEADER_SPOTS):
            _put(label, spot)
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)  # the text's, not its leader's
            if (panel.contains(box.x0, box.y0) and panel.contains(box.x1, box.y1)
                    and not any(box.overlaps(mark) for mark in marks)):
                fits.append((spot, box))
        options.append(fits)
    for label, above, option in zip(labels, sides, _clear_combination(options)):
        _put(label, option[0] if option else LABEL_SPOTS[above][0])
