"""A student's markdown as inert HTML.

Student answers are hostile input: the page must show them, never run them. :func:`to_html` renders
markdown with mistune (nbconvert's own markdown parser, already installed with nbgrader) with
``escape=True``, so every raw HTML tag or block comes out as text; links are shown as their text and
address, never as a live ``<a>``; images as ``[image: alt]``, so that opening the page fetches nothing.
LaTeX stays as its (escaped) source in a ``math`` span, set in a monospace font (no MathJax: the page
loads nothing from the network). The page also sets a
Content-Security-Policy that allows only its own nonce-tagged script, as a second line of defence.
"""

from __future__ import annotations

import html

import mistune


class _InertRenderer(mistune.HTMLRenderer):
    """mistune's HTML renderer with links and images turned into plain text."""

    def link(self, text: str, url: str, title: str | None = None) -> str:
        return f'{text} <span class="url">({html.escape(url)})</span>'

    def image(self, text: str, url: str, title: str | None = None) -> str:
        return f"[image: {text}]"   # mistune has already escaped the alt text


def _inline_math(renderer: mistune.HTMLRenderer, text: str) -> str:
    return f'<span class="math">{html.escape(text)}</span>'


def _block_math(renderer: mistune.HTMLRenderer, text: str) -> str:
    return f'<div class="math">{html.escape(text)}</div>\n'


_MARKDOWN = mistune.create_markdown(renderer=_InertRenderer(escape=True), plugins=["strikethrough", "table", "math"])
_MARKDOWN.renderer.register("inline_math", _inline_math)   # the LaTeX source, escaped, without \( \)
_MARKDOWN.renderer.register("block_math", _block_math)


def to_html(markdown: str) -> str:
    """Render ``markdown`` to HTML in which no tag, attribute or URL of the input is live."""
    return str(_MARKDOWN(markdown))


def to_inline_html(markdown: str) -> str:
    """:func:`to_html` of one line, without the enclosing paragraph (for list items)."""
    out = to_html(markdown).strip()
    if out.startswith("<p>") and out.endswith("</p>") and out.count("<p>") == 1:
        return out[3:-4]
    return out
