"""The page every report is: one self-contained report.html (CSS inline, images embedded) and its report.md.

A `Page` collects the two side by side: each method adds the same content to both, escaped for HTML.
What only one of them shows, a writer appends itself to `page.html` (HTML, escaped already) or
`page.md` (Markdown lines).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d232b}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;border-bottom:1px solid #d5d9e0;padding-bottom:4px}
.meta{color:#5b6572;font-size:13px;margin-bottom:18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 12px}
.card .v{font-size:22px;font-weight:600}.card .ci{font-size:12px;color:#3b4552;margin-top:2px}.card .k{font-size:12px;color:#5b6572}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0}
th,td{border:1px solid #dde1e7;padding:5px 9px;text-align:right}th{background:#eef1f5}
td:first-child,th:first-child{text-align:left}td.better{font-weight:700;background:#eaf6ec}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:8px}
figure.wide{grid-column:1/-1}
figure img{max-width:100%;display:block;margin:0 auto}figcaption{font-size:12px;color:#5b6572;margin-top:4px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.wrong figcaption{color:#b3261e}.note{font-size:13px;color:#5b6572}p,li{font-size:14px}
"""

escape = html.escape


def format_value(value, kind: str = "f") -> str:
    """A number as report text: % share, t threshold, i count, ms, $, mb bytes, s seconds, /s rate."""
    if value is None:
        return "n/a"
    if kind == "%":
        return f"{value:.2%}"
    if kind == "t":
        return f"{value:.4f}"
    if kind == "i":
        return f"{value:,}"
    if kind == "ms":
        return f"{value:,.1f} ms"
    if kind == "$":  # fractions of a cent matter for per-image prices
        return f"${value:,.2f}" if value == 0 or value >= 0.1 else f"${value:.2g}"
    if kind == "mb":
        return f"{value / 1e6:,.2f} MB" if value >= 1e6 else f"{value / 1e3:,.1f} kB"
    if kind == "s":
        return f"{value:,.2f} s" if value >= 0.1 else f"{value * 1000:,.1f} ms"
    if kind == "/s":
        return f"{value:,.1f} images/s"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_estimate(value, interval: dict | None, kind: str = "f") -> str:
    """A headline figure with its bootstrap interval: "0.9510 (95% CI 0.902-0.981)", "95.10% (95% CI 93.2-96.8%)".
    The figure alone where it has no interval (or every resample left it undefined)."""
    text = format_value(value, kind)
    if value is None or not interval or interval.get("low") is None:
        return text
    low, high = interval["low"], interval["high"]
    bounds = f"{low:.1%}-{high:.1%}".replace("%-", "-") if kind == "%" else f"{low:.3f}-{high:.3f}"
    return f"{text} ({interval['level']:.0%} CI {bounds})"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """An image as a data: URI, so that report.html needs no file beside it."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def html_table(header, rows, better=None) -> str:
    """better: per row, the index of the cell holding the better value (highlighted), or None."""
    marked = better or [None] * len(rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='better'>{escape(v)}</td>" if c == best else f"<td>{escape(v)}</td>"
                                    for c, v in enumerate(row)) + "</tr>" for row, best in zip(rows, marked))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def md_table(header, rows, better=None) -> str:
    """The same table in Markdown; the better cell in bold."""
    marked = better or [None] * len(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row, best in zip(rows, marked):
        cells = [v.replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(f"**{v}**" if c == best else v for c, v in enumerate(cells)) + " |")
    return "\n".join(lines)


class Page:
    """One report: `folder` is where report.md will lie (its image links are relative to it)."""

    def __init__(self, folder: str | Path, title: str, meta: list[tuple[str, str]], css: str = CSS):
        self.folder = Path(folder)
        self.html = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>",
                     f"<style>{css}</style></head><body><main><h1>{escape(title)}</h1>",
                     "<div class='meta'>" + " &middot; ".join(f"{escape(k)}: {escape(v)}" for k, v in meta) + "</div>"]
        self.md = [f"# {title}", "", "  \n".join(f"{k}: {v}" for k, v in meta), ""]

    def cards(self, cards: list[tuple[str, str]]) -> None:
        """Headline numbers: cards in HTML, a Metric | Value table in Markdown."""
        self.html.append("<div class='cards'>" + "".join(_card(k, v) for k, v in cards) + "</div>")
        self.md += ["## Headline", "", md_table(["Metric", "Value"], [[k, v] for k, v in cards]), ""]

    def heading(self, text: str) -> None:
        self.html.append(f"<h2>{escape(text)}</h2>")
        self.md += [f"## {text}", ""]

    def paragraph(self, text: str) -> None:
        self.html.append(f"<p>{escape(text)}</p>")
        self.md += [text, ""]

    def note(self, text: str) -> None:
        """A paragraph that explains the numbers around it (small grey text in HTML)."""
        self.html.append(f"<p class='note'>{escape(text)}</p>")
        self.md += [text, ""]

    def bullets(self, items: list[str], css_class: str = "") -> None:
        css = f" class='{css_class}'" if css_class else ""
        self.html.append(f"<ul{css}>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>")
        self.md += [*(f"- {item}" for item in items), ""]

    def table(self, header, rows, better=None) -> None:
        self.html.append(html_table(header, rows, better))
        self.md += [md_table(header, rows, better), ""]

    def figure(self, path: str | Path, alt: str) -> None:
        """One image across the page, without a caption."""
        self.html.append(f"<figure><img src='{data_uri(Path(path).read_bytes())}' alt='{escape(alt)}'></figure>")
        self.md += [f"![{alt}]({self._link(path)})", ""]

    def figures(self, items: list[tuple[str | Path, str, str]], grid: str = "gallery") -> None:
        """Captioned images in a grid ("gallery": small, "plots": large); items are (path, caption, css class:
        "wide" spans the grid, "wrong" colours the caption)."""
        parts = []
        for path, caption, css_class in items:
            css = f" class='{css_class}'" if css_class else ""
            parts.append(f"<figure{css}><img src='{data_uri(Path(path).read_bytes())}' alt='{escape(caption)}'>"
                         f"<figcaption>{escape(caption)}</figcaption></figure>")
        self.html.append(f"<div class='{grid}'>" + "".join(parts) + "</div>")
        for path, caption, _ in items:
            self.md += [f"![{caption}]({self._link(path)})", ""]

    def html_text(self) -> str:
        return "".join(self.html) + "</main></body></html>\n"

    def md_text(self) -> str:
        return "\n".join(self.md).rstrip("\n") + "\n"

    def _link(self, path: str | Path) -> str:
        return Path(path).relative_to(self.folder).as_posix()


def _card(key: str, value: str) -> str:
    """One headline card: the figure large, its interval ("95% CI 0.90-0.98", format_estimate's) small beneath."""
    figure, _, interval = value.partition(" (")
    ci = f"<div class='ci'>{escape(interval.rstrip(')'))}</div>" if interval.endswith(")") and "CI" in interval else ""
    if not ci:
        figure = value
    return f"<div class='card'><div class='v'>{escape(figure)}</div>{ci}<div class='k'>{escape(key)}</div></div>"
