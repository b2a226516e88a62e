"""Remote code of a tiny OpenVLA stand-in (tests only): real OpenVLA weights and code cannot be downloaded here.

It has what the LARA recipes rely on in OpenVLA's `modeling_prismatic.OpenVLAForActionPrediction`: config
model_type 'openvla', the LLM at `language_model.model.layers.N`, `forward(input_ids, attention_mask,
pixel_values, labels)` with the image patches spliced in after BOS, and a `norm_stats` config entry. The
network is lara's TokenVLA (OpenVLA's layout at any size); the tokenizer beside it puts the action bins on
ids 31744..31999 as Llama-2's does.
"""

from lara.vla.token_vla import TokenVLA, TokenVLAConfig


class OpenVLAStandInConfig(TokenVLAConfig):
    model_type = "openvla"

    def __init__(self, **kwargs):  # transformers 5 would otherwise give the subclass a dataclass __init__
        super().__init__(**kwargs)


class OpenVLAStandIn(TokenVLA):
    config_class = OpenVLAStandInConfig

    # as PrismaticForConditionalGeneration: peft's 'all-linear' then leaves the LM head out
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()
