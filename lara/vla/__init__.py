"""Reference VLAs and their policies (TokenVLA, pi0). TokenVLA registers with transformers' Auto classes."""

from transformers import AutoConfig, AutoModel

from lara.vla.pi0 import PI0Policy, load_pi0_policy
from lara.vla.policy import TokenVLAPolicy, load_policy
from lara.vla.token_vla import TokenVLA, TokenVLAConfig

AutoConfig.register(TokenVLAConfig.model_type, TokenVLAConfig, exist_ok=True)
AutoModel.register(TokenVLAConfig, TokenVLA, exist_ok=True)

__all__ = ["PI0Policy", "TokenVLA", "TokenVLAConfig", "TokenVLAPolicy", "load_pi0_policy", "load_policy"]
