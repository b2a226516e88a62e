"""OpenVLA / OpenVLA-OFT from a local checkpoint with its remote code: loading and the stateless processor that
feeds it as OpenVLA's own fine-tuning does (model.py)."""

from lara.vla.openvla.model import (BUILD_KEYS, CheckpointFiles, Processor, check_openvla_directory,
                                    checkpointed_modules, config, load, load_openvla, load_openvla_processor,
                                    load_policy, remote_class)
from lara.vla.batch import prompt

__all__ = ["BUILD_KEYS", "CheckpointFiles", "Processor", "check_openvla_directory", "checkpointed_modules", "config",
           "load", "load_openvla", "load_openvla_processor", "load_policy", "prompt", "remote_class"]
