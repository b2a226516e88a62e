"""Losses to a local JSONL file and to Weights & Biases (offline by default)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from lara.outputs import replacing


class MetricsLog:
    """`RUN/metrics.jsonl` (one JSON object per logged step) and a wandb run; main process only.

    On resume from step s, records after s are dropped from the JSONL, so the file always reads as one
    uninterrupted run; the wandb run continues under the same id.
    """

    def __init__(self, output_dir: Path, wandb_config, run_config: dict, resume_step: int = 0):
        output_dir.mkdir(parents=True, exist_ok=True)
        self.path = output_dir / "metrics.jsonl"
        self._truncate(resume_step)
        self.wandb = None
        if wandb_config.mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            id_file = output_dir / "wandb_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
            id_file.write_text(run_id)
            self.wandb = wandb.init(project=wandb_config.project, name=wandb_config.name or output_dir.name,
                                    dir=str(output_dir), mode=wandb_config.mode, id=run_id, resume="allow",
                                    config=run_config)

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        with replacing(self.path) as staging:
            staging.write_text("".join(line + "\n" for line in keep))

    def log(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **values}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
