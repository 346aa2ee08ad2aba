"""Clips of recorded segments: frames re-rendered from the simulator states the loop saved, written as MP4.

Only the segments someone will look at are rendered (a queried pair, the report's before/after), from
the MuJoCo state (qpos, qvel) recorded with each step, so rendering costs nothing while the agent trains.
Shadows and reflections are switched off: they take most of a software renderer's time and tell a viewer
nothing about the motion. Offscreen rendering needs no display: MuJoCo's EGL or OSMesa backend
(``MUJOCO_GL=egl`` or ``osmesa``); a machine with neither gets a one-line error, not a blank clip.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from rlhflab.control.envs import make_env
from rlhflab.core.errors import ConfigError, RlhflabError

FPS = 20
"""Frames per second of a clip (Reacher's control step is 0.02 s: 20 frames/s is 2.5x slower than life)."""


def offscreen_backend() -> None:
    """Choose EGL for MuJoCo when no backend is set and no display is there (must run before mujoco renders)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"


def render_states(env_id: str, states: np.ndarray, size: int = 128) -> np.ndarray:
    """[T, size, size, 3] uint8 frames of the simulator states ``states`` ([T, nq + nv])."""
    return render_many(env_id, [states], size)[0]


def render_many(env_id: str, clips: list[np.ndarray], size: int = 128) -> list[np.ndarray]:
    """Frames of several clips' states (each [T, nq + nv]) through one renderer (making one costs more than a clip)."""
    for states in clips:
        if states.ndim != 2 or states.shape[1] == 0:
            raise RlhflabError("these segments carry no simulator states (the env is not MuJoCo): nothing to render")
        if not np.isfinite(states).all():
            raise RlhflabError("a recorded simulator state is not finite: the clip cannot be rendered")
    offscreen_backend()
    try:
        env = make_env(env_id, render=True, width=size, height=size)
        env.reset(seed=0)
        sim = env.unwrapped
        model = sim.model
        model.light_castshadow[:] = 0
        model.mat_reflectance[:] = 0
        out = []
        for states in clips:
            if model.nq + model.nv != states.shape[1]:
                raise RlhflabError(
                    f"{env_id} has {model.nq} + {model.nv} state values, the recorded states {states.shape[1]}"
                )
            frames = []
            for state in states:
                sim.set_state(state[: model.nq], state[model.nq :])
                frames.append(np.asarray(env.render(), dtype=np.uint8))
            out.append(np.stack(frames))
        env.close()
    except (RlhflabError, ConfigError):
        raise
    except Exception as e:  # no GL backend, a broken driver: said once, in one line
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        backend = os.environ.get("MUJOCO_GL", "default")
        raise RlhflabError(
            f"could not render {env_id} offscreen (MUJOCO_GL={backend}): {first}; install EGL or OSMesa "
            "(Debian: libegl1 or libosmesa6) and set MUJOCO_GL=egl or osmesa"
        ) from None
    return out


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two clips ([T, H, W, 3]) as one, left and right, with a white gap (the shorter one holds its last frame)."""
    t = max(len(left), len(right))

    def pad(c):
        return np.concatenate([c, np.repeat(c[-1:], t - len(c), axis=0)]) if len(c) < t else c

    left, right = pad(left), pad(right)
    white = np.full((t, left.shape[1], gap, 3), 255, np.uint8)
    return np.concatenate([left, white, right], axis=2)


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = FPS) -> Path:
    """Write [T, H, W, 3] uint8 frames as an H.264 MP4 (through imageio-ffmpeg's own ffmpeg); atomic."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise RlhflabError(f"a clip needs frames of shape [T, H, W, 3], got {list(frames.shape)}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:  # H.264 in yuv420p wants even sides
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.mp4")
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
        macro_block_size=1, output_params=["-movflags", "+faststart"],
    )  # fmt: skip
    writer.send(None)
    for frame in frames.astype(np.uint8):
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    tmp.replace(path)
    return path


def mp4_bytes(frames: np.ndarray, fps: int = FPS) -> bytes:
    """``frames`` as the bytes of an H.264 MP4 (for the labelling page's store)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_mp4(frames, Path(tmp) / "clip.mp4", fps).read_bytes()
