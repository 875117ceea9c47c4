#!/usr/bin/env python3
"""Cuts the sample photos of Public/samples from scikit-image's bundled data (CI never runs this).

Regenerate with:
    pip install scikit-image Pillow
    python3 Tools/samples/make_samples.py

Each photo is centre-cropped to a square and resized to 224 px (bicubic), then saved as JPEG
(quality 85) or, for the gray camera picture, PNG — so the folder exercises both decoders.
Every source is public domain or CC0 (see the docstrings in skimage/data/_fetchers.py);
LICENSE.md beside the photos lists them for people, samples.json for the server (GET /v1/samples).
The folder stays well under 1 MB.
"""
import json
import os

from PIL import Image
from skimage import data

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Public", "samples")
SIZE = 224

# (file, skimage loader, subject, credit and licence as scikit-image documents them)
SOURCES = [
    ("astronaut.jpg", data.astronaut, "Astronaut Eileen Collins", "NASA; no known copyright restrictions, public domain"),
    ("cat.jpg", data.chelsea, "Chelsea the cat", "Stéfan van der Walt; CC0"),
    ("coffee.jpg", data.coffee, "A cup of coffee", "Rachel Michetti; CC0"),
    ("rocket.jpg", data.rocket, "Falcon 9 rocket", "SpaceX; released into the public domain"),
    ("hubble.jpg", data.hubble_deep_field, "Hubble eXtreme Deep Field", "NASA; public domain"),
    ("retina.jpg", data.retina, "Fundus photograph of a normal left eye", "Mikael Häggström; CC0 1.0"),
    ("brick.jpg", data.brick, "Brick wall texture (gray)", "CC0Textures (Bricks25); CC0"),
    ("camera.png", data.camera, "Cameraman (gray)", "Lav Varshney; CC0"),
]


def square(img):
    w, h = img.size
    s = min(w, h)
    return img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((SIZE, SIZE), Image.BICUBIC)


def main():
    os.makedirs(OUT, exist_ok=True)
    rows, manifest = [], []
    for name, load, subject, credit in SOURCES:
        img = square(Image.fromarray(load()))
        path = os.path.join(OUT, name)
        if name.endswith(".png"):
            img.save(path, optimize=True)
        else:
            img.save(path, quality=85, optimize=True)
        rows.append(f"| `{name}` | {subject} | skimage.data.{load.__name__} | {credit} |")
        manifest.append({"file": name, "subject": subject, "source": f"skimage.data.{load.__name__}", "licence": credit})
    with open(os.path.join(OUT, "samples.json"), "w") as f:
        json.dump({"samples": manifest}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(OUT, "LICENSE.md"), "w") as f:
        f.write("# Sample photos\n\n"
                f"Cut by `Tools/samples/make_samples.py` from scikit-image's bundled data: centre square, {SIZE} px.\n"
                "Every source is public domain or CC0, as scikit-image documents it; the cut versions here are\n"
                "offered under the same terms (CC0 1.0 where a licence is needed).\n\n"
                "| file | subject | source | credit and licence |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    assert total < 1_000_000, total
    print(f"wrote {len(rows)} photos, {total / 1024:.0f} KiB, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
