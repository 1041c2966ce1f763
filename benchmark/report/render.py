"""The report as data (a list of blocks) and its two renderings: markdown and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

from benchmark.report.claims import FAILS_HERE, HOLDS_HERE, NOT_REPRODUCED, NOT_RUN, REPRODUCED, SATURATED


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    name: str  # under figures/
    title: str
    caption: str


@dataclass
class Link:
    """A table cell or list entry that links somewhere (an MLflow run, an anchor of the page)."""

    text: str
    href: str


@dataclass
class Strong:
    """A table cell in bold (the best value of its column)."""

    text: str


@dataclass
class Links:
    """Several links in one table cell (e.g. one MLflow run per seed)."""

    items: list[Link]


@dataclass
class Details:
    """Content a reader opens on demand: a collapsible <details> section in HTML, a titled part in markdown."""

    summary: str
    blocks: list


Block = Heading | Text | Bullets | Table | Image | Details


def anchor(text: str) -> str:
    """The id of a heading: lower case, words joined by '-' (as GitHub's markdown does, near enough)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _plain(cell) -> str:
    if isinstance(cell, Links):
        return " ".join(_plain(i) for i in cell.items)
    return str(cell.text) if isinstance(cell, (Link, Strong)) else str(cell)


def _md_cell(cell) -> str:
    if isinstance(cell, Link):
        text = f"[{_md_cell(cell.text)}]({cell.href})"
    elif isinstance(cell, Links):
        text = " ".join(_md_cell(i) for i in cell.items)
    elif isinstance(cell, Strong):
        text = f"**{_md_cell(cell.text)}**"
    else:
        text = str(cell)
    return text.replace("|", "\\|").replace("\n", " ")


def toc(blocks: list[Block]) -> list[tuple[str, str]]:
    """(text, anchor) of every section heading (level 2), in order."""
    return [(b.text, anchor(b.text)) for b in blocks if isinstance(b, Heading) and b.level == 2]


def render_markdown(title: str, blocks: list[Block]) -> str:
    out = [f"# {title}", ""]
    sections = toc(blocks)
    if sections:
        out += ["Contents: " + " · ".join(f"[{text}](#{ref})" for text, ref in sections), ""]
    out += _markdown_blocks(blocks)
    return "\n".join(out).rstrip() + "\n"


def _markdown_blocks(blocks: list[Block]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                out += [block.caption, ""]
            out.append("| " + " | ".join(map(_md_cell, block.columns)) + " |")
            out.append("|" + "---|" * len(block.columns))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Image):
            out += [f"![{block.title}](figures/{block.name})", "", f"*{block.caption}*", ""]
        elif isinstance(block, Details):
            out += [f"**{block.summary}**", "", *_markdown_blocks(block.blocks)]
    return out


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1f2328; line-height: 1.45; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
.scroll { max-width: 100%; overflow-x: auto; }
td.links a { margin-right: 0.3em; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; padding: 0.5em 1em; margin: 1em 0; }
nav.toc ol { margin: 0.3em 0; columns: 2; }
details { margin: 0.5em 0 1.5em; }
details > summary { cursor: pointer; color: #0969da; }
.provenance td:first-child { font-weight: 600; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfbfc; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption, .caption { color: #57606a; font-size: 0.9em; }
code { background: #f6f8fa; padding: 0 3px; border-radius: 3px; }
.verdict-reproduced { color: #1a7f37; font-weight: 600; }
.verdict-not-reproduced { color: #cf222e; font-weight: 600; }
.verdict-not-run { color: #57606a; }
.verdict-holds-here { color: #1a7f37; }
.verdict-fails-here { color: #cf222e; }
.verdict-saturated { color: #9a6700; }
"""


VERDICT_CSS = {
    REPRODUCED: "verdict-reproduced",
    NOT_REPRODUCED: "verdict-not-reproduced",
    HOLDS_HERE: "verdict-holds-here",
    FAILS_HERE: "verdict-fails-here",
    SATURATED: "verdict-saturated",
    NOT_RUN: "verdict-not-run",
}


def _link(link: Link) -> str:
    external = "" if link.href.startswith("#") else ' target="_blank" rel="noopener"'
    return f'<a href="{html.escape(link.href)}"{external}>{html.escape(str(link.text))}</a>'


def _td(cell) -> str:
    if isinstance(cell, Link):
        return f"<td>{_link(cell)}</td>"
    if isinstance(cell, Links):
        return '<td class="links">' + " ".join(_link(i) for i in cell.items) + "</td>"
    if isinstance(cell, Strong):
        return f"<td><strong>{html.escape(str(cell.text))}</strong></td>"
    text = str(cell)
    css = VERDICT_CSS.get(text)
    return f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>"


def _inline(text: str) -> str:
    """Escaped text with markdown `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(title: str, blocks: list[Block], images: dict[str, bytes]) -> str:
    """One self-contained page: inline CSS, figures as base64 data URIs, no external resources."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    sections = toc(blocks)
    if sections:
        items = "".join(f'<li><a href="#{ref}">{html.escape(text)}</a></li>' for text, ref in sections)
        out.append(f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>')
    out += _html_blocks(blocks, images)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_blocks(blocks: list[Block], images: dict[str, bytes]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            ref = f' id="{anchor(block.text)}"' if block.level == 2 else ""
            out.append(f"<h{block.level}{ref}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            if block.caption:
                out.append(f'<p class="caption">{html.escape(block.caption)}</p>')
            out.append(
                '<div class="scroll"><table><thead><tr>'
                + "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
                + "</tr></thead><tbody>"
            )
            out += ["<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in block.rows]
            out.append("</tbody></table></div>")
        elif isinstance(block, Image):
            data = base64.b64encode(images[block.name]).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Details):
            out.append(f"<details><summary>{html.escape(block.summary)}</summary>")
            out += _html_blocks(block.blocks, images)
            out.append("</details>")
    return out
