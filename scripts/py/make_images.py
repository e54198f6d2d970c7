"""Generates test images derived from the scikit-image ones.

Usage: make_images.py <images-dir>   (run by scripts/setup.sh, tools venv)

rocket_exif6.jpg is what a phone held sideways writes: the stored pixels are
rocket.jpg turned 90 degrees counter-clockwise (427x640) and EXIF
Orientation=6 says "rotate 90 clockwise to display". A viewer that honours
EXIF -- browsers, hence Label Studio -- shows the upright 640x427 rocket, so
a backend must apply the tag before inference and report
original_width=640, original_height=427. A backend that ignores the tag sees
a sideways 427x640 image.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112
ROTATE_90_CW_TO_DISPLAY = 6


def make_rocket_exif6(images: Path) -> None:
    upright = Image.open(images / "rocket.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW_TO_DISPLAY
    target = images / "rocket_exif6.jpg"
    partial = target.with_suffix(".partial.jpg")
    stored.save(partial, "JPEG", quality=95, exif=exif)
    partial.replace(target)

    # Check the file says what the docstring promises.
    written = Image.open(target)
    assert written.getexif().get(EXIF_ORIENTATION) == ROTATE_90_CW_TO_DISPLAY
    assert written.size == (upright.height, upright.width), written.size
    assert ImageOps.exif_transpose(written).size == upright.size
    print(f"rocket_exif6.jpg: stored {written.size[0]}x{written.size[1]}, "
          f"displayed {upright.width}x{upright.height} (EXIF Orientation=6)")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    make_rocket_exif6(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
