"""HUD text rasterised with Pillow's built-in default font into an RGBA image (no font files needed)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HUD_FONT_PX = 14
PAD = 4


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:  # Pillow >= 10.1 ships a scalable default font when FreeType is available
        return ImageFont.load_default(size=HUD_FONT_PX)
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def rasterize(text: str) -> np.ndarray:
    """White text on a translucent dark box, (H, W, 4) uint8, top row first. Deterministic."""
    font = _font()
    left, top, right, bottom = font.getbbox(text)
    w, h = max(right - left, 1) + 2 * PAD, max(bottom - top, 1) + 2 * PAD
    image = Image.new("RGBA", (w, h), (0, 0, 0, 150))
    ImageDraw.Draw(image).text((PAD - left, PAD - top), text, font=font, fill=(255, 255, 255, 255))
    return np.asarray(image, dtype=np.uint8)
