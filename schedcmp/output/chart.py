"""Quality against cost charts with Pillow: distance to the reference over seconds or NFE, Pareto front marked.

Scales, ticks, the front's step line and label placement are pure functions; only `quality_chart` draws.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from schedcmp.core.records import Determinism, Results, Status

WIDTH, HEIGHT = 1000, 700
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 110, 40, 70, 80
MARKER_RADIUS = 6
LABEL_GAP = 4  # between a marker's edge and its label
FONT_SIZE = 14
TITLE_FONT_SIZE = 16
LOG_SPAN = 3.0  # values spanning more than this factor get a log axis: linear would crush the cheap end
AXIS_PADDING = 0.06  # share of the span left empty at each end, so no marker sits on the frame
TARGET_TICKS = 6
MIN_TICKS = 3
FRONT_COLOUR = (31, 111, 235)
OTHER_COLOUR = (87, 96, 106)
GRID_COLOUR = (230, 232, 235)
TEXT_COLOUR = (31, 35, 40)

# cost (a field of schedcmp.core.records.Run) -> (file name, x axis title)
CHARTS = {"seconds": ("quality_vs_time.png", "seconds per image"), "nfe": ("quality_vs_nfe.png", "model calls (NFE)")}
Y_TITLE = "distance to reference (latent RMSE, lower is better)"


@dataclass(frozen=True)
class Point:
    """One run on the chart: what it is called, what it cost, how far it landed from the reference."""

    label: str
    cost: float
    distance: float
    on_front: bool


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in pixels (y grows downwards)."""

    left: float
    top: float
    right: float
    bottom: float

    def overlap(self, other: Box) -> float:
        """Area shared with `other`; 0 when they only touch."""
        width = min(self.right, other.right) - max(self.left, other.left)
        height = min(self.bottom, other.bottom) - max(self.top, other.top)
        return max(0.0, width) * max(0.0, height)

    def area(self) -> float:
        return (self.right - self.left) * (self.bottom - self.top)


@dataclass(frozen=True)
class Axis:
    """A value range mapped onto a pixel range, linearly or in log10; `start` is where `low` lands."""

    low: float
    high: float
    log: bool
    start: float
    end: float

    def position(self, value: float) -> float:
        scale = math.log10 if self.log else float
        share = (scale(value) - scale(self.low)) / (scale(self.high) - scale(self.low))
        return self.start + share * (self.end - self.start)


def uses_log_scale(values: list[float], span: float = LOG_SPAN) -> bool:
    """Log when every value is positive and the largest is more than `span` times the smallest."""
    return min(values) > 0 and max(values) > span * min(values)


def axis_range(values: list[float], log: bool, padding: float = AXIS_PADDING) -> tuple[float, float]:
    """The data range widened by `padding` of its span at each end (in log space for a log axis)."""
    low, high = min(values), max(values)
    if log:
        low_exponent, high_exponent = math.log10(low), math.log10(high)
        pad = padding * (high_exponent - low_exponent)
        return 10 ** (low_exponent - pad), 10 ** (high_exponent + pad)
    if low == high:  # a single point, or all alike: centre it in a range of ±50 %
        half = abs(low) / 2 or 1.0
        low, high = low - half, high + half
    pad = padding * (high - low)
    padded_low = low - pad
    if min(values) >= 0:
        padded_low = max(padded_low, 0.0)  # costs and distances are never negative: no ticks below zero
    return padded_low, high + pad


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 × 10^k that is at least `raw`."""
    exponent = math.floor(math.log10(raw))
    for mantissa in (1, 2, 5, 10):
        step = mantissa * 10.0**exponent
        if step >= raw * (1 - 1e-9):
            return clean(step)
    return clean(10.0 ** (exponent + 1))


def clean(value: float) -> float:
    """Drop binary noise from a tick value (0.30000000000000004 -> 0.3)."""
    return float(f"{value:.12g}")


def nice_ticks(low: float, high: float, log: bool) -> list[float]:
    """Tick values inside [low, high] on a 1-2-5 sequence.

    Linear: multiples of the 1-2-5 step nearest to a sixth of the span. Log: powers of ten, or 1-2-5 in
    each decade, or every digit, the coarsest that gives at least MIN_TICKS.
    """
    if not log:
        step = nice_step((high - low) / TARGET_TICKS)
        first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
        return [clean(k * step) for k in range(first, last + 1)]
    ticks: list[float] = []
    for mantissas in LOG_MANTISSAS:
        ticks = log_ticks(low, high, mantissas)
        if len(ticks) >= MIN_TICKS:
            return ticks
    return ticks


LOG_MANTISSAS = ((1,), (1, 2, 5), tuple(range(1, 10)))  # powers of ten, 1-2-5, every digit: coarsest first


def log_ticks(low: float, high: float, mantissas: tuple[int, ...]) -> list[float]:
    """m × 10^k inside [low, high] for each mantissa m."""
    return [
        clean(m * 10.0**exponent)
        for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for m in mantissas
        if low * (1 - 1e-9) <= m * 10.0**exponent <= high * (1 + 1e-9)
    ]


def tick_beyond(value: float, low: float, high: float, log: bool, up: bool) -> float:
    """The tick of the sequence nice_ticks(low, high) uses that is at `value` or just beyond it (above when `up`)."""
    if not log:
        step = nice_step((high - low) / TARGET_TICKS)
        return clean((math.ceil(value / step - 1e-9) if up else math.floor(value / step + 1e-9)) * step)
    mantissas = next((m for m in LOG_MANTISSAS if len(log_ticks(low, high, m)) >= MIN_TICKS), LOG_MANTISSAS[-1])
    exponent = math.floor(math.log10(value))
    candidates = [m * 10.0**e for e in (exponent, exponent + 1) for m in mantissas]
    if up:
        return clean(min(c for c in candidates if c >= value * (1 - 1e-9)))
    return clean(max(c for c in candidates if c <= value * (1 + 1e-9)))


def covering_range(values: list[float], log: bool) -> tuple[float, float]:
    """axis_range, widened where a point would lie past the outermost tick to the tick beyond it: the ticks
    cover every point (NFE 15 with ticks that stopped at 10 read as 10)."""
    low, high = axis_range(values, log)
    smallest, largest = min(values), max(values)
    for _ in range(8):  # a wider range may take a coarser tick sequence; powers of ten end it in a few rounds
        slack = 1e-9 * (high - low)
        ticks = nice_ticks(low, high, log)
        if ticks and ticks[0] <= smallest + slack and ticks[-1] >= largest - slack:
            break
        low = min(low, tick_beyond(smallest, low, high, log, up=False))
        high = max(high, tick_beyond(largest, low, high, log, up=True))
    return low, high


def tick_text(value: float) -> str:
    return f"{value:g}"


def step_line(front: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The staircase through the front's (cost, distance) points: across at each distance, then down."""
    ordered = sorted(front)
    line: list[tuple[float, float]] = []
    for index, (cost, distance) in enumerate(ordered):
        if index:
            line.append((cost, ordered[index - 1][1]))
        line.append((cost, distance))
    return line


def segment_boxes(line: list[tuple[float, float]], half_width: float = 1.5) -> list[Box]:
    """Thin boxes around each segment of a horizontal-and-vertical polyline, for labels to keep off."""
    return [
        Box(min(x0, x1) - half_width, min(y0, y1) - half_width, max(x0, x1) + half_width, max(y0, y1) + half_width)
        for (x0, y0), (x1, y1) in zip(line, line[1:])
    ]


def label_candidates(x: float, y: float, width: float, height: float, radius: float, gap: float) -> list[Box]:
    """Where a label may go around its marker, in order of preference: right, left, above, below, then the four
    corners, then all eight again one label height farther out (a crowded cluster needs room to step aside)."""
    boxes = []
    for reach in (radius + gap, radius + gap + height):
        boxes += [
            Box(x + reach, y - height / 2, x + reach + width, y + height / 2),
            Box(x - reach - width, y - height / 2, x - reach, y + height / 2),
            Box(x - width / 2, y - reach - height, x + width / 2, y - reach),
            Box(x - width / 2, y + reach, x + width / 2, y + reach + height),
            Box(x + reach, y - reach - height, x + reach + width, y - reach),
            Box(x + reach, y + reach, x + reach + width, y + reach + height),
            Box(x - reach - width, y - reach - height, x - reach, y - reach),
            Box(x - reach - width, y + reach, x - reach, y + reach + height),
        ]
    return boxes


def outside(box: Box, bounds: Box) -> float:
    """Area of `box` that lies outside `bounds`."""
    return box.area() - box.overlap(bounds)


def place_labels(
    anchors: list[tuple[float, float]],
    sizes: list[tuple[float, float]],
    bounds: Box,
    radius: float = MARKER_RADIUS,
    gap: float = LABEL_GAP,
    obstacles: tuple[Box, ...] = (),
) -> list[Box]:
    """A box per label, placed greedily in the given order.

    Each label takes the first candidate position that overlaps no label placed so far, no marker, no
    obstacle and nothing outside `bounds`; when every candidate collides it takes the one that collides least.
    """
    fixed = [Box(x - radius, y - radius, x + radius, y + radius) for x, y in anchors] + list(obstacles)
    placed: list[Box] = []
    for (x, y), (width, height) in zip(anchors, sizes):

        def collision(box: Box) -> float:
            # Off the plot a label runs into the axis ticks or off the image: worse than touching a neighbour.
            return sum(box.overlap(other) for other in placed + fixed) + 4 * outside(box, bounds)

        candidates = label_candidates(x, y, width, height, radius, gap)
        placed.append(min(candidates, key=collision))  # min keeps the first of equals: the preferred side
    return placed


def chart_points(results: Results, cost: str) -> list[Point]:
    """The runs a chart can rank: ok, deterministic, with a distance to the first reference and a cost.

    Steps join the label in sweeps."""
    # Distances to different references (other prompts, seeds or guidance) do not share a scale or a front:
    # the chart shows the runs of the first reference.
    references = [reference.id for reference in results.references]
    runs = [
        run
        for run in results.runs
        if (not references or run.reference == references[0])
        and run.status == Status.OK
        and run.determinism == Determinism.DETERMINISTIC
        and run.distance is not None
        and getattr(run, cost) is not None
    ]
    several_steps = len({run.steps for run in runs}) > 1
    points = []
    for run in runs:
        text = run.alias or run.label  # the UI name alone: a crowded chart needs short labels
        if several_steps:
            text += f" · {run.steps}"
        on_front = bool(run.pareto and getattr(run.pareto, cost))
        points.append(Point(text, float(getattr(run, cost)), float(run.distance.latent_rmse), on_front))
    return points


def text_size(draw, text: str, text_font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
    return right - left, bottom - top


def text_middle(draw, text: str, text_font) -> float:
    """How far below the drawing origin the middle of the ink lies (fonts leave room above capitals)."""
    _, top, _, bottom = draw.textbbox((0, 0), text, font=text_font)
    return (top + bottom) / 2


def axis_for(values: list[float], start: float, end: float) -> Axis:
    log = uses_log_scale(values)
    low, high = covering_range(values, log)
    return Axis(low, high, log, start, end)


def quality_chart(points: list[Point], cost: str) -> bytes:
    """PNG bytes: distance against `cost` ("seconds" or "nfe"), front filled and stepped, every point labelled."""
    from PIL import Image, ImageDraw

    from schedcmp.output.render import font

    text_font, title_font = font(FONT_SIZE), font(TITLE_FONT_SIZE)
    chart = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(chart)
    plot = Box(MARGIN_LEFT, MARGIN_TOP, WIDTH - MARGIN_RIGHT, HEIGHT - MARGIN_BOTTOM)
    x_axis = axis_for([p.cost for p in points], plot.left, plot.right)
    y_axis = axis_for([p.distance for p in points], plot.bottom, plot.top)
    draw_grid(draw, plot, x_axis, y_axis, text_font)
    draw_axis_titles(chart, draw, plot, x_axis, y_axis, CHARTS[cost][1], title_font)
    draw_legend(draw, text_font, title_font, cost)
    anchors = [(x_axis.position(p.cost), y_axis.position(p.distance)) for p in points]
    front_line = draw_front(draw, points, anchors, x_axis, y_axis)
    draw_labels(draw, points, anchors, plot, segment_boxes(front_line), text_font)
    output = io.BytesIO()
    chart.save(output, format="PNG")
    return output.getvalue()


def draw_grid(draw, plot: Box, x_axis: Axis, y_axis: Axis, text_font) -> None:
    """The ticks with their grid lines and values on both axes, and the plot's frame."""
    for value in nice_ticks(x_axis.low, x_axis.high, x_axis.log):
        x = x_axis.position(value)
        draw.line([(x, plot.top), (x, plot.bottom)], fill=GRID_COLOUR)
        width, _ = text_size(draw, tick_text(value), text_font)
        draw.text((x - width / 2, plot.bottom + 8), tick_text(value), fill=TEXT_COLOUR, font=text_font)
    for value in nice_ticks(y_axis.low, y_axis.high, y_axis.log):
        y = y_axis.position(value)
        draw.line([(plot.left, y), (plot.right, y)], fill=GRID_COLOUR)
        width, _ = text_size(draw, tick_text(value), text_font)
        draw.text(
            (plot.left - 8 - width, y - text_middle(draw, tick_text(value), text_font)),
            tick_text(value),
            fill=TEXT_COLOUR,
            font=text_font,
        )
    draw.rectangle([plot.left, plot.top, plot.right, plot.bottom], outline=TEXT_COLOUR)


def draw_axis_titles(chart, draw, plot: Box, x_axis: Axis, y_axis: Axis, cost_title: str, title_font) -> None:
    """The cost's title under the plot, the distance's turned up its left side; each says when its axis is log."""
    from PIL import Image, ImageDraw

    x_title = cost_title + (" (log scale)" if x_axis.log else "")
    width, _ = text_size(draw, x_title, title_font)
    draw.text(
        ((plot.left + plot.right - width) / 2, HEIGHT - MARGIN_BOTTOM / 2), x_title, fill=TEXT_COLOUR, font=title_font
    )
    y_title = Y_TITLE + (" (log scale)" if y_axis.log else "")
    width, height = text_size(draw, y_title, title_font)
    turned = Image.new("RGBA", (width + 4, height + 8), (255, 255, 255, 0))
    ImageDraw.Draw(turned).text((2, 0), y_title, fill=TEXT_COLOUR, font=title_font)
    turned = turned.rotate(90, expand=True)
    chart.paste(turned, (16, round((plot.top + plot.bottom - turned.height) / 2)), turned)


def draw_front(
    draw, points: list[Point], anchors: list[tuple[float, float]], x_axis: Axis, y_axis: Axis
) -> list[tuple[float, float]]:
    """The front's staircase, then every point's marker (filled on the front); -> the staircase in pixels."""
    front = step_line([(p.cost, p.distance) for p in points if p.on_front])
    front_line = [(x_axis.position(cost), y_axis.position(distance)) for cost, distance in front]
    if len(front_line) > 1:
        draw.line(front_line, fill=FRONT_COLOUR, width=2)
    for (x, y), point in zip(anchors, points):
        marker = [x - MARKER_RADIUS, y - MARKER_RADIUS, x + MARKER_RADIUS, y + MARKER_RADIUS]
        if point.on_front:
            draw.ellipse(marker, fill=FRONT_COLOUR, outline=FRONT_COLOUR)
        else:
            draw.ellipse(marker, fill="white", outline=OTHER_COLOUR, width=2)
    return front_line


def draw_labels(
    draw, points: list[Point], anchors: list[tuple[float, float]], plot: Box, obstacles: list[Box], text_font
) -> None:
    """Every point's label beside its marker, off the other labels, markers and `obstacles` (the front's line)."""
    # The front's labels are placed first: they are the ones a reader looks for.
    order = sorted(range(len(points)), key=lambda i: not points[i].on_front)
    sizes = [(width + 2, height + 4) for width, height in (text_size(draw, points[i].label, text_font) for i in order)]
    boxes = place_labels([anchors[i] for i in order], sizes, plot, obstacles=tuple(obstacles))
    for index, box in zip(order, boxes):
        colour = FRONT_COLOUR if points[index].on_front else TEXT_COLOUR
        middle = (box.top + box.bottom) / 2 - text_middle(draw, points[index].label, text_font)
        draw.text((box.left + 1, middle), points[index].label, fill=colour, font=text_font)


def draw_legend(draw, text_font, title_font, cost: str) -> None:
    """The title at the top left, and what filled and hollow markers mean at the top right."""
    title = f"Distance to the reference against {CHARTS[cost][1]}"
    draw.text((MARGIN_LEFT, 20), title, fill=TEXT_COLOUR, font=title_font)
    entries = [("Pareto front: nothing is both cheaper and closer", True), ("other runs", False)]
    x = WIDTH - MARGIN_RIGHT
    for text, filled in reversed(entries):
        width, _ = text_size(draw, text, text_font)
        x -= width
        draw.text((x, 44), text, fill=TEXT_COLOUR, font=text_font)
        x -= 2 * MARKER_RADIUS + 6
        marker = [x, 44 + 2, x + 2 * MARKER_RADIUS, 44 + 2 + 2 * MARKER_RADIUS]
        draw.ellipse(
            marker, fill=FRONT_COLOUR if filled else "white", outline=FRONT_COLOUR if filled else OTHER_COLOUR, width=2
        )
        x -= 24


def write_charts(out_dir: Path, results: Results) -> list[str]:
    """quality_vs_time.png and quality_vs_nfe.png in `out_dir`; their names, or [] when no run has a distance."""
    from schedcmp.output.report import write_atomic

    names = []
    for cost, (name, _) in CHARTS.items():
        points = chart_points(results, cost)
        if points:
            write_atomic(Path(out_dir) / name, quality_chart(points, cost))
            names.append(name)
    return names
