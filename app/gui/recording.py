"""Recording the live viewport to a video through app.record.FrameSink, one image per simulation frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class LiveRecording:
    """Frames of a fixed size (the viewport's when recording started, rounded down to even numbers, as
    H.264 wants); a later resize crops or pads with black rather than breaking the file."""

    def __init__(self, out: Path, width: int, height: int, fps: float):
        # app.record imports app.render.headless, which picks PyOpenGL's platform unless OpenGL is already
        # imported. Importing OpenGL first (as the viewport has done) keeps Qt's GLX binding.
        import OpenGL.GL  # noqa: F401

        from app.record import FrameSink, output_kind

        self.out = Path(out)
        kind = output_kind(self.out)  # an unwritable path fails here, before anything is written
        self.width, self.height = max(2, width - width % 2), max(2, height - height % 2)
        self._sink = FrameSink(self.out, kind, fps)

    @property
    def count(self) -> int:
        return self._sink.count

    def add(self, rgb: np.ndarray) -> None:
        if rgb.shape[:2] != (self.height, self.width):
            frame = np.zeros((self.height, self.width, 3), np.uint8)
            h, w = min(self.height, rgb.shape[0]), min(self.width, rgb.shape[1])
            frame[:h, :w] = rgb[:h, :w]
            rgb = frame
        self._sink.append(rgb)

    def close(self) -> None:
        self._sink.close()
