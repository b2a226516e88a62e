"""Writes a tiny OpenVLA stand-in checkpoint: remote code + weights + tokenizer + processor in one folder.

    path = write_openvla_standin(tmp_path / "openvla")
    AutoProcessor.from_pretrained(path, trust_remote_code=True)     # OpenVLAStandInProcessor
    config.json: model_type 'openvla', auto_map AutoModelForVision2Seq -> modeling_openvla_standin.OpenVLAStandIn

The tokenizer is a Llama-style sentencepiece BPE (no merges, byte fallback, '▁' for spaces, BOS added, <PAD>
added at id 32000 as OpenVLA adds it) with Llama-2's 32000-id base vocabulary, so the action bins sit on ids
31744..31999; the language model's vocabulary is padded to 32064 as OpenVLA's is.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, processors
from transformers import PreTrainedTokenizerFast

CODE = Path(__file__).parent
MODELING, PROCESSING = "modeling_openvla_standin", "processing_openvla_standin"
BASE_VOCAB, PADDED_VOCAB = 32000, 32064


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, CODE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def standin_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<unk>", "<s>", "</s>"]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)] + ["▁"] + list(string.printable.strip())
    pieces += [f"<filler{i}>" for i in range(BASE_VOCAB - len(pieces))]
    tokenizer = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[], unk_token="<unk>",
                                     byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.add_special_tokens({"pad_token": "<PAD>"})  # id 32000, as OpenVLA's
    return fast


def write_openvla_standin(directory: Path, width: int = 32, layers: int = 2, image_size: int = 32, seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    modeling = _module(MODELING)
    config = modeling.OpenVLAStandInConfig(
        vision_config=dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        text_config=dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2, vocab_size=PADDED_VOCAB,
                         max_position_embeddings=512, pad_token_id=BASE_VOCAB, bos_token_id=1, eos_token_id=2),
        norm_stats={},
    )
    modeling.OpenVLAStandIn(config).save_pretrained(directory)
    saved = json.loads((directory / "config.json").read_text())
    saved["auto_map"] = {"AutoConfig": f"{MODELING}.OpenVLAStandInConfig",
                         "AutoModelForVision2Seq": f"{MODELING}.OpenVLAStandIn"}
    (directory / "config.json").write_text(json.dumps(saved, indent=2))

    # OpenVLA's processor layout: tokenizer files + preprocessor_config.json naming the remote classes
    standin_tokenizer().save_pretrained(directory)
    preprocessor = {"image_size": image_size, "image_processor_type": "OpenVLAStandInImageProcessor",
                    "processor_class": "OpenVLAStandInProcessor",
                    "auto_map": {"AutoImageProcessor": f"{PROCESSING}.OpenVLAStandInImageProcessor",
                                 "AutoProcessor": f"{PROCESSING}.OpenVLAStandInProcessor"}}
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    for name in (MODELING, PROCESSING):
        shutil.copy(CODE / f"{name}.py", directory / f"{name}.py")
    return directory
