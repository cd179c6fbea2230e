"""The mood curve as a picture: an SVG line chart of the customer's anger per turn."""

from __future__ import annotations

from pathlib import Path

from bot.rendering import html_environment

TEMPLATES = Path(__file__).parent / "templates"
_env = html_environment(TEMPLATES, keep_trailing_newline=True)


def _colour(anger: int) -> str:
    if anger >= 7:
        return "#c62828"
    if anger >= 4:
        return "#ef6c00"
    return "#2e7d32"


def mood_curve_svg(anger: list[int], title: str = "Customer's anger, turn by turn") -> str:
    """An SVG chart of ``anger`` (0-10): the start, then the value after each turn."""
    if not anger:
        raise ValueError("no mood values to draw")
    width, height = 480, 220
    left, right, top, bottom = 44, 16, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom

    def y_of(value: float) -> float:
        return round(top + plot_h * (1 - max(0, min(10, value)) / 10), 1)

    step = plot_w / max(1, len(anger) - 1)
    points = [
        {
            "x": round(left + (i * step if len(anger) > 1 else plot_w / 2), 1),
            "y": y_of(value),
            "value": value,
            "colour": _colour(value),
            "label": "start" if i == 0 else f"after turn {i}",
            "tick": "start" if i == 0 else str(i),
        }
        for i, value in enumerate(anger)
    ]
    return _env.get_template("mood_curve.svg.j2").render(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        title=title,
        gridlines=[{"pos": y_of(v), "label": v} for v in (0, 5, 10)],
        calm_top=y_of(3),
        calm_height=round(y_of(0) - y_of(3), 1),
        polyline=" ".join(f"{p['x']},{p['y']}" for p in points),
        points=points,
    )


def mood_badge(anger: int, trust: int, feels_heard: bool) -> str:
    """A one-line mood indicator for the chat: a word, a bar and the numbers (font-safe)."""
    word = (
        "furious" if anger >= 8 else "angry" if anger >= 6 else "annoyed" if anger >= 4 else "calm"
    )
    bar = "■" * anger + "□" * (10 - anger)
    heard = " · feels heard" if feels_heard else ""
    return f"Mood: {word} · anger {anger}/10 {bar} · trust {trust}/10{heard}"
