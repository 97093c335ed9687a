"""Measure how often the model draws what it is asked for.

    python -m schedcmp.training.evaluate --model schedcmp/default_model --sheet samples.png

For each caption of the evaluation list the model draws one image (DPMSolverMultistep, 25 steps, seed 0);
it is a hit when the prompted emoji is among the 5 emoji nearest to the drawing, by pixel distance at 32x32
after cropping both to the drawn subject and padding them square on white. `--perfect` scores the emoji
themselves (re-rendered smaller and off-centre) instead of the model, which should come out near 100%.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from schedcmp.training import data

FIXED_CAPTIONS = ("astronaut", "horse", "rocket", "red apple", "full moon")
DRAWN_CAPTIONS = 30
COMPARE_SIZE = 32
TOP_K = 5
STEPS = 25
SEED = 0
# Pixels lighter than this in every channel count as background when cropping to the subject.
WHITE_THRESHOLD = 240


def evaluation_captions(names: list[str]) -> list[str]:
    """The five fixed captions, then 30 drawn with random.Random(0) from non-flag names of at most 3 words."""
    flags = {item.name for item in data.candidate_emoji() if item.is_flag}
    pool = sorted(n for n in names if n not in flags and len(n.split()) <= 3 and n not in FIXED_CAPTIONS)
    return list(FIXED_CAPTIONS) + random.Random(0).sample(pool, DRAWN_CAPTIONS)


def normalise(image: Image.Image, size: int = COMPARE_SIZE) -> np.ndarray:
    """Crop to the drawn subject, pad square on white, resize: (size, size, 3) floats in [0, 1]."""
    rgb = np.asarray(image.convert("RGB"))
    drawn = (rgb < WHITE_THRESHOLD).any(axis=2)
    if drawn.any():
        rows, cols = np.nonzero(drawn)
        rgb = rgb[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = rgb.shape[:2]
    side = max(height, width)
    square = np.full((side, side, 3), 255, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = rgb
    small = Image.fromarray(square).resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def glyph_on_white(glyph: Image.Image) -> Image.Image:
    background = Image.new("RGB", glyph.size, "white")
    background.paste(glyph, (0, 0), glyph)
    return background


@dataclass(frozen=True)
class References:
    """Every emoji of the data set, normalised from its full-resolution glyph."""

    names: list[str]
    vectors: np.ndarray  # (N, 32 * 32 * 3)

    @classmethod
    def build(cls, font=None, limit_to: list[str] | None = None) -> References:
        """`limit_to` restricts the references to those captions (tests use a subset to stay fast)."""
        font = font or data.load_font()
        dataset = data.build_dataset(font=font, size=16, limit_to=limit_to)  # only its list of emoji is used
        vectors = [normalise(glyph_on_white(data.render_glyph(font, item.chars))).ravel() for item in dataset.emoji]
        return cls([item.name for item in dataset.emoji], np.stack(vectors))

    def nearest(self, image: Image.Image, k: int = TOP_K) -> list[str]:
        distances = ((self.vectors - normalise(image).ravel()) ** 2).mean(axis=1)
        return [self.names[i] for i in np.argsort(distances, kind="stable")[:k]]


@dataclass(frozen=True)
class Outcome:
    caption: str
    hit: bool
    rank: int | None  # 1-based rank of the prompted emoji among the nearest, None if not in the top k
    nearest: list[str]


def score(drawings: dict[str, Image.Image], references: References) -> list[Outcome]:
    outcomes = []
    for caption, image in drawings.items():
        nearest = references.nearest(image)
        rank = nearest.index(caption) + 1 if caption in nearest else None
        outcomes.append(Outcome(caption, rank is not None, rank, nearest))
    return outcomes


def hit_rate(outcomes: list[Outcome]) -> float:
    return sum(o.hit for o in outcomes) / len(outcomes)


def perfect_drawings(captions: list[str], font=None) -> dict[str, Image.Image]:
    """Each emoji drawn smaller and off-centre on a 64x64 canvas: what an ideal model could produce."""
    font = font or data.load_font()
    by_name = {item.name: item for item in data.candidate_emoji()}
    drawings = {}
    for caption in captions:
        glyph = data.render_glyph(font, by_name[caption].chars)
        small = data.place_on_white(glyph, size=48, margin=2)
        canvas = Image.new("RGB", (data.IMAGE_SIZE, data.IMAGE_SIZE), "white")
        canvas.paste(small, (3, 11))
        drawings[caption] = canvas
    return drawings


def model_drawings(
    model_path: Path, captions: list[str], guidance_scale: float, progress: Callable[[str], None] | None = None
) -> dict[str, Image.Image]:
    import torch
    from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler

    pipeline = DiffusionPipeline.from_pretrained(model_path)
    pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    drawings = {}
    for number, caption in enumerate(captions, 1):
        generator = torch.Generator("cpu").manual_seed(SEED)
        result = pipeline(caption, num_inference_steps=STEPS, guidance_scale=guidance_scale, generator=generator)
        drawings[caption] = result.images[0]
        if progress:
            progress(f"{number}/{len(captions)} {caption}")
    return drawings


def contact_sheet(drawings: dict[str, Image.Image], outcomes: list[Outcome], columns: int = 7) -> Image.Image:
    """Tiles with their caption underneath; a green caption is a hit, a red one a miss."""
    tile, label = data.IMAGE_SIZE, 22
    hits = {o.caption: o.hit for o in outcomes}
    rows = (len(drawings) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (tile + 8), rows * (tile + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (caption, image) in enumerate(drawings.items()):
        x, y = (index % columns) * (tile + 8) + 4, (index // columns) * (tile + label)
        sheet.paste(image.resize((tile, tile)), (x, y))
        colour = (0, 120, 0) if hits.get(caption) else (190, 0, 0)
        words, lines = caption.split(), [""]
        for word in words:  # wrap at ~12 characters so labels stay under their tile
            lines[-1:] = [lines[-1] + " " + word] if len(lines[-1]) + len(word) < 12 else [lines[-1], word]
        draw.multiline_text((x, y + tile), "\n".join(line.strip() for line in lines[:2]), fill=colour, spacing=0)
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedcmp.training.evaluate", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="pipeline folder to evaluate")
    source.add_argument("--perfect", action="store_true", help="score the emoji themselves instead of a model")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of the drawings here")
    parser.add_argument("--json", type=Path, help="write per-caption outcomes here")
    args = parser.parse_args(argv)

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        font = data.load_font()
    except data.FontMissingError as error:
        report(f"error: {error}")
        return 2
    references = References.build(font)
    captions = evaluation_captions(references.names)
    started = time.monotonic()
    if args.perfect:
        drawings = perfect_drawings(captions, font)
    else:
        drawings = model_drawings(args.model, captions, args.guidance_scale, report)
    outcomes = score(drawings, references)
    for outcome in outcomes:
        mark = f"hit (rank {outcome.rank})" if outcome.hit else "miss"
        print(f"{outcome.caption:<28} {mark:<14} nearest: {', '.join(outcome.nearest)}")
    print(
        f"hit rate: {hit_rate(outcomes):.1%} ({sum(o.hit for o in outcomes)}/{len(outcomes)}) "
        f"in {time.monotonic() - started:.0f} s"
    )
    if args.sheet:
        contact_sheet(drawings, outcomes).save(args.sheet)
    if args.json:
        summary = {"hit_rate": hit_rate(outcomes), "outcomes": [asdict(o) for o in outcomes]}
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
