"""The rule that turns any image file into what the model was trained on: 8-bit RGB (README,
"Image files"). Training's loader, `edgekd predict` and the report's app snippets all apply
this one function (the snippets carry its source), so an app sees what training saw.
Only numpy and PIL: apps import nothing else to follow it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# what the artifacts' metadata says of the rule (`image_rules`), so an app can check it follows it
IMAGE_RULES = ["exif_orientation", "16bit_scaled_255/65535", "transparency_onto_white", "8bit_rgb"]


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB by the documented rule (README, "Image files"): the EXIF orientation is
    applied (phones store photos sideways with a rotate tag); 16-bit values scale by 255/65535
    (PIL's own convert clips them to 255); transparency is composited onto white; the rest is
    PIL's convert. Self-contained: the report's app snippets carry this very function."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        raise ValueError("floating-point pixels (mode F) have no standard 8-bit scale; save it as 8- or 16-bit")
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")
