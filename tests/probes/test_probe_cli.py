"""`lara probe` on files of the LIBERO schema, the distractor transforms, and the frozen-feature representations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lara
from lara.benchmarks.probes.distractors import DistractorConfig, distract_episode, distract_pairs
from lara.benchmarks.probes.representations import vision_features
from lara.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from recipe_files import write_demos  # noqa: E402


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    return write_demos(tmp_path_factory.mktemp("probe") / "demos")


def probe_cli(demos: Path, out: Path, *extra: str) -> dict:
    code = main(["probe", "--data", str(demos), "--frame-gap", "3", "--image-size", "32", "--mlp-steps", "30",
                 "--represent", "pixel_diff", "untrained_lam", "vision:dinov2", "--out", str(out), *extra])
    assert code == 0
    return json.loads(out.read_text())


def test_probe_writes_json_table_and_plot_and_repeats_under_a_seed(demos, tmp_path, capsys):
    first = probe_cli(demos, tmp_path / "a.json", "--plot", str(tmp_path / "a.png"), "--distractors")
    table = capsys.readouterr().out
    assert "dinov2:concat" in table and "drop" in table and (tmp_path / "a.png").stat().st_size > 0
    rows = first["representations"]
    assert set(rows) == {"pixel_diff", "untrained_lam:z", "untrained_lam:codes", "dinov2:diff", "dinov2:concat"}
    assert first["pairs"]["episodes"] == 3 and first["tasks"] == ["open the drawer", "put the bowl on the plate"]
    clean = rows["pixel_diff"]["clean"]
    assert len(clean["ridge"]["r2_per_dim"]) == 7 and clean["ridge"]["r2_per_dim"][3] is None  # rotation never moves
    assert "ridge_r2_drop" in rows["dinov2:diff"]
    second = probe_cli(demos, tmp_path / "b.json", "--distractors")
    assert second["representations"] == {k: {c: {**v, "seconds": second["representations"][k][c]["seconds"]}
                                             if isinstance(v, dict) else v for c, v in row.items()}
                                         for k, row in rows.items()}


def test_probe_reads_a_saved_lam_and_refuses_unknown_representations(demos, tmp_path, capsys):
    lara.save_lam(lara.LatentActionModel(lara.LAMConfig(image_size=32, patch_size=8, width=32, heads=2,
                                                        idm_layers=1, fdm_layers=1)), tmp_path / "lam")
    assert main(["probe", "--data", str(demos), "--frame-gap", "3", "--image-size", "32", "--mlp-steps", "0",
                 "--represent", f"lam:{tmp_path / 'lam'}", "--out", str(tmp_path / "r.json")]) == 0
    assert set(json.loads((tmp_path / "r.json").read_text())["representations"]) == {"lam[lam]:z", "lam[lam]:codes"}
    assert main(["probe", "--data", str(demos), "--represent", "optical_flow"]) == 2
    assert "unknown representation 'optical_flow'" in capsys.readouterr().err
    assert main(["probe", "--data", str(demos), "--represent", f"lam:{tmp_path / 'nothing'}"]) == 2
    capsys.readouterr()
    from lara.vla.token_vla import tiny_token_vla

    vla = tmp_path / "run" / "final" / "vla"  # a VLA given where a LAM belongs: a FileNotFoundError traceback before
    tiny_token_vla().save_pretrained(vla)
    capsys.readouterr()
    assert main(["probe", "--data", str(demos), "--represent", f"lam:{vla}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara probe: error: lam:") and error.count("\n") == 1
    assert f"holds a VLA (config.json), not a LAM: a run's LAM is in {vla.parent / 'lara'}" in error
    assert main(["probe", "--data", str(demos), "--frame-gap", "3", "--image-size", "32", "--represent", "pixel_diff",
                 "--out", str(tmp_path / "r.json")]) == 2  # the earlier report stays
    assert "r.json already exists; this probe would replace it: give --overwrite" in capsys.readouterr().err
    assert main(["probe", "--data", str(demos), "--stride", "0"]) == 2
    assert "argument --stride: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_vit_mae_features_keep_their_patch_order():
    frames = torch.randint(0, 256, (2, 2, 3, 32, 32), dtype=torch.uint8)
    frames[1] = frames[0]
    torch.manual_seed(0)
    diff, concat = vision_features("vit_mae", frames, 32)
    assert torch.allclose(concat[0], concat[1], atol=1e-5)  # MAE's random patch shuffle would break this
    assert diff.shape == (2, 64 * 4) and concat.shape == (2, 2 * 64 * 4)


def test_distractor_patch_moves_with_the_arm():
    cfg = DistractorConfig(correlation=1.0, overlay=0.0, patch_fraction=0.25, max_shift_fraction=0.25)
    frames = torch.zeros(64, 2, 3, 32, 32, dtype=torch.uint8)
    motion = torch.rand(64, 2) * 2 - 1
    out = distract_pairs(frames, motion, cfg, seed=0)
    assert torch.equal(out, distract_pairs(frames, motion, cfg, seed=0))

    def centre(img):  # (3, H, W) -> (y, x) centre of the painted patch
        ys, xs = torch.nonzero(img.sum(0) > 0, as_tuple=True)
        return torch.stack([ys.float().mean(), xs.float().mean()])

    moved = torch.stack([centre(o[1]) - centre(o[0]) for o in out])  # (N, 2)
    for axis in (0, 1):
        assert torch.corrcoef(torch.stack([moved[:, axis], motion[:, axis]]))[0, 1] > 0.8


def test_distract_episode_paints_every_frame_and_is_seeded():
    frames = np.zeros((20, 32, 32, 3), np.uint8)
    motion = np.tile([[0.5, -0.5]], (20, 1))
    cfg = DistractorConfig()
    out = distract_episode(frames, motion, cfg, seed=3)
    assert out.shape == frames.shape and out.dtype == np.uint8 and (out.reshape(20, -1).max(1) > 0).all()
    assert np.array_equal(out, distract_episode(frames, motion, cfg, seed=3))
    assert not np.array_equal(out, distract_episode(frames, motion, cfg, seed=4))
