"""Generates test images derived from the scikit-image ones.

Usage: make_images.py <images-dir>   (run by scripts/setup.sh, tools venv)

rocket_exif6.jpg is what a phone held sideways writes: the stored pixels are
rocket.jpg turned 90 degrees counter-clockwise (427x640) and EXIF
Orientation=6 says "rotate 90 clockwise to display". A viewer that honours
EXIF -- browsers, hence Label Studio -- shows the upright 640x427 rocket, so
a backend must apply the tag before inference and report
original_width=640, original_height=427. A backend that ignores the tag sees
a sideways 427x640 image.

phone_1mp.jpg, phone_3mp.jpg and phone_12mp_exif6.jpg stand in for camera
photos (no camera photo ships in a registry package): the scikit-image
photos tiled at twice their size, with sensor-like noise so the files are as
large as a phone's (about 0.3 bytes per pixel), 4:2:0 chroma, quality 90.
The 12 MP one is a portrait photo as a phone stores it: 4000x3000 pixels
with EXIF Orientation=6, displayed 3000x4000.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageOps

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


PHONE_PHOTOS = [
    ("phone_1mp.jpg", 1280, 960, 1),
    ("phone_3mp.jpg", 2048, 1536, 1),
    ("phone_12mp_exif6.jpg", 4000, 3000, ROTATE_90_CW_TO_DISPLAY),
]
NOISE_SIGMA = 8


def tiled(images: Path, width: int, height: int) -> Image.Image:
    sources = sorted(images.glob("*.png")) + [images / "rocket.jpg"]
    photos = [Image.open(p).convert("RGB") for p in sources if not p.name.startswith("phone_")]
    canvas = Image.new("RGB", (width, height))
    y = index = 0
    while y < height:
        x = row = 0
        while x < width:
            photo = photos[index % len(photos)]
            index += 1
            tile = photo.resize((photo.width * 2, photo.height * 2), Image.Resampling.BICUBIC)
            canvas.paste(tile, (x, y))
            x += tile.width
            row = max(row, tile.height)
        y += row
    noise = Image.effect_noise((width, height), NOISE_SIGMA).convert("RGB")
    return ImageChops.add(canvas, noise, scale=1.0, offset=-128)


def make_phone_photos(images: Path) -> None:
    for name, width, height, orientation in PHONE_PHOTOS:
        photo = tiled(images, width, height)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        target = images / name
        partial = target.with_suffix(".partial.jpg")
        photo.save(partial, "JPEG", quality=90, subsampling="4:2:0", exif=exif)
        partial.replace(target)
        print(f"{name}: {width}x{height}, {target.stat().st_size} bytes, "
              f"EXIF Orientation={orientation}")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    make_rocket_exif6(Path(sys.argv[1]))
    make_phone_photos(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
