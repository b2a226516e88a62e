"""LAM code rows of latent-action pre-training: appended after the action bins, saved, dropped again."""

from __future__ import annotations

import pytest
import torch

from lara.specs import SPECS
from lara.vla import TokenVLA
from lara.vla.token_vla import tiny_token_vla


@pytest.mark.tf440
def test_code_rows_follow_the_action_bins_survive_saving_and_drop_cleanly(tmp_path):
    torch.manual_seed(0)
    vla = tiny_token_vla(width=32, layers=1)
    before = vla.language_model.get_input_embeddings().weight.detach().clone()  # (1024, 32)
    bins = (vla.action_tokenizer.first_id, vla.action_tokenizer.last_id)
    vla.set_latent_codes(8)
    assert vla.first_code_id == 1024 and vla.config.text_config.vocab_size == 1032
    assert vla.language_model.get_output_embeddings().weight.shape == (1032, 32)
    assert torch.equal(vla.language_model.get_input_embeddings().weight[:1024], before)
    vla.save_pretrained(tmp_path)
    loaded = TokenVLA.from_pretrained(tmp_path)
    assert loaded.config.latent_codes == 8 and (loaded.action_tokenizer.first_id, loaded.action_tokenizer.last_id) == bins
    assert SPECS["token_vla"].action_token_ids(loaded.config) == bins  # LARA aligns the action bins
    loaded.set_latent_codes(0)
    assert torch.equal(loaded.language_model.get_input_embeddings().weight, before)
    assert loaded.predict_action(torch.zeros(1, 3, 32, 32), ["pick up the bowl"]).shape == (1, 7)
