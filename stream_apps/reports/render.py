"""Draw a ``figures.Report``: matplotlib figures (no pyplot, no display: Agg-only ``Figure``
objects), each inlined as SVG into one self-contained HTML page (jinja2,
``templates/report.html.j2``), and the same figures in a PDF through matplotlib's PdfPages.

Why PdfPages and not WeasyPrint: WeasyPrint 70 renders this HTML well here (Debian's pango
1.50 is installed), but it needs pango and its fonts from the operating system, which pip
cannot install (macOS and Windows need Homebrew or MSYS2 first), and the daily service must not
fail on a laptop that lacks them. PdfPages ships with matplotlib, draws the very same figures,
and adds a first page with the key numbers; the HTML stays the complete report.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stream_apps.reports.figures import Heatmap, PromotionFunnel, RankedProduct, Report

TEMPLATES = Path(__file__).parent / "templates"
STAGE_COLOURS = {"near": "#9ecae1", "offered": "#6baed6", "delivered": "#4292c6",
                 "opened": "#2171b5", "redeemed": "#e6550d"}
FUNNEL_PLOTTED = 12  # promotions in the funnel plot (the table lists them all)
RANKED_PLOTTED = 25
RC: dict[str, Any] = {"svg.fonttype": "none",  # text stays text: searchable, small
      "svg.hashsalt": "instore-report",  # stable element ids: the same figures, the same file
      "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}


@dataclass
class Plot:
    key: str
    title: str
    caption: str
    svg: str


@dataclass
class Rendered:
    html: str
    pdf: bytes | None
    plots: list[Plot]


def render(report: Report, *, pdf: bool, generated_at: datetime) -> Rendered:
    figures: list[tuple[str, str, str, Figure]] = []
    with mpl.rc_context(RC):  # type: ignore[arg-type]  # stubs want each key as a Literal
        if report.funnels:
            shown = report.funnels[:FUNNEL_PLOTTED]
            more = (f" The {len(shown)} promotions with the most offers of {len(report.funnels)}."
                    if len(report.funnels) > len(shown) else "")
            figures.append(("funnel", "Funnel per promotion",
                            "Shoppers near each promotion, then its offers by the furthest stage "
                            "they reached." + more, _funnel(shown)))
        if report.totals.offers or report.totals.redemptions:
            figures.append(("hourly", "Offers and redemptions over the day",
                            "Per hour (UTC): offers made, and offers redeemed (first "
                            "redemption).", _hourly(report)))
        if report.heatmap is not None:
            figures.append(("heatmap", "Where shoppers dwelt",
                            f"Seconds spent per {report.heatmap.cell_m:g} m cell, from the "
                            f"shoppers' positions; dots are the store's products.",
                            _heatmap(report.heatmap)))
        if report.top_dwell:
            figures.append(("top_dwell", "Top 10 % products by dwell",
                            f"Seconds shoppers dwelt near each product; {len(report.top_dwell)} "
                            f"of {report.products_with_dwell} products with any dwell.",
                            _ranked(report.top_dwell, "dwell (s)", "#31a354")))
        if report.top_redemptions:
            figures.append(("top_redemptions", "Top 10 % products by redemptions",
                            f"Offers redeemed per product; {len(report.top_redemptions)} of "
                            f"{report.products_redeemed} products redeemed.",
                            _ranked(report.top_redemptions, "redemptions", "#e6550d")))
        if report.pairs:
            figures.append(("pairs", "Bought together",
                            f"Shoppers who redeemed both products within "
                            f"{report.basket_window_s / 3600:g} h; the top {len(report.pairs)} "
                            f"of {report.pairs_total} pairs.", _pairs(report)))
        plots = [Plot(key, title, caption, _svg(fig)) for key, title, caption, fig in figures]
        pdf_bytes = _pdf(report, figures, generated_at) if pdf else None
    html = _environment().get_template("report.html.j2").render(
        r=report, plots={p.key: p for p in plots}, generated_at=generated_at,
        label=product_label)
    return Rendered(html, pdf_bytes, plots)


def product_label(sku: int, name: str | None) -> str:
    return f"{name} ({sku})" if name else f"SKU {sku}"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v: f"{v:,.0f}" if isinstance(v, int | float) else "–"
    env.filters["pct"] = lambda v: "–" if v is None else f"{v * 100:.1f} %"
    return env


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg",  # no RDF block, no date: the same figures, the same bytes
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # no XML declaration or DOCTYPE inside HTML


def _short(text: str, n: int = 32) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _funnel(funnels: list[PromotionFunnel]) -> Figure:
    stages = list(STAGE_COLOURS)
    fig = _figure(8, 1.2 + 0.55 * len(funnels))
    ax = fig.add_subplot()
    step = 1.0 / (len(stages) + 1)
    for i, stage in enumerate(stages):
        ys = [row + i * step for row in range(len(funnels))]
        label = "near (shoppers)" if stage == "near" else f"{stage} (offers)"
        bars = ax.barh(ys, [getattr(f, stage) for f in funnels], height=step,
                       color=STAGE_COLOURS[stage], label=label)
        ax.bar_label(bars, fmt="%d", padding=2, fontsize=7)
    ax.set_yticks([row + step * (len(stages) - 1) / 2 for row in range(len(funnels))],
                  [_short(f.title or f.pid) for f in funnels])
    ax.invert_yaxis()
    ax.set_xlabel("shoppers / offers")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return fig


def _hourly(report: Report) -> Figure:
    fig = _figure(8, 3)
    ax = fig.add_subplot()
    hours = [h.hour for h in report.hourly]
    ax.bar([h - 0.2 for h in hours], [h.offers for h in report.hourly], width=0.4,
           color=STAGE_COLOURS["offered"], label="offers made")
    ax.bar([h + 0.2 for h in hours], [h.redemptions for h in report.hourly], width=0.4,
           color=STAGE_COLOURS["redeemed"], label="redemptions")
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
    ax.set_xlim(-0.6, 23.6)
    ax.set_xlabel("hour (UTC)")
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False)
    return fig


def _scale_length(width_m: float) -> float:
    """A round length (1, 2 or 5 x 10^k metres) about a fifth of the floor's width."""
    target = max(width_m / 5, 0.1)
    base = 10 ** math.floor(math.log10(target))
    return max(m * base for m in (1, 2, 5) if m * base <= target)


def _heatmap(h: Heatmap) -> Figure:
    import numpy as np  # noqa: PLC0415 - matplotlib's own dependency
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar  # noqa: PLC0415

    aspect = h.height_m / h.width_m if h.width_m else 1.0
    fig = _figure(8, max(2.5, min(8.0, 6.2 * aspect + 0.9)))
    ax = fig.add_subplot()
    grid = np.ma.masked_less_equal(np.asarray(h.seconds, dtype=float), 0.0)
    cmap = mpl.colormaps["YlOrRd"].with_extremes(bad="#f7f7f7")
    image = ax.imshow(grid, origin="lower", cmap=cmap, interpolation="nearest",
                      extent=(0, h.nx * h.cell_m, 0, h.ny * h.cell_m))
    fig.colorbar(image, ax=ax, label="seconds", shrink=0.8)
    if h.products:
        ax.scatter([p.x_m for p in h.products], [p.y_m for p in h.products], s=8, c="#08519c",
                   linewidths=0, label="products")
        ax.legend(loc="upper right", fontsize=7, frameon=True)
    length = _scale_length(h.width_m)
    ax.add_artist(AnchoredSizeBar(ax.transData, length, f"{length:g} m", "lower left",
                                  pad=0.4, sep=3, frameon=True, size_vertical=h.cell_m / 4))
    ax.set_xlim(0, h.width_m)
    ax.set_ylim(0, h.height_m)
    ax.set_aspect("equal")
    ax.set_xlabel("metres east of the floor's south-west corner")
    ax.set_ylabel("metres north")
    return fig


def _ranked(items: list[RankedProduct], xlabel: str, colour: str) -> Figure:
    shown = items[:RANKED_PLOTTED]
    fig = _figure(8, 1.0 + 0.3 * len(shown))
    ax = fig.add_subplot()
    bars = ax.barh(range(len(shown)), [i.value for i in shown], color=colour)
    ax.bar_label(bars, fmt="%.0f", padding=2, fontsize=7)
    ax.set_yticks(range(len(shown)), [_short(product_label(i.sku, i.name)) for i in shown])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return fig


def _pairs(report: Report) -> Figure:
    fig = _figure(8, 1.0 + 0.3 * len(report.pairs))
    ax = fig.add_subplot()
    bars = ax.barh(range(len(report.pairs)), [p.shoppers for p in report.pairs], color="#756bb1")
    ax.bar_label(bars, fmt="%d", padding=2, fontsize=7)
    ax.set_yticks(range(len(report.pairs)),
                  [f"{_short(product_label(p.sku_a, p.name_a), 24)} + "
                   f"{_short(product_label(p.sku_b, p.name_b), 24)}" for p in report.pairs])
    ax.invert_yaxis()
    ax.set_xlabel("shoppers")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def _pdf(report: Report, figures: list[tuple[str, str, str, Figure]],
         generated_at: datetime) -> bytes:
    buf = io.BytesIO()
    meta: dict[str, Any] = {"Title": f"{report.store_id} on {report.day.isoformat()}",
                            "Creator": "instore report", "CreationDate": None}
    with PdfPages(buf, metadata=meta) as pages:
        pages.savefig(_cover(report, generated_at))
        for _, title, _, fig in figures:
            fig.suptitle(title, fontsize=11, x=0.02, ha="left")
            pages.savefig(fig)
    return buf.getvalue()


def _cover(report: Report, generated_at: datetime) -> Figure:
    fig = _figure(8.27, 11.69)  # A4
    t = report.totals
    lines = [f"Store {report.store_id}, {report.day.isoformat()} (UTC)", ""]
    if not report.has_data:
        lines.append("No data for this store on this day in the archive.")
    lines += [f"positions {t.positions:,} from {t.shoppers:,} shoppers",
              f"NEARBY rows {t.nearby_rows:,}, {t.near_shoppers:,} shoppers near a promotion",
              f"kiosk interactions {t.kiosk_interactions:,}",
              f"offers {t.offers:,}: delivered {t.delivered:,}, opened {t.opened:,}, "
              f"redeemed {t.redeemed:,}",
              f"redemptions during the day {t.redemptions:,}",
              f"dwell near promoted products {t.dwell_s:,.0f} s", ""]
    for f in report.funnels[:30]:
        lines.append(f"{_short(f.title or f.pid, 40):<40} near {f.near:>5}  offered {f.offered:>5}"
                     f"  delivered {f.delivered:>5}  opened {f.opened:>5}  redeemed {f.redeemed:>5}")
    if len(report.funnels) > 30:
        lines.append(f"... and {len(report.funnels) - 30} more promotions (the HTML lists all)")
    lines += ["", f"dwell gap {report.dwell_gap_s:g} s, basket window {report.basket_window_s:,} s; "
              f"rendered {generated_at.isoformat(timespec='seconds')}"]
    fig.text(0.06, 0.95, "Daily report", fontsize=18, va="top")
    fig.text(0.06, 0.91, "\n".join(lines), fontsize=8, va="top", family="monospace")
    return fig
