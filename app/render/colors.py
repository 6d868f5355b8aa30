"""Colours: the material palette, the speed colormap and the scene's fixed colours (linear RGB floats)."""

from __future__ import annotations

import numpy as np

BACKGROUND = (0.07, 0.08, 0.10)
DOMAIN_FILL = (0.11, 0.12, 0.15)  # the 2D domain interior, so letterboxing is visible
WALL = (0.55, 0.58, 0.65)
OBSTACLE = (0.46, 0.48, 0.53)
FLOOR_A = (0.20, 0.21, 0.24)
FLOOR_B = (0.16, 0.17, 0.20)
STROKE = (1.00, 0.80, 0.20, 1.0)
ARROW = (0.30, 0.95, 0.60, 1.0)

# Indexed by material id: water, jelly, snow, sand.
MATERIAL_PALETTE = np.array(
    [
        [0.16, 0.45, 0.95],  # water: blue
        [0.92, 0.30, 0.46],  # jelly: red/pink
        [0.93, 0.95, 0.98],  # snow: near white
        [0.84, 0.70, 0.46],  # sand: tan
    ],
    dtype=np.float32,
)

# Anchor colours of the viridis colormap at 0, 1/4, 1/2, 3/4, 1; the table linearly interpolates them,
# which keeps viridis' monotonic lightness (perceptual ordering of speeds).
_VIRIDIS_ANCHORS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def _hex_rgb(code: str) -> tuple[float, float, float]:
    return tuple(int(code[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


def speed_lut(n: int = 256) -> np.ndarray:
    """The speed colormap as an (n, 3) uint8 table, slow -> fast."""
    anchors = np.array([_hex_rgb(c) for c in _VIRIDIS_ANCHORS])
    t = np.linspace(0.0, 1.0, n)
    knots = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.stack([np.interp(t, knots, anchors[:, k]) for k in range(3)], axis=1)
    return np.round(rgb * 255.0).astype(np.uint8)
