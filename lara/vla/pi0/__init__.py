"""pi0 (transformers PI0ForConditionalGeneration): loading and small configs (model.py), the stateless processor
(processor.py) and the policy (policy.py); pi0.5 reuses all three."""

from lara.vla.pi0.model import BUILD_KEYS, checkpointed_modules, config, load, pi0_batch, pi0_config, tiny_pi0
from lara.vla.pi0.policy import FlowPolicy, load_policy
from lara.vla.pi0.processor import CAMERAS_KEY, ByteTokenizer, Processor

__all__ = ["BUILD_KEYS", "ByteTokenizer", "CAMERAS_KEY", "FlowPolicy", "Processor", "checkpointed_modules", "config",
           "load", "load_policy", "pi0_batch", "pi0_config", "tiny_pi0"]
