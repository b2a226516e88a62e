"""Headless OpenGL for MuJoCo: `MUJOCO_GL` chosen before mujoco is imported, for every simulator that renders
(LIBERO's envs in `lara.benchmarks.libero`, the robosuite Franka in `lara.real_robot.sim_robosuite`).

The user's value when set, else EGL when it can create a context, else OSMesa. The probe runs in a subprocess:
this module itself imports no simulator.
"""

from __future__ import annotations

import os
import subprocess
import sys

GL_BACKENDS = {"egl": "libegl1 (and libegl-mesa0 for CPU rendering)", "osmesa": "libosmesa6"}

_GL_PROBE = "import mujoco; c = mujoco.GLContext(16, 16); c.make_current(); c.free()"


def select_gl_backend() -> str:
    """Set MUJOCO_GL (and PYOPENGL_PLATFORM) to a backend that can render here; returns its name.

    Must run before mujoco/robosuite are imported: they read the variable at import time.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
        return chosen
    errors = {}
    for backend in GL_BACKENDS:
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        probe = subprocess.run([sys.executable, "-c", _GL_PROBE], env=env, capture_output=True, text=True)
        if probe.returncode == 0:
            os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
        errors[backend] = (probe.stderr.strip().splitlines() or ["no output"])[-1]
    tried = "; ".join(f"{b}: {e}" for b, e in errors.items())
    raise RuntimeError(
        f"No headless OpenGL backend works for MuJoCo (tried {tried}). Install one: "
        f"`apt-get install {GL_BACKENDS['egl']}` for EGL or `apt-get install {GL_BACKENDS['osmesa']}` "
        "for OSMesa (scripts/install-system-deps.sh installs both), or set MUJOCO_GL yourself."
    )
