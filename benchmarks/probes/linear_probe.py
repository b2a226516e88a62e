"""Moved to `lara.linear_probe` (LAM refinement in `lara.adapters` and the probes here both fit it); this name stays
for code that imports it from here."""

from lara.linear_probe import probe_latents, ridge_r2

__all__ = ["probe_latents", "ridge_r2"]
