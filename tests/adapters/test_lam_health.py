"""`python -m lara.benchmarks.probes.lam_health` on LIBERO-schema files: trains, measures, writes its JSON."""

import json

from lara.benchmarks.probes import lam_health
from recipe_files import write_demos


def test_lam_health_reports_codes_spread_and_probes(tmp_path, capsys):
    data = write_demos(tmp_path / "demos")
    out = tmp_path / "health.json"
    assert lam_health.main(["--data", str(data), "--steps", "4", "--log-every", "2", "--image-size", "32",
                            "--patch-size", "8", "--frame-gap", "3", "--held-out-every", "3",
                            "--set", "width=32", "action_horizon=3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["pairs"]["train"] > 0 and report["pairs"]["held_out"] > 0
    (result,) = report["results"]
    assert [r["step"] for r in result["log"]] == [2, 4]
    assert 1 <= result["codes_used"] <= 128 and 0 < result["code_usage"] <= 1 and result["perplexity"] >= 1
    for key in ("z_spread", "mse_vs_copy", "probe_r2", "probe_r2_untrained"):
        assert isinstance(result[key], float), key
    assert "pixel-difference probe R^2" in capsys.readouterr().out
