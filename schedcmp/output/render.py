"""Contact sheets with Pillow. The layout maths are pure functions; only `draw_contact_sheet` touches pixels."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from schedcmp.core.plan import slug
from schedcmp.core.records import STOCHASTIC_NOT_RANKED, Determinism, Results, Run, Status, status_rgb
from schedcmp.output.report import write_atomic

TILE_MIN = 192  # tiny models make 64 px images: scale them up so a label fits under each
TILE_MAX = 384  # and big ones down, so a sheet of 15 stays a sane size
MAX_COLUMNS = 6
PADDING = 12
FONT_SIZE = 14
LINE_HEIGHT = 18
LABEL_LINES = 4  # a tile's label lines, at least: every tile of a sheet gets as many as its longest label needs,
MAX_LABEL_LINES = 9  # up to this many; then a long name or reason is cut, its whole text in results.json
TEXT_COLOUR = (40, 40, 40)


def label_colour(status: str) -> tuple[int, int, int]:
    """Label lines of a run that went wrong take its status colour (schedcmp.core.records, shared with the reports)."""
    return TEXT_COLOUR if status == Status.OK else status_rgb(status)


@dataclass(frozen=True)
class Tile:
    """One run on the sheet: its image (PNG bytes or None when there is none), label lines and status."""

    image_png: bytes | None
    lines: list[str]
    status: str
    reason: str | None = None  # written inside the empty box of a run without an image


@dataclass(frozen=True)
class Layout:
    columns: int
    rows: int
    tile_width: int
    tile_height: int
    header_height: int
    label_height: int
    width: int
    height: int

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left corner of tile `index` (row-major)."""
        row, column = divmod(index, self.columns)
        x = PADDING + column * (self.tile_width + PADDING)
        y = self.header_height + PADDING + row * (self.tile_height + self.label_height + PADDING)
        return x, y


def grid_shape(count: int, max_columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """(columns, rows) closest to square, at most `max_columns` wide."""
    if count <= 0:
        return 1, 1
    columns = min(max_columns, math.ceil(math.sqrt(count)))
    return columns, math.ceil(count / columns)


def tile_size(width: int, height: int, smallest: int = TILE_MIN, largest: int = TILE_MAX) -> tuple[int, int]:
    """Display size of an image: whole-number upscaling for small images (crisp), downscaling for big ones."""
    longest = max(width, height)
    if longest < smallest:
        factor = math.ceil(smallest / longest)
        return width * factor, height * factor
    if longest > largest:
        return round(width * largest / longest), round(height * largest / longest)
    return width, height


# Where a word too long for a line may break, tried in turn: after a comma or an opening bracket, after `=`,
# after `_`; only a piece that still does not fit is cut between letters.
SOFT_BREAKS = (",(", "=", "_")


def pieces(word: str, fits: Callable[[str], bool], levels: tuple[str, ...] = SOFT_BREAKS) -> list[str]:
    """A word too long for a line, cut after its soft breaks (the first level that gives pieces that fit)."""
    if fits(word) or not levels:
        return [word]
    parts = [part for part in re.split(f"(?<=[{re.escape(levels[0])}])", word) if part]
    return [piece for part in parts for piece in pieces(part, fits, levels[1:])]


def wrap(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Greedy word wrap; `fits(line)` says whether a line fits. A word too long alone breaks at a comma, bracket,
    `=` or `_` (SOFT_BREAKS), and is cut between letters only where none of those gives a piece that fits."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        for number, piece in enumerate(pieces(word, fits)):
            joined = current + ("" if number else " ") + piece if current else piece
            if fits(joined):
                current = joined
                continue
            if current:
                lines.append(current)
            while not fits(piece) and len(piece) > 1:
                end = len(piece) - 1
                while end > 1 and not fits(piece[:end]):
                    end -= 1
                lines.append(piece[:end])
                piece = piece[end:]
            current = piece
    if current:
        lines.append(current)
    return lines


CUT_MARK = "… (in results.json)"  # ends a label cut short: results.json, and the table, hold the whole text


def cut(lines: list[str], keep: int, fits: Callable[[str], bool]) -> list[str]:
    """The first `keep` wrapped lines; where some are left out, the last one says so: it ends at a word with
    CUT_MARK (the mark alone where no word fits beside it), or, on a one-line cut or a tile too narrow for the
    mark, in "…"."""
    if len(lines) <= keep:
        return lines
    if keep <= 0:
        return []
    words = lines[keep - 1].split(" ")
    while words and not fits(" ".join(words + [CUT_MARK])):
        words.pop()
    if fits(CUT_MARK) and (words or keep > 1):
        return lines[: keep - 1] + [" ".join(words + [CUT_MARK])]
    last = lines[keep - 1]
    while len(last) > 1 and not fits(last + "…"):
        last = last[:-1]
    return lines[: keep - 1] + [last + "…"]


def fit_label(
    name: str | None, figures: list[str], notes: list[str], fits: Callable[[str], bool], most: int
) -> list[tuple[str, bool]]:
    """A label in at most `most` lines, each with whether it is a note (drawn in the status colour): the name,
    the figures (steps · NFE · seconds, never dropped), the notes. Where the name and the notes need more lines
    than are left, the notes keep two, the name the rest, and each says where it was cut (CUT_MARK)."""
    figure_lines = [w for line in figures for w in wrap(line, fits)]
    name_lines = wrap(name, fits) if name else []
    note_lines = [w for line in notes for w in wrap(line, fits)]
    room = max(0, most - len(figure_lines))
    for_name = max(min(len(name_lines), room - min(len(note_lines), 2)), min(len(name_lines), 1))
    name_lines = cut(name_lines, for_name, fits)
    note_lines = cut(note_lines, room - len(name_lines), fits)
    return [(line, False) for line in name_lines + figure_lines] + [(line, True) for line in note_lines]


def layout(
    count: int, image_width: int, image_height: int, header_lines: int, label_lines: int = LABEL_LINES
) -> Layout:
    columns, rows = grid_shape(count)
    tile_width, tile_height = tile_size(image_width, image_height)
    header_height = PADDING + header_lines * LINE_HEIGHT
    label_height = label_lines * LINE_HEIGHT + 4
    width = PADDING + columns * (tile_width + PADDING)
    height = header_height + PADDING + rows * (tile_height + label_height + PADDING)
    return Layout(columns, rows, tile_width, tile_height, header_height, label_height, width, height)


def font(size: int = FONT_SIZE):
    """Pillow's own font: Latin only, but always there (the last resort of Lettering)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


# Fonts asked of fontconfig, in order: DejaVu Sans (Latin, Cyrillic, Greek, Arabic, Hebrew and many symbols),
# then one installed font for each script it lacks (Noto CJK where installed: `apt-get install fonts-noto-cjk`),
# then one with the emoji DejaVu lacks (an outline font such as Symbola, else Noto Color Emoji, drawn in colour:
# `apt-get install fonts-noto-color-emoji`). A character no font has is drawn as an empty box.
FONT_FAMILIES = ("DejaVu Sans",)
FONT_LANGUAGES = ("zh-cn", "ja", "ko", "hi", "th")
EMOJI = "1f680"  # 🚀: an emoji DejaVu Sans lacks, as it lacks most
HEADER_LINES_PER_ITEM = 3  # a 10,000-character prompt gets three lines of the header, not the whole sheet


def fontconfig(*command: str) -> str:
    """What a fontconfig tool prints; nothing where fontconfig is not installed."""
    import subprocess

    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def charset_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """fontconfig's charset (`20-7e a0-2e9 2ec ...`, hexadecimal) as sorted (first, last) code point ranges."""
    ranges = []
    for item in text.split():
        first, _, last = item.partition("-")
        ranges.append((int(first, 16), int(last or first, 16)))
    return tuple(sorted(ranges))


def covers(ranges: tuple[tuple[int, int], ...], code_point: int) -> bool:
    import bisect

    index = bisect.bisect_right(ranges, (code_point, float("inf"))) - 1
    return index >= 0 and ranges[index][0] <= code_point <= ranges[index][1]


@functools.cache
def font_chain() -> tuple[tuple[str, tuple[tuple[int, int], ...]], ...]:
    """(font file, the code points it has) for each font of the fallback chain that fontconfig finds."""
    files = [fontconfig("fc-match", "-f", "%{file}", family).strip() for family in FONT_FAMILIES]
    for language in FONT_LANGUAGES:
        found = sorted(fontconfig("fc-list", f":lang={language}", "-f", "%{file}\n").split())
        files += found[:1]
    for outline in (":outline=True", ""):  # an outline font draws at any size; a colour bitmap one is scaled
        files += sorted(fontconfig("fc-list", f":charset={EMOJI}{outline}", "-f", "%{file}\n").split())[:1]
    chain = []
    for path in dict.fromkeys(file for file in files if file):
        charset = fontconfig("fc-query", "-i", "0", "--format", "%{charset}", path)
        if charset.strip():
            chain.append((path, charset_ranges(charset)))
    return tuple(chain)


class Lettering:
    """Text in the first font of the chain that has each character, Pillow's own font last. Labels and headers
    are drawn and measured through it."""

    def __init__(self, size: int = FONT_SIZE):
        from PIL import ImageFont

        self.fonts = []
        for path, ranges in font_chain():
            try:
                self.fonts.append((ImageFont.truetype(path, size), ranges))
            except OSError:  # a bitmap font (Noto Color Emoji) has one size: drawn at it and scaled
                with contextlib.suppress(OSError):  # a font FreeType cannot read at all is left out
                    self.fonts.append((ScaledBitmapFont(path, size), ranges))
        self.last_resort = font(size)

    def font_for(self, character: str):
        for candidate, ranges in self.fonts:
            if covers(ranges, ord(character)):
                return candidate
        return self.last_resort

    def runs(self, text: str) -> list[tuple[object, str]]:
        """The text cut where the font changes; spaces stay with the run they are in (but for an emoji font's,
        wider than a letter's)."""
        runs: list[tuple[object, str]] = []
        for character in text:
            keep = runs and character.isspace() and not isinstance(runs[-1][0], ScaledBitmapFont)
            chosen = runs[-1][0] if keep else self.font_for(character)
            if runs and runs[-1][0] is chosen:
                runs[-1] = (chosen, runs[-1][1] + character)
            else:
                runs.append((chosen, character))
        return runs

    def length(self, text: str) -> float:
        return sum(chosen.getlength(run) for chosen, run in self.runs(text))

    def draw(self, draw, xy: tuple[float, float], text: str, fill) -> None:
        # With raqm (Pillow's default layout engine where it is installed) each run gets the Unicode
        # bidirectional algorithm and shaping: Arabic joins and reads right to left inside a Latin line.
        x, y = xy
        for chosen, run in self.runs(text):
            if isinstance(chosen, ScaledBitmapFont):
                chosen.draw(draw, (x, y), run)
            else:
                draw.text((x, y), run, fill=fill, font=chosen)
            x += chosen.getlength(run)


class ScaledBitmapFont:
    """A colour bitmap font (Noto Color Emoji has its glyphs at 109 px only): measured and drawn at that size,
    then scaled to the line's."""

    STRIKE = 109

    def __init__(self, path: str, size: int):
        from PIL import ImageFont

        self.path = path
        self.font = ImageFont.truetype(path, self.STRIKE)
        self.scale = size / self.STRIKE

    def getlength(self, text: str) -> float:
        return self.font.getlength(text) * self.scale

    def draw(self, draw, xy: tuple[float, float], text: str) -> None:
        """The run in its own colours onto the image `draw` draws on."""
        from PIL import Image, ImageDraw

        ascent, descent = self.font.getmetrics()
        big = Image.new("RGBA", (max(1, math.ceil(self.font.getlength(text))), ascent + descent), (0, 0, 0, 0))
        ImageDraw.Draw(big).text((0, 0), text, font=self.font, embedded_color=True)
        size = (max(1, round(big.width * self.scale)), max(1, round(big.height * self.scale)))
        small = big.resize(size, Image.LANCZOS)
        draw._image.paste(small, (round(xy[0]), round(xy[1])), small)  # Pillow's Draw keeps its image there


def header_lines(header: list[str], fits: Callable[[str], bool]) -> list[str]:
    """The header wrapped, each item to at most HEADER_LINES_PER_ITEM lines (the last one ending in …)."""
    lines = []
    for text in header:
        wrapped = wrap(text, fits)
        if len(wrapped) > HEADER_LINES_PER_ITEM:
            wrapped = wrapped[: HEADER_LINES_PER_ITEM - 1] + [wrapped[HEADER_LINES_PER_ITEM - 1].rstrip() + " …"]
        lines += wrapped
    return lines


def paste_picture(
    sheet, draw, png: bytes | None, status: str, reason: str | None, x: int, y: int, width: int, height: int, text_font
) -> None:
    """A run's image scaled into its box (crisp when enlarged), or a grey box saying why there is none."""
    from PIL import Image

    if png is not None:
        picture = Image.open(io.BytesIO(png)).convert("RGB")
        resample = Image.NEAREST if picture.width < width else Image.LANCZOS
        sheet.paste(picture.resize((width, height), resample), (x, y))
    else:
        draw.rectangle([x, y, x + width - 1, y + height - 1], fill=(235, 235, 235))
        fits = lambda line: text_font.length(line) <= width - 16  # noqa: E731
        room = max(1, (height - 16) // LINE_HEIGHT)
        message = [status.upper()] + cut(wrap(reason or "", fits), room - 1, fits)
        for number, line in enumerate(message):
            text_font.draw(draw, (x + 8, y + 8 + number * LINE_HEIGHT), line, status_rgb(Status.FAILED))
    if status != Status.OK:
        draw.rectangle([x, y, x + width - 1, y + height - 1], outline=status_rgb(status), width=3)


def render_contact_sheet(header: list[str], tiles: list[Tile], image_width: int, image_height: int) -> bytes:
    """The whole sheet as PNG bytes: a header, then one labelled tile per run."""
    from PIL import Image, ImageDraw

    text_font = Lettering()

    def fits(width: int) -> Callable[[str], bool]:
        return lambda line: text_font.length(line) <= width

    probe = layout(len(tiles), image_width, image_height, 0)
    header_wrapped = header_lines(header, fits(probe.width - 2 * PADDING))
    labels = [tile_label(tile.lines, fits(probe.tile_width), MAX_LABEL_LINES) for tile in tiles]
    most = max([LABEL_LINES] + [len(label) for label in labels])
    shape = layout(len(tiles), image_width, image_height, len(header_wrapped), most)
    sheet = Image.new("RGB", (shape.width, shape.height), "white")
    draw = ImageDraw.Draw(sheet)
    for number, line in enumerate(header_wrapped):
        text_font.draw(draw, (PADDING, PADDING // 2 + number * LINE_HEIGHT), line, (0, 0, 0))
    for index, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = shape.origin(index)
        paste_picture(
            sheet, draw, tile.image_png, tile.status, tile.reason, x, y, shape.tile_width, shape.tile_height, text_font
        )
        for number, (line, note) in enumerate(label):
            colour = label_colour(tile.status) if note else TEXT_COLOUR
            text_font.draw(draw, (x, y + shape.tile_height + 2 + number * LINE_HEIGHT), line, colour)
    output = io.BytesIO()
    sheet.save(output, format="PNG")
    return output.getvalue()


def tile_label(lines: list[str], fits: Callable[[str], bool], most: int) -> list[tuple[str, bool]]:
    """A tile's label lines (tile_lines: the name, the figures, then the notes) fitted into `most` lines."""
    return fit_label(lines[0] if lines else None, lines[1:2], lines[2:], fits, most)


def tile_lines(run: Run) -> list[str]:
    """A run's label on the contact sheet: name (and UI alias), its steps and cost, and why it is not ok."""
    cost, *status = cell_lines(run)
    lines = [run.label, f"{run.steps} steps · {cost}", *status]
    if not run.compatible:
        lines.append("not in compatibles (--allow-incompatible)")
    return lines


def png_bytes(rgb) -> bytes:
    """PNG bytes of an H×W×3 uint8 array."""
    from PIL import Image

    output = io.BytesIO()
    Image.fromarray(rgb).save(output, format="PNG")
    return output.getvalue()


def read_png(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


# -- grids: schedulers as rows, one axis as columns, one sheet per value of the others ------------------

GRID_LABEL_WIDTH = 200  # the row-label column
GRID_HEADER_LINES = 3
GRID_CELL_LINES = 2  # a grid cell's label lines, at least: every cell of a grid gets as many as its longest needs,
GRID_MAX_CELL_LINES = 4  # up to this many (a torch,flax cell: the figures, its distance to PyTorch, its compile time)
MAX_SHEET_SIDE = 8000  # a sheet bigger than this is split into pages (well under Pillow's bomb limit)


@dataclass(frozen=True)
class GridCell:
    row: int
    column: int
    image_png: bytes | None
    lines: list[str]
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class GridShape:
    rows: int
    columns: int
    cell_width: int
    cell_height: int  # image plus its label lines
    image_height: int
    header_height: int
    column_label_height: int

    @property
    def width(self) -> int:
        return PADDING + GRID_LABEL_WIDTH + self.columns * (self.cell_width + PADDING)

    @property
    def height(self) -> int:
        return self.header_height + self.column_label_height + self.rows * (self.cell_height + PADDING) + PADDING

    def cell_origin(self, row: int, column: int) -> tuple[int, int]:
        x = PADDING + GRID_LABEL_WIDTH + column * (self.cell_width + PADDING)
        y = self.header_height + self.column_label_height + row * (self.cell_height + PADDING)
        return x, y


def grid_shape_for(
    rows: int, columns: int, image_width: int, image_height: int, header_lines: int, label_lines: int = GRID_CELL_LINES
) -> GridShape:
    cell_width, scaled_height = tile_size(image_width, image_height)
    return GridShape(
        rows=rows,
        columns=columns,
        cell_width=cell_width,
        cell_height=scaled_height + label_lines * LINE_HEIGHT + 4,
        image_height=scaled_height,
        header_height=PADDING + header_lines * LINE_HEIGHT,
        column_label_height=2 * LINE_HEIGHT,
    )


def pages(
    rows: int,
    columns: int,
    image_width: int,
    image_height: int,
    header_lines: int,
    limit: int = MAX_SHEET_SIDE,
    label_lines: int = GRID_CELL_LINES,
) -> list[tuple[range, range]]:
    """Split a grid into pages no wider or taller than `limit` pixels: [(rows, columns), ...], row-major."""
    probe = grid_shape_for(1, 1, image_width, image_height, header_lines, label_lines)
    fixed_width = PADDING + GRID_LABEL_WIDTH
    fixed_height = probe.header_height + probe.column_label_height + PADDING
    columns_per_page = max(1, (limit - fixed_width) // (probe.cell_width + PADDING))
    rows_per_page = max(1, (limit - fixed_height) // (probe.cell_height + PADDING))
    return [
        (range(r, min(r + rows_per_page, rows)), range(c, min(c + columns_per_page, columns)))
        for r in range(0, rows, rows_per_page)
        for c in range(0, columns, columns_per_page)
    ]


def render_grid(
    header: list[str],
    row_labels: list[str],
    column_labels: list[str],
    cells: list[GridCell],
    image_width: int,
    image_height: int,
    label_lines: int,
) -> bytes:
    """One grid sheet as PNG bytes: legend header, column labels on top, row labels at the left; each cell's label
    gets `label_lines` lines (grid_label_lines of the whole grid, so that its pages match)."""
    from PIL import Image, ImageDraw

    text_font = Lettering()

    def fits(width: int) -> Callable[[str], bool]:
        return lambda line: text_font.length(line) <= width

    width_guess = grid_shape_for(len(row_labels), len(column_labels), image_width, image_height, 0).width
    header_wrapped = header_lines(header, fits(max(width_guess, 600) - 2 * PADDING))
    shape = grid_shape_for(
        len(row_labels), len(column_labels), image_width, image_height, len(header_wrapped), label_lines
    )
    sheet = Image.new("RGB", (max(shape.width, 600), shape.height), "white")
    draw = ImageDraw.Draw(sheet)
    for number, line in enumerate(header_wrapped):
        text_font.draw(draw, (PADDING, PADDING // 2 + number * LINE_HEIGHT), line, (0, 0, 0))
    for column, label in enumerate(column_labels):
        x, y = shape.cell_origin(0, column)
        for number, line in enumerate(wrap(label, fits(shape.cell_width))[:2]):
            text_font.draw(draw, (x, y - shape.column_label_height + number * LINE_HEIGHT), line, (0, 0, 0))
    for row, label in enumerate(row_labels):
        _, y = shape.cell_origin(row, 0)
        lines = wrap(label, fits(GRID_LABEL_WIDTH - PADDING))
        for number, line in enumerate(lines[: max(1, shape.cell_height // LINE_HEIGHT)]):
            text_font.draw(draw, (PADDING, y + number * LINE_HEIGHT), line, (0, 0, 0))
    for cell in cells:
        x, y = shape.cell_origin(cell.row, cell.column)
        paste_picture(
            sheet, draw, cell.image_png, cell.status, cell.reason, x, y, shape.cell_width, shape.image_height, text_font
        )
        label = fit_label(None, cell.lines[:1], cell.lines[1:], fits(shape.cell_width), label_lines)
        for number, (line, note) in enumerate(label):
            colour = label_colour(cell.status) if note else TEXT_COLOUR
            text_font.draw(draw, (x, y + shape.image_height + 2 + number * LINE_HEIGHT), line, colour)
    output = io.BytesIO()
    sheet.save(output, format="PNG")
    return output.getvalue()


def grid_label_lines(labels: list[list[str]], image_width: int, image_height: int) -> int:
    """The label lines every cell of a grid gets: as many as its longest label needs, GRID_CELL_LINES to
    GRID_MAX_CELL_LINES (each label: its figures line, then its notes)."""
    text_font = Lettering()
    cell_width, _ = tile_size(image_width, image_height)
    fits = lambda line: text_font.length(line) <= cell_width  # noqa: E731
    needed = [len(fit_label(None, lines[:1], lines[1:], fits, GRID_MAX_CELL_LINES)) for lines in labels]
    return max([GRID_CELL_LINES, *needed])


def cell_lines(run: Run) -> list[str]:
    """A grid cell's label: its cost, and its status when not ok."""
    cost = "not run" if run.status == Status.UNSUPPORTED else f"{run.nfe or 0} NFE"
    if run.seconds is not None:
        cost += f" · {run.seconds:.2f} s"
    lines = [cost]
    closeness = distance_line(run)
    if closeness:
        lines.append(closeness)
    if run.compile_seconds is not None:  # a Flax group's first call: tracing and XLA compilation
        lines.append(f"first call (compile) {run.compile_seconds:.2f} s")
    if run.status != Status.OK:
        lines.append(f"{run.status.upper()}: {run.reason or ''}".strip())
    return lines


def distance_line(run: Run) -> str | None:
    """How close the run came to its reference (--reference), or why it is not compared; a Flax run's distance to
    PyTorch's (--backend torch,flax); None without either."""
    if run.cross is not None:
        cross = run.cross
        psnr = "identical" if cross.psnr is None else f"{cross.psnr:.1f} dB"
        verdict = "" if cross.agrees else ("; aligned: within" if cross.within else "; BEYOND tolerance")
        return f"vs torch {cross.max_abs * 255:.2f} lv · {psnr}{verdict}"
    if run.distance is not None:
        return f"RMSE {run.distance.latent_rmse:.3g} · {run.distance.psnr:.1f} dB"
    if run.reference and run.determinism == Determinism.STOCHASTIC:
        return STOCHASTIC_NOT_RANKED
    return None


AXIS_NAMES = {
    "steps": "steps",
    "seed": "seed",
    "guidance_scale": "guidance",
    "prompt": "prompt",
    "schedule": "schedule",
}


@dataclass(frozen=True)
class SheetPlan:
    """One grid sheet: its title (the values of the axes that are neither rows nor columns) and its cells."""

    title: str
    rows: list[str]
    columns: list[str]
    cells: list[tuple[int, int, Run]]


def steps_per_entry(runs: list[Run]) -> bool:
    """Every scheduler entry at a step count of its own, not all the same: NAME:STEPS pins (the guide's
    PNDM:50, Euler:30, DPM++ 2M:20). The steps then belong to the rows, not to an axis of the sheet."""
    steps: dict[str, set[int]] = {}
    for run in runs:
        steps.setdefault(run.label, set()).add(run.steps)
    return all(len(found) == 1 for found in steps.values()) and len(set().union(*steps.values())) > 1


def multi_valued_axes(runs: list[Run], steps_per_row: bool = False) -> list[str]:
    """The axes whose values differ between runs; `steps_per_row`: the steps are each row's own, not an axis."""
    return [
        axis
        for axis in AXIS_NAMES
        if len({repr(getattr(run, axis)) for run in runs}) > 1 and not (steps_per_row and axis == "steps")
    ]


def axis_text(axis: str, value) -> str:
    if axis == "schedule" and value is None:
        value = "default"  # the scheduler's own
    return f"{AXIS_NAMES[axis]} {value}" if axis != "prompt" else f"“{value}”"


def column_axis(varying: list[str], x: str | None, z: str | None) -> str | None:
    """The grid's columns: `x` where it varies, else the first varying axis that is not `z` (which stacks)."""
    if x in varying:
        return x
    candidates = [axis for axis in varying if axis != z] or varying
    return candidates[0] if candidates else None


def plan_sheets(runs: list[Run], x: str | None, z: str | None, steps_per_row: bool = False) -> list[SheetPlan] | None:
    """Schedulers as rows, axis `x` as columns, one sheet per combination of the other varying axes.

    `x` defaults to the first varying axis (steps, seed, guidance_scale, prompt); None when nothing varies,
    which means the plain contact sheet. `z` puts its axis first among the sheets' keys. `steps_per_row`: each
    scheduler has its own step count (an equal-quality search's answers), named in its row label.
    """

    def label(run: Run) -> str:
        return run.label + (f" · {run.steps} steps" if steps_per_row else "")

    varying = multi_valued_axes(runs, steps_per_row)
    x = column_axis(varying, x, z)
    if x is None:
        return None
    others = [axis for axis in varying if axis != x]
    if z in others:
        others.remove(z)
        others.insert(0, z)
    row_keys = list(dict.fromkeys(label(run) for run in runs))
    sheets: dict[tuple, list[Run]] = {}
    for run in runs:
        sheets.setdefault(tuple(repr(getattr(run, a)) for a in others), []).append(run)
    plans = []
    for group in sheets.values():
        columns = list(dict.fromkeys(repr(getattr(run, x)) for run in group))
        title = " · ".join(axis_text(a, getattr(group[0], a)) for a in others)
        cells = [(row_keys.index(label(run)), columns.index(repr(getattr(run, x))), run) for run in group]
        plans.append(SheetPlan(title, row_keys, [axis_text(x, eval_repr(c)) for c in columns], cells))
    return plans


def eval_repr(text: str):
    """Undo repr() of a str, int or float axis value, for labels."""
    import ast

    return ast.literal_eval(text)


def stack_vertically(pngs: list[bytes], limit: int = MAX_SHEET_SIDE) -> bytes | None:
    """PNG sheets one under the other, left-aligned on white; None when the result would pass `limit` pixels."""
    from PIL import Image

    pictures = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    width = max(p.width for p in pictures)
    height = sum(p.height for p in pictures) + PADDING * (len(pictures) - 1)
    if width > limit or height > limit:
        return None
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for picture in pictures:
        sheet.paste(picture, (0, y))
        y += picture.height + PADDING
    output = io.BytesIO()
    sheet.save(output, format="PNG")
    return output.getvalue()


# -- the sheets of a results folder, drawn from its saved images -----------------------------------------


def sheet_header(results: Results, runs: list[Run], steps_per_row: bool = False) -> list[str]:
    """The legend: what every tile shares (and, for a sweep, the values that vary)."""
    first = runs[0]
    varying = set(multi_valued_axes(runs))
    model = f"model: {results.model} ({results.pipeline})"
    prompts = list(dict.fromkeys(run.prompt for run in runs))
    prompt_line = f"prompt: {prompts[0]}" if len(prompts) == 1 else f"prompts: {' | '.join(prompts)}"
    if first.negative_prompt:
        prompt_line += f"   negative: {first.negative_prompt}"
    details = []
    if "seed" not in varying:
        details.append(f"seed {first.seed}")
    details.append(f"{first.width}x{first.height}")
    if "guidance_scale" not in varying and first.guidance_scale is not None:
        details.append(f"guidance {first.guidance_scale}")
    if "steps" not in varying:
        details.append(f"{first.steps} steps")
    if "schedule" not in varying and first.schedule is not None:  # one --schedule other than each scheduler's own
        details.append(f"{first.schedule} schedule")
    details.append(f"{results.device} {results.dtype}")
    lines = [prompt_line, " · ".join(details), model]
    if results.references:
        lines.append(reference_line(results, runs))
    if results.target and steps_per_row:
        from schedcmp.quality.stepsearch import goal_text

        goal = goal_text(results.target.metric, results.target.value)
        lines.append(f"each scheduler at the fewest steps that reach {goal} (median over the prompts and seeds)")
    return lines


def reference_line(results: Results, runs: list[Run]) -> str:
    """What the distances on the tiles are measured against, and what the runs' schedules add to them."""
    line = f"distances (latent RMSE · image PSNR) to the reference {results.references[0].spec}"
    moved = results.interval.moved if results.interval else None  # written before runs kept their schedule
    if moved:
        line += f" · run with trailing spacing to start where it does: {', '.join(moved)}"
    notes = [(run.label, run.schedule_note or "") for run in runs]
    late = list(dict.fromkeys(name for name, note in notes if "late start" in note))
    if late:
        line += f" · late start counted in the distance: {', '.join(late)}"
    return line


def write_sheets(
    out_dir: Path, results: Results, runs: list[Run], x: str | None, z: str | None, steps_per_row: bool = False
) -> tuple[list[Path], list[str]]:
    """contact_sheet.png, or for a sweep one grid per sheet (split into pages when too big), from the saved images
    of `runs` (of `results`); `steps_per_row`: each scheduler at its own step count (a step search's answers).

    -> (the sheets written, notices for the user)."""
    notices: list[str] = []
    width, height = runs[0].width, runs[0].height
    header = sheet_header(results, runs, steps_per_row)
    plans = plan_sheets(runs, x, z, steps_per_row)
    varying = multi_valued_axes(runs, steps_per_row)
    if x is not None and x not in varying and plans is not None:
        notices.append(f"--x {x}: the {x} does not vary here; the columns are {column_axis(varying, x, z)}")
    if plans is None:
        return [write_contact_sheet(out_dir, header, runs)], notices
    if z is not None and len(plans) > 1:
        stacked = grid_of_grids(out_dir, header, plans, width, height)
        if stacked is not None:
            return [stacked], notices
        notices.append(f"--z {z}: the grid of grids would be too big for one image; writing one sheet per value")
    written = []
    for plan in plans:
        name = "contact_sheet" + (f"-{slug(plan.title, 60)}" if len(plans) > 1 else "")
        paths = write_grid_pages(out_dir, name, header, plan, width, height)
        if len(paths) > 1:
            notices.append(f"{name}: the grid was split into {len(paths)} pages")
        written += paths
    return written, notices


def write_contact_sheet(out_dir: Path, header: list[str], runs: list[Run]) -> Path:
    """contact_sheet.png: one labelled tile per run, where nothing but the scheduler varies."""
    tiles = [Tile(image_png(out_dir, run), tile_lines(run), run.status, run.reason) for run in runs]
    path = out_dir / "contact_sheet.png"
    write_atomic(path, render_contact_sheet(header, tiles, runs[0].width, runs[0].height))
    return path


def write_grid_pages(
    out_dir: Path, name: str, header: list[str], plan: SheetPlan, width: int, height: int
) -> list[Path]:
    """One grid as `name`.png, or as `name`-partN.png pages where it is too big for one image."""
    label_lines = grid_label_lines([cell_lines(run) for _, _, run in plan.cells], width, height)
    page_ranges = pages(len(plan.rows), len(plan.columns), width, height, len(header) + 2, label_lines=label_lines)
    written = []
    for page, (rows, columns) in enumerate(page_ranges, start=1):
        cells = [
            grid_cell(out_dir, r - rows.start, c - columns.start, run)
            for r, c, run in plan.cells
            if r in rows and c in columns
        ]
        title = [plan.title] if plan.title else []
        if len(page_ranges) > 1:
            title.append(
                f"page {page} of {len(page_ranges)} (rows {rows.start + 1}-{rows.stop}, "
                f"columns {columns.start + 1}-{columns.stop}): the grid was too big for one image"
            )
        path = out_dir / (name + (f"-part{page}" if len(page_ranges) > 1 else "") + ".png")
        png = render_grid(
            header + title,
            plan.rows[rows.start : rows.stop],
            plan.columns[columns.start : columns.stop],
            cells,
            width,
            height,
            label_lines,
        )
        write_atomic(path, png)
        written.append(path)
    return written


def image_png(out_dir: Path, run: Run) -> bytes | None:
    """The run's saved image as PNG bytes; None where it made none."""
    return read_png(out_dir / run.image_path) if run.image_path else None


def grid_cell(out_dir: Path, row: int, column: int, run: Run) -> GridCell:
    """A run at (row, column) of a grid: its saved image, its label and its status."""
    return GridCell(row, column, image_png(out_dir, run), cell_lines(run), run.status, run.reason)


def grid_of_grids(out_dir: Path, header: list[str], plans: list, width: int, height: int) -> Path | None:
    """--z: every sheet's grid, titled, one under the other in contact_sheet.png; None when too big for one image."""
    header_lines = len(header) + 1
    label_lines = [grid_label_lines([cell_lines(run) for _, _, run in p.cells], width, height) for p in plans]
    for p, lines in zip(plans, label_lines):
        if len(pages(len(p.rows), len(p.columns), width, height, header_lines, label_lines=lines)) > 1:
            return None
    grids = []
    for number, (plan, lines) in enumerate(zip(plans, label_lines)):
        cells = [grid_cell(out_dir, r, c, run) for r, c, run in plan.cells]
        title = (header if number == 0 else []) + [plan.title]
        grids.append(render_grid(title, plan.rows, plan.columns, cells, width, height, lines))
    stacked = stack_vertically(grids)
    if stacked is None:
        return None
    path = out_dir / "contact_sheet.png"
    write_atomic(path, stacked)
    return path
