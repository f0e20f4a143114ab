"""The report as data: sections of text, tables and figures, rendered to HTML and Markdown by
pipeline.report.render. Also the number formatting every section shares ("not measured" for a
missing or non-finite value, never a crash or a silent blank)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Link:
    """A hyperlink inside a text or a table cell: "#anchor" (a section of the report) or a URL."""

    text: str
    href: str


Inline = str | Link | list[str | Link]  # a text or a cell: plain, one link, or a run of both


def plain(value: Inline) -> str:
    """The text of an inline value without its links."""
    if isinstance(value, Link):
        return value.text
    if isinstance(value, list):
        return "".join(plain(v) for v in value)
    return value


@dataclass
class Text:
    text: Inline
    kind: str = "p"  # p: prose | note: an absent experiment or metric | source: the trials behind a result


@dataclass
class Table:
    header: list[str]
    rows: list[list[Inline]]
    caption: str = ""


@dataclass
class Figure:
    name: str  # file stem under figures/ (Markdown) and the anchor of the image (HTML)
    png: bytes
    caption: Inline
    pixelated: bool = False  # an image grid: shown enlarged without smoothing
    title: str = ""  # the image's alt text (default: its name)

    @property
    def alt(self) -> str:
        return self.title or self.name.replace("_", " ")


Block = Text | Table | Figure


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    header: list[tuple[str, Inline]]  # (key, value) lines under the title
    sections: list[Section]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


def missing(value: Any) -> bool:
    """None, NaN, +-inf or pandas' NA: a value that was not (or could not be) measured."""
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return str(value) in ("<NA>", "nan", "NaT")


def num(value: Any, digits: int = 2, signed: bool = False, default: str = NOT_MEASURED) -> str:
    if missing(value):
        return default
    return f"{float(value):{'+' if signed else ''}.{digits}f}"


def count(value: Any, default: str = NOT_MEASURED) -> str:
    return default if missing(value) else f"{int(value):,}"


def text(value: Any, default: str = "—") -> str:
    return default if missing(value) or value == "" else str(value)


ML_VIEW = "workflowType=machine_learning"


def run_link(run_id: Any, ui: str | None) -> Inline:
    """An MLflow run id, linked to its page in the MLflow UI (`ui`: the UI's base URL) when known.
    The UI's /#/runs/<id> route finds the run's experiment itself; workflowType keeps MLflow 3's
    UI on its model-training pages (its default is the GenAI view)."""
    if missing(run_id) or not str(run_id):
        return text(run_id)
    return Link(str(run_id), f"{ui.rstrip('/')}/#/runs/{run_id}?{ML_VIEW}") if ui else str(run_id)


def experiment_link(caption: str, experiment_id: Any, ui: str | None, page: str = "") -> Inline:
    """An MLflow experiment's page in the UI: its runs table, or `page` ("/models": its logged
    models), on the model-training view; the caption alone when the id or the UI is unknown."""
    if missing(experiment_id) or not str(experiment_id) or not ui:
        return caption
    return Link(caption, f"{ui.rstrip('/')}/#/experiments/{experiment_id}{page}?{ML_VIEW}")


def source(rows: Iterable[Mapping[str, Any]], what: str = "", ui: str | None = None) -> Text:
    """The trials a figure or table came from: cell label, Ray Tune trial id, MLflow run id (a link
    to the MLflow UI when `ui` is given)."""
    parts: list[str | Link] = [f"Source{' (' + what + ')' if what else ''}: "]
    for i, r in enumerate(rows):
        parts += ["; " if i else "", f"{r.get('cell_label') or r.get('cell')}: trial "
                  f"{text(r.get('trial_id'))}, MLflow run ", run_link(r.get("mlflow_run_id"), ui)]
    parts.append("." if len(parts) > 1 else "no trials.")
    return Text([p for p in parts if p], "source")
