"""The look of cesped's HTML pages (evaluation report, leaderboard): one style sheet and page head.

Example usage::

    from cesped.evaluation.style import page_head
    html_text = page_head("cesped leaderboard") + "<h1>...</h1></body></html>"
"""

from __future__ import annotations

import html

__all__ = ["CSS", "page_head"]

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.value{font-weight:600}
figure{margin:1em 0} img{max-width:100%} figcaption{font-size:.85em;color:#555}
.note{font-size:.85em;color:#555} details summary{cursor:pointer;font-weight:600;margin:1em 0}
"""
"""The style sheet every cesped HTML page embeds (self-contained pages, no external file)."""


def page_head(title: str) -> str:
    """``<!DOCTYPE html>`` up to the opening ``<body>``: UTF-8, the escaped ``title`` and :data:`CSS`."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
    )
