"""TokenVLA: the reference autoregressive VLA (model.py), its tokenization (tokenizer.py), its loading and
stateless processor for the recipes (processor.py) and its policy (policy.py)."""

from lara.vla.token_vla.model import (TokenVLA, TokenVLAConfig, TokenVLAOutput, preprocess_images, random_shift,
                                      splice_after_bos, tiny_token_vla, token_vla_config)
from lara.vla.token_vla.policy import TokenVLAPolicy, load_policy
from lara.vla.token_vla.processor import BUILD_KEYS, Processor, checkpointed_modules, config, load

__all__ = ["BUILD_KEYS", "Processor", "TokenVLA", "TokenVLAConfig", "TokenVLAOutput", "TokenVLAPolicy",
           "checkpointed_modules", "config", "load", "load_policy", "preprocess_images", "random_shift",
           "splice_after_bos", "tiny_token_vla", "token_vla_config"]
