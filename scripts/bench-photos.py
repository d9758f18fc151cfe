"""The benchmark's 8 photos: every picture given (the samples and
scikit-image's rocket photo), as PNG and mirrored + re-encoded as JPEG
(quality 92), so each pixel grid is seen twice and both decoders run.

    python bench-photos.py OUT_DIR PICTURE...

Needs Pillow (the rembg venv has it). Names: STEM.png, STEM-mirror.jpg.
"""
import os
import sys

from PIL import Image, ImageOps

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for path in sys.argv[2:]:
    stem = os.path.splitext(os.path.basename(path))[0]
    img = Image.open(path).convert("RGB")
    img.save(os.path.join(out, f"{stem}.png"))
    ImageOps.mirror(img).save(os.path.join(out, f"{stem}-mirror.jpg"), quality=92)
