"""The report's items: a figure (kept as the function that draws it) and a table, and the
list that collects the figures of one report with unique ids and the arms' colours."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pandas as pd
from matplotlib.figure import Figure

from bnstudy.report import figures
from bnstudy.report.roles import Roles


@dataclasses.dataclass(frozen=True)
class FigureItem:
    """One figure: ``id`` (anchor and file stem), its section, a title and caption, and a
    function that draws it (a fresh Figure each call)."""

    id: str
    section: str
    title: str
    caption: str
    draw: Callable[[], Figure]
    #: Spans the page's width (several panels) rather than one column of the figure grid.
    wide: bool = False


@dataclasses.dataclass(frozen=True)
class TableItem:
    title: str
    table: pd.DataFrame
    note: str = ""


class FigureList:
    """Collects FigureItems with unique ids, in page order, and the arms' colours."""

    def __init__(self, roles: Roles):
        self.roles = roles
        self.colours = figures.arm_colours(roles.arms, roles.control)
        self.items: list[FigureItem] = []

    def add(
        self,
        section: str,
        key: str,
        title: str,
        caption: str,
        draw: Callable[[], Figure],
        wide: bool = False,
    ) -> None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{section}-{key}").strip("-").lower()
        taken = {f.id for f in self.items}
        uid, i = stem, 2
        while uid in taken:
            uid, i = f"{stem}-{i}", i + 1
        self.items.append(FigureItem(uid, section, title, caption, draw, wide))
