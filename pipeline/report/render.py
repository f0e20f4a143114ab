"""Render a Report: a self-contained HTML page (inline CSS, every image a base64 data URI, no
script and no external resource: it opens offline and in a headless browser) and a Markdown
file whose images are the PNGs under figures/, referenced relatively."""

from __future__ import annotations

import base64
import html

from pipeline.report.doc import Block, Figure, Inline, Link, Report, Table, Text

FIGURES = "figures"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1200px;padding:1.5em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.3em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;font-size:.92em}
dl.meta dt{font-weight:600}dl.meta dd{margin:0;word-break:break-all}
nav ol{columns:2;font-size:.95em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}
caption{caption-side:bottom;text-align:left;font-size:.9em;color:#555;padding-top:.3em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
img.grid{image-rendering:pixelated;min-width:min(420px,100%)}
figcaption{font-size:.9em;color:#444;max-width:60em}
p.note{background:#fff6e0;border-left:4px solid #e0a800;padding:.4em .8em}
p.source{font-size:.8em;color:#666;word-break:break-all}
"""


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html_inline(v: Inline) -> str:
    if isinstance(v, Link):
        return f'<a href="{_esc(v.href)}">{_esc(v.text)}</a>'
    if isinstance(v, list):
        return "".join(_html_inline(p) for p in v)
    return _esc(v)


def _md_inline(v: Inline, escape=lambda s: s) -> str:
    if isinstance(v, Link):
        return f"[{escape(v.text)}]({v.href})"
    if isinstance(v, list):
        return "".join(_md_inline(p, escape) for p in v)
    return escape(v)


def _html_block(b: Block) -> str:
    if isinstance(b, Text):
        cls = "" if b.kind == "p" else f' class="{b.kind}"'
        return f"<p{cls}>{_html_inline(b.text)}</p>"
    if isinstance(b, Table):
        head = "".join(f"<th>{_esc(h)}</th>" for h in b.header)
        body = "".join("<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in row) + "</tr>"
                       for row in b.rows)
        cap = f"<caption>{_esc(b.caption)}</caption>" if b.caption else ""
        return (f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")
    alt = _esc(b.alt)
    cls = ' class="grid"' if b.pixelated else ""
    return (f'<figure id="fig-{_esc(b.name)}"><img{cls} alt="{alt}" src="{data_uri(b.png)}">'
            f"<figcaption>{_html_inline(b.caption)}</figcaption></figure>")


def to_html(report: Report) -> str:
    meta = "".join(f"<dt>{_esc(k)}</dt><dd>{_html_inline(v)}</dd>" for k, v in report.header)
    toc = "".join(f'<li><a href="#{_esc(s.id)}">{_esc(s.title)}</a></li>' for s in report.sections)
    sections = "\n".join(
        f'<section id="{_esc(s.id)}"><h2>{_esc(s.title)}</h2>\n' + "\n".join(_html_block(b) for b in s.blocks)
        + "</section>" for s in report.sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(report.title)}</title><style>{CSS}</style></head>\n<body>"
            f'<header><h1>{_esc(report.title)}</h1><dl class="meta">{meta}</dl></header>\n'
            f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>\n{sections}\n</body></html>\n")


def _md_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _cell(v: Inline) -> str:
    return _md_inline(v, _md_escape) or " "


def _md_block(b: Block) -> str:
    if isinstance(b, Text):
        if b.kind == "source":  # <sub> is HTML inside Markdown: links as <a>, text escaped
            return f"<sub>{_html_inline(b.text)}</sub>"
        body = _md_inline(b.text)
        return f"> **Note:** {body}" if b.kind == "note" else body
    if isinstance(b, Table):
        lines = ["| " + " | ".join(_cell(h) for h in b.header) + " |",
                 "|" + "---|" * len(b.header)]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b.rows]
        return "\n".join(lines) + (f"\n\n*{b.caption}*" if b.caption else "")
    return f"![{b.alt}]({FIGURES}/{b.name}.png)\n\n*{_md_inline(b.caption)}*"


def to_markdown(report: Report) -> str:
    toc = "\n".join(f"{i}. [{s.title}](#{s.id})" for i, s in enumerate(report.sections, 1))
    parts = [f"# {report.title}", "\n".join(f"- **{k}:** {_md_inline(v)}" for k, v in report.header),
             "## Contents\n\n" + toc]
    for s in report.sections:
        parts.append(f'<a id="{s.id}"></a>\n\n## {s.title}')
        parts += [_md_block(b) for b in s.blocks]
    return "\n\n".join(parts) + "\n"


def figure_files(report: Report) -> dict[str, bytes]:
    """figures/<name>.png -> PNG bytes, for the Markdown report."""
    return {f"{FIGURES}/{f.name}.png": f.png for f in report.figures() if isinstance(f, Figure)}
