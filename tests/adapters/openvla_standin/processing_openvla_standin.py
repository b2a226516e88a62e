"""Remote code of the tiny OpenVLA stand-in's processor (tests only), shaped like OpenVLA's
`processing_prismatic`: an image processor with `apply_transform(PIL image) -> (3, S, S)` tensor (what
OpenVLA's finetune.py calls per image) and a processor holding it and the tokenizer."""

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ImageProcessingMixin, ProcessorMixin


class OpenVLAStandInImageProcessor(ImageProcessingMixin):
    model_input_names = ["pixel_values"]

    def __init__(self, image_size: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size

    def apply_transform(self, image: Image.Image) -> torch.Tensor:
        """Resize (bicubic) and scale to [-1, 1], as SigLIP's transform: (3, S, S)."""
        image = image.convert("RGB").resize((self.image_size, self.image_size), Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (pixels - 0.5) / 0.5

    def __call__(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        images = [images] if isinstance(images, Image.Image) else images
        return BatchFeature({"pixel_values": torch.stack([self.apply_transform(i) for i in images])},
                            tensor_type=return_tensors)


class OpenVLAStandInProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor=None, tokenizer=None):
        super().__init__(image_processor, tokenizer)
