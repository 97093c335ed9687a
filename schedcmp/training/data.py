"""The training data: emoji rendered from the Noto Color Emoji font, captioned with CLDR short names.

Nothing here is downloaded: the glyphs come from Debian's `fonts-noto-color-emoji` and the names from the
`emoji` package, so the data set is rebuilt from scratch by whoever runs the training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_PACKAGE = "fonts-noto-color-emoji"
# NotoColorEmoji.ttf holds bitmap strikes of one size only; FreeType refuses any other.
FONT_BITMAP_SIZE = 109
IMAGE_SIZE = 64
# White border around the subject, so that nothing touches the image edge.
SUBJECT_MARGIN = 4

SKIN_TONE_MODIFIERS = range(0x1F3FB, 0x1F3FF + 1)
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F1FF + 1)
TAG_CHARACTERS = range(0xE0020, 0xE007F + 1)
# "ZZ" is no region: the font draws its fallback flag (a white flag with a question mark) for it.
UNKNOWN_FLAG = "\U0001f1ff\U0001f1ff"


class FontMissingError(RuntimeError):
    """The emoji font is not installed."""


@dataclass(frozen=True)
class Emoji:
    """One emoji of the data set: its characters and its caption (the CLDR short name)."""

    chars: str
    name: str

    @property
    def is_flag(self) -> bool:
        """Country and subdivision flags, and every other name with a flag in it ("pirate flag",
        "crossed flags", also "flag in hole")."""
        codepoints = [ord(c) for c in self.chars]
        return any(c in REGIONAL_INDICATORS or c in TAG_CHARACTERS for c in codepoints) or any(
            word.startswith("flag") for word in self.name.split()
        )


def load_font(path: Path = FONT_PATH) -> ImageFont.FreeTypeFont:
    """The emoji font with complex text layout, which ZWJ sequences, flags and keycaps need."""
    if not path.exists():
        raise FontMissingError(
            f"{path} is missing; install the Debian package {FONT_PACKAGE} (apt-get install {FONT_PACKAGE})"
        )
    return ImageFont.truetype(str(path), FONT_BITMAP_SIZE, layout_engine=ImageFont.Layout.RAQM)


def caption_from_package_name(package_name: str, is_country_flag: bool) -> str:
    """':red_apple:' -> 'red apple'; country flags get CLDR's 'flag: ' prefix back."""
    name = package_name.strip(":").replace("_", " ")
    return f"flag: {name}" if is_country_flag else name


def candidate_emoji() -> list[Emoji]:
    """All fully-qualified emoji without skin-tone modifiers, in the `emoji` package's order."""
    import emoji as emoji_package

    candidates = []
    for chars, data in emoji_package.EMOJI_DATA.items():
        if data["status"] != emoji_package.STATUS["fully_qualified"]:
            continue
        if any(ord(c) in SKIN_TONE_MODIFIERS for c in chars):
            continue
        is_country_flag = any(ord(c) in REGIONAL_INDICATORS or ord(c) in TAG_CHARACTERS for c in chars)
        candidates.append(Emoji(chars, caption_from_package_name(data["en"], is_country_flag)))
    return candidates


def render_glyph(font: ImageFont.FreeTypeFont, chars: str) -> Image.Image | None:
    """The emoji as the font draws it (RGBA, cropped to the drawn pixels), or None if it is not one glyph.

    A sequence the font does not know comes out as several glyphs (wider than one advance) or as an
    empty .notdef glyph.
    """
    advance = font.getlength("\U0001f600")
    if font.getlength(chars) > 1.5 * advance:
        return None
    canvas = Image.new("RGBA", (int(2 * advance), 2 * FONT_BITMAP_SIZE), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((0, 0), chars, font=font, embedded_color=True)
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def place_on_white(glyph: Image.Image, size: int = IMAGE_SIZE, margin: int = SUBJECT_MARGIN) -> Image.Image:
    """Scale the subject to fit `size - 2 * margin`, centred on a white RGB square."""
    inner = size - 2 * margin
    scale = inner / max(glyph.size)
    width, height = max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))
    small = glyph.resize((width, height), Image.Resampling.LANCZOS)
    image = Image.new("RGB", (size, size), "white")
    image.paste(small, ((size - width) // 2, (size - height) // 2), small)
    return image


@dataclass(frozen=True)
class EmojiDataset:
    """Rendered emoji and the ones left out, with the reason for each."""

    emoji: list[Emoji]
    images: np.ndarray  # (N, size, size, 3) uint8
    left_out: list[tuple[Emoji, str]]


def build_dataset(
    size: int = IMAGE_SIZE, limit_to: list[str] | None = None, font: ImageFont.FreeTypeFont | None = None
) -> EmojiDataset:
    """Render every candidate emoji the font draws; `limit_to` keeps only the captions listed (for tests)."""
    font = font or load_font()
    unknown_flag = np.asarray(render_glyph(font, UNKNOWN_FLAG))
    kept, images, left_out = [], [], []
    seen_captions = set()
    for item in candidate_emoji():
        if limit_to is not None and item.name not in limit_to:
            continue
        if item.name in seen_captions:
            left_out.append((item, "caption shared with an earlier emoji"))
            continue
        glyph = render_glyph(font, item.chars)
        if glyph is None:
            left_out.append((item, "not in this version of the font"))
            continue
        pixels = np.asarray(glyph)
        if pixels.shape == unknown_flag.shape and np.array_equal(pixels, unknown_flag):
            left_out.append((item, "flag not in this version of the font (drawn as the unknown flag)"))
            continue
        seen_captions.add(item.name)
        kept.append(item)
        images.append(np.asarray(place_on_white(glyph, size)))
    return EmojiDataset(kept, np.stack(images), left_out)


CAPTION_TEMPLATES = (
    "{name}",
    "{name}",
    "{name}",
    "{article} {name}",
    "{name} emoji",
    "an emoji of {article} {name}",
    "a picture of {article} {name}",
)


def indefinite_article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


def caption_variants(name: str) -> list[str]:
    """Simple phrasings of a name; the bare name is listed several times so it stays the most frequent."""
    return [template.format(name=name, article=indefinite_article(name)) for template in CAPTION_TEMPLATES]
