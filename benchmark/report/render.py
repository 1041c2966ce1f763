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


Block = Heading | Text | Bullets | Table | Image


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: list[Block]) -> str:
    out = [f"# {title}", ""]
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
    return "\n".join(out).rstrip() + "\n"


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #1f2328; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
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


def _td(text: str) -> str:
    text = str(text)
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
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            if block.caption:
                out.append(f'<p class="caption">{html.escape(block.caption)}</p>')
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
                + "</tr></thead><tbody>"
            )
            out += ["<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in block.rows]
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(images[block.name]).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
