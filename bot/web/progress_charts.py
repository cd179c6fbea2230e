"""Pictures for the trainer's dashboard: score trends and the missed-check heatmap (SVG, drawn
here: no chart library, no CDN, works offline)."""

from __future__ import annotations

from typing import Any

from bot.rendering import html_environment
from bot.roleplay.progress import ProgressReport
from bot.web.mood_chart import TEMPLATES

_env = html_environment(TEMPLATES, keep_trailing_newline=True)
PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457")


def score_trend_svg(report: ProgressReport, max_trainees: int = 8) -> str:
    """Each trainee's scores (0-100), session by session, one coloured line each."""
    trainees = report.trainees[:max_trainees]
    if not trainees:
        raise ValueError("no trainees to draw")
    width, height, left, right, top, bottom = 560, 260, 44, 140, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max(t.attempts for t in trainees)
    step = plot_w / max(1, most - 1)

    def y_of(score: float) -> float:
        return round(top + plot_h * (1 - max(0, min(100, score)) / 100), 1)

    series = []
    for i, t in enumerate(trainees):
        points = [
            {"x": round(left + (n * step if most > 1 else plot_w / 2), 1), "y": y_of(s), "score": s}
            for n, (_, s) in enumerate(t.trend)
        ]
        series.append({"user": t.user, "colour": PALETTE[i % len(PALETTE)], "points": points,
                       "polyline": " ".join(f"{p['x']},{p['y']}" for p in points)})  # fmt: skip
    return _env.get_template("score_trend.svg.j2").render(
        width=width, height=height, left=left, right=right, top=top, bottom=bottom,
        gridlines=[{"pos": y_of(v), "label": v} for v in (0, 50, 100)],
        ticks=[{"x": round(left + n * step, 1), "label": n + 1} for n in range(most)],
        series=series,
    )  # fmt: skip


def _cell_colour(rate: float) -> str:
    """White (never missed) to deep red (missed every session)."""
    shade = round(255 - 200 * rate)
    return f"rgb(255,{shade},{shade})"


def heatmap_svg(report: ProgressReport, max_checks: int = 10, max_trainees: int = 12) -> str:
    """Checks (rows, most often missed first) by trainees (columns): how often each was missed."""
    checks = report.checks[:max_checks]
    users = [t.user for t in report.trainees[:max_trainees]]
    if not checks or not users:
        raise ValueError("nothing to draw")
    cell_w, cell_h, left, top = 64, 24, 300, 60
    cells: list[dict[str, Any]] = []
    by_key = {(c.check, c.user): c for c in report.heatmap}
    for row, check in enumerate(checks):
        for col, user in enumerate(users):
            cell = by_key.get((check, user))
            if cell is None:
                continue
            cells.append({
                "x": left + col * cell_w, "y": top + row * cell_h, "fill": _cell_colour(cell.rate),
                "text": f"{cell.missed}/{cell.attempts}", "check": check, "user": user,
            })  # fmt: skip
    return _env.get_template("heatmap.svg.j2").render(
        width=max(left + cell_w * len(users) + 16, 480), height=top + cell_h * len(checks) + 16,
        left=left, top=top, cell_w=cell_w, cell_h=cell_h, cells=cells,
        rows=[{"y": top + i * cell_h, "label": c} for i, c in enumerate(checks)],
        cols=[{"x": left + i * cell_w, "label": u} for i, u in enumerate(users)],
    )  # fmt: skip
