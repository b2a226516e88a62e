from __future__ import annotations

import pytest
import torch

from lara.vla.presets import tiny_token_vla


@pytest.fixture
def token_vla():
    torch.manual_seed(0)
    return tiny_token_vla()
