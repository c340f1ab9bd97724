"""Clip programs of the synthetic benchmark and their rendering to real H.264 mp4 files.

A clip shows one coloured shape on a plain or noisy dark background. Its *program* is two actions played one
after the other, each over half of the clip: the first half runs ``actions[0]``, the second ``actions[1]``.

=============  =====================================================================================
action         what the frames show during its half
=============  =====================================================================================
``move``       the shape slides ``0.3 * size`` pixels towards ``direction``
``bounce``     the shape slides towards ``direction`` and back to where it started
``appear``     the shape is absent for the first part of the half, then present (first half only)
``disappear``  the shape is present, then absent for the rest of the clip (second half only)
``change``     the shape switches from its current colour to ``colour`` mid-way through the half
=============  =====================================================================================

Everything is a pure function of a :class:`ClipSpec` (sampled once from a seeded generator), so a clip renders
to the same pixels in any process. Frames are drawn with numpy only and encoded with PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

__all__ = [
    "COLOURS",
    "SHAPES",
    "DIRECTIONS",
    "Action",
    "ClipSpec",
    "sample_clip",
    "render_clip",
    "encode_mp4",
    "video_codec",
    "FOREGROUND_THRESHOLD",
    "frame_state",
    "render_to_files",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "green": (40, 195, 60),
    "blue": (45, 85, 235),
    "yellow": (235, 215, 40),
    "purple": (165, 60, 225),
    "orange": (245, 140, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
FIRST_KINDS: tuple[str, ...] = ("move", "bounce", "appear", "change")
SECOND_KINDS: tuple[str, ...] = ("move", "bounce", "disappear", "change")
# Every shape colour has a channel >= 195 and the background stays below ~100: a foreground mask is
# ``frame.max(-1) > FOREGROUND_THRESHOLD`` even after lossy compression.
FOREGROUND_THRESHOLD = 140
TRAVEL = 0.3  # fraction of the frame a move / bounce covers
RADIUS = 0.12  # shape half-extent as a fraction of the frame


@dataclass(frozen=True)
class Action:
    """One step of a clip program.

    Attributes:
        kind: ``"move"``, ``"bounce"``, ``"appear"``, ``"disappear"`` or ``"change"``.
        direction: Where a move / bounce goes (``left``, ``right``, ``up``, ``down``), else ``None``.
        colour: The colour a ``change`` turns the shape into, else ``None``.
    """

    kind: str
    direction: str | None = None
    colour: str | None = None


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip (and to write its annotations).

    Attributes:
        shape: ``circle``, ``square`` or ``triangle``.
        colour: Colour at the start of the clip (a key of :data:`COLOURS`).
        actions: The two actions, first half then second half.
        background: ``"plain"`` or ``"noisy"``.
        grey: Background grey level (0-255).
        start: Start position of the shape centre as fractions of the frame side ``(x, y)``.
        noise_seed: Seed of the background noise.
    """

    shape: str
    colour: str
    actions: tuple[Action, Action]
    background: str
    grey: int
    start: tuple[float, float]
    noise_seed: int

    @property
    def final_colour(self) -> str:
        """Colour at the end of the clip (after any ``change``)."""
        colour = self.colour
        for action in self.actions:
            if action.kind == "change":
                colour = action.colour or colour
        return colour


def _sample_action(rng: np.random.Generator, kinds: tuple[str, ...], colour: str) -> Action:
    kind = str(rng.choice(kinds))
    if kind in ("move", "bounce"):
        return Action(kind, direction=str(rng.choice(list(DIRECTIONS))))
    if kind == "change":
        return Action(kind, colour=str(rng.choice([c for c in COLOURS if c != colour])))
    return Action(kind)


def _waypoints(actions: tuple[Action, Action]) -> np.ndarray:
    """Displacements (in units of TRAVEL) reached by the program, starting at (0, 0): ``(n, 2)``."""
    points, here = [(0.0, 0.0)], np.zeros(2)
    for action in actions:
        if action.kind in ("move", "bounce"):
            far = here + np.array(DIRECTIONS[action.direction], dtype=float)
            points.append(tuple(far))
            if action.kind == "move":
                here = far
    return np.array(points)


def sample_clip(rng: np.random.Generator) -> ClipSpec:
    """Draw one clip program (shape, colours, two actions, background, start position)."""
    shape = str(rng.choice(SHAPES))
    colour = str(rng.choice(list(COLOURS)))
    first = _sample_action(rng, FIRST_KINDS, colour)
    after = first.colour if first.kind == "change" else colour
    second = _sample_action(rng, SECOND_KINDS, after)
    while second == first or (second.kind == "change" and first.kind == "change"):
        second = _sample_action(rng, SECOND_KINDS, after)
    points = _waypoints((first, second)) * TRAVEL
    margin = RADIUS + 0.03
    lo, hi = margin - points.min(0), 1.0 - margin - points.max(0)
    start = rng.uniform(lo, hi)
    return ClipSpec(
        shape=shape,
        colour=colour,
        actions=(first, second),
        background=str(rng.choice(["plain", "noisy"])),
        grey=int(rng.integers(10, 60)),
        start=(float(start[0]), float(start[1])),
        noise_seed=int(rng.integers(2**31)),
    )


def _segment(t: int, num_frames: int) -> tuple[int, float]:
    """Which half frame ``t`` is in and its progress ``u`` in [0, 1] through that half."""
    half = num_frames // 2
    index = 0 if t < half else 1
    begin, length = (0, half) if index == 0 else (half, num_frames - half)
    return index, (t - begin) / max(length - 1, 1)


def frame_state(spec: ClipSpec, t: int, num_frames: int) -> tuple[np.ndarray, str, bool]:
    """Centre (fractions ``(x, y)``), colour name and visibility of the shape in frame ``t``."""
    index, u = _segment(t, num_frames)
    pos, colour, visible = np.array(spec.start), spec.colour, True
    for i, action in enumerate(spec.actions[: index + 1]):
        progress = u if i == index else 1.0
        if action.kind in ("move", "bounce"):
            step = np.array(DIRECTIONS[action.direction], dtype=float) * TRAVEL
            amount = progress if action.kind == "move" else 1.0 - abs(2.0 * progress - 1.0)
            pos = pos + step * amount
        elif action.kind == "change" and progress >= 0.5:
            colour = action.colour
        elif action.kind == "appear":
            visible = progress >= 0.5
        elif action.kind == "disappear":
            visible = progress < 0.5
    return pos, colour, visible


def _shape_mask(shape: str, centre: np.ndarray, size: int) -> np.ndarray:
    """Boolean ``(h, w)`` mask of ``shape`` centred at ``centre`` (fractions of the side)."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    dy, dx = coords[:, None] - centre[1], coords[None, :] - centre[0]
    if shape == "circle":
        return dx**2 + dy**2 <= RADIUS**2
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= RADIUS * 0.85
    if shape == "triangle":  # apex up, base at +0.8 r
        return (dy >= -RADIUS) & (dy <= 0.8 * RADIUS) & (np.abs(dx) <= (dy + RADIUS) * 0.6)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_clip(spec: ClipSpec, size: int, num_frames: int) -> np.ndarray:
    """Render a clip as uint8 RGB frames ``(t h w c)``."""
    rng = np.random.default_rng(spec.noise_seed)
    frames = np.full((num_frames, size, size, 3), spec.grey, dtype=np.float32)
    if spec.background == "noisy":
        frames += rng.normal(0.0, 8.0, size=frames.shape).astype(np.float32)
    for t in range(num_frames):
        centre, colour, visible = frame_state(spec, t, num_frames)
        if visible:
            frames[t][_shape_mask(spec.shape, centre, size)] = COLOURS[colour]
    return np.clip(frames, 0, 255).astype(np.uint8)


def video_codec() -> str:
    """``libx264`` where this PyAV build has it, else ``mpeg4``."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def encode_mp4(frames: np.ndarray, path: str | Path, fps: int, codec: str | None = None) -> None:
    """Write uint8 RGB frames ``(t h w c)`` as a yuv420p mp4, reproducibly: the same frames give the same bytes.

    libx264 runs single-threaded and without macroblock-tree rate control: with ``mbtree`` on (x264's
    default), encoding the same frames twice gave different pixels for about one clip in seven (up to 33
    levels), even in one thread of one process, so a "same seed" benchmark was not the same data."""
    codec = codec or video_codec()
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
        else:
            stream.bit_rate = 2_000_000
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def render_to_files(
    jobs: list[tuple[ClipSpec, str]], size: int, num_frames: int, fps: int, codec: str
) -> int:
    """Render and encode each ``(spec, path)`` job; returns how many were written (a process-pool task)."""
    for spec, path in jobs:
        encode_mp4(render_clip(spec, size, num_frames), path, fps, codec)
    return len(jobs)
