"""`report.html`: one self-contained page (images inlined as data URIs, no network fetch)."""

from __future__ import annotations

import base64
from html import escape

# Sorts the per-class table by the clicked column (numbers numerically, names as text);
# a second click reverses. Plain JS, no library.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var ascending = th.getAttribute("data-order") !== "asc";
    table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("data-order"); });
    th.setAttribute("data-order", ascending ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].getAttribute("data-value"), y = b.cells[column].getAttribute("data-value");
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f0f0; }
table.sortable th { cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " \\25B2"; }
th[data-order="desc"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
.summary span { margin-right: 2em; font-size: 1.2em; }
.subtitle { color: #555; word-break: break-all; }
"""


def _cell(value, text: str | None = None, numeric: bool = False) -> str:
    shown = escape(text if text is not None else str(value))
    css = ' class="num"' if numeric else ""
    return f'<td{css} data-value="{escape(str(value))}">{shown}</td>'


def render_html(report: dict, confusion_png: bytes | None, title: str = "Evaluation report", subtitle: str = "") -> str:
    """The page for a `build_report` dict and the confusion matrix PNG (None: left out)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="subtitle">{escape(subtitle)}</p>' if subtitle else "",
        '<p class="summary">'
        f'<span>top-1 <b id="top1">{report["top1"]:.4f}</b></span>'
        f'<span>top-5 <b id="top5">{report["top5"]:.4f}</b></span>'
        f'<span>{report["count"]} videos, {len(report["skipped"])} skipped, {len(report["classes"])} classes</span></p>',
    ]
    if confusion_png is not None:
        data = base64.b64encode(confusion_png).decode("ascii")
        parts.append(f'<h2>Confusion matrix</h2><img alt="confusion matrix" src="data:image/png;base64,{data}">')

    parts.append('<h2>Per class</h2><p>Click a column to sort.</p><table class="sortable" id="per-class"><thead><tr>')
    parts += [f"<th>{name}</th>" for name in ("id", "class", "support", "precision", "recall", "F1")]
    parts.append("</tr></thead><tbody>")
    for row in report["per_class"]:
        parts.append(
            "<tr>" + _cell(row["id"], numeric=True) + _cell(row["name"]) + _cell(row["support"], numeric=True)
            + "".join(_cell(row[k], f"{row[k]:.3f}", numeric=True) for k in ("precision", "recall", "f1")) + "</tr>"
        )  # fmt: skip
    parts.append("</tbody></table>")

    parts.append(f'<h2>Most confident mistakes ({len(report["mistakes"])})</h2>')
    if report["mistakes"]:
        parts.append('<table id="mistakes"><thead><tr><th>video</th><th>true</th><th>predicted</th><th>score</th></tr></thead><tbody>')
        for m in report["mistakes"]:
            parts.append("<tr>" + _cell(m["path"]) + _cell(m["true"]) + _cell(m["predicted"])
                         + _cell(m["score"], f"{m['score']:.3f}", numeric=True) + "</tr>")  # fmt: skip
        parts.append("</tbody></table>")
    else:
        parts.append("<p>None.</p>")

    parts.append(f'<h2>Skipped videos ({len(report["skipped"])})</h2>')
    if report["skipped"]:
        parts.append('<table id="skipped"><thead><tr><th>video</th><th>reason</th></tr></thead><tbody>')
        parts += ["<tr>" + _cell(s["path"]) + _cell(s["reason"]) + "</tr>" for s in report["skipped"]]
        parts.append("</tbody></table>")
    else:
        parts.append("<p>None.</p>")
    parts.append(f"<script>{_SORT_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)
