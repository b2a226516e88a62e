from __future__ import annotations

import pytest
import torch

from lara.vla.token_vla import tiny_token_vla


@pytest.fixture
def token_vla():
    torch.manual_seed(0)
    return tiny_token_vla()
