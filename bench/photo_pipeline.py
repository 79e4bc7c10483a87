"""Photo pipeline benchmark: ours beside two peers producing the same outputs.

For each input, each implementation runs in a fresh subprocess (so peak RSS is its own):
- ours: `process_photo` (full validation decode, EXIF, three variants, quality, dHash) plus sha256;
- naive Pillow: full decode, orientation, `thumbnail()` per size and a progressive optimised save
  of each variant (150, 800 and full), plus sha256;
- libvips (pyvips, Debian's libvips42): `thumbnail_buffer` with shrink-on-load for 150 and 800,
  an autorotated stripped full-size JPEG, plus sha256.

Inputs: a 24 MP and a 12 MP JPEG made from the corpus's real 18 MP DSLR photo (resampled,
its EXIF kept), the 24 MP one again with EXIF orientation 6 (pixels must turn, so no
lossless full-size copy), and the corpus's real 12 MP iPhone HEIC. Run with `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
RUNS = 5

WORKER = r"""
import hashlib, io, json, resource, statistics, sys, time
from datetime import UTC, datetime
path, method, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()

def ours():
    from orca_imaging.photos import process_photo
    hashlib.sha256(data).hexdigest()
    process_photo(data, datetime.now(UTC))

def naive():
    from PIL import Image, ImageOps
    from pillow_heif import register_heif_opener
    register_heif_opener()
    hashlib.sha256(data).hexdigest()
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    for size in (150, 800, None):
        copy = image.copy()
        if size:
            copy.thumbnail((size, size))
        copy.save(io.BytesIO(), "JPEG", quality=85, progressive=True, optimize=True)

def vips():
    import pyvips
    hashlib.sha256(data).hexdigest()
    for size in (150, 800):
        pyvips.Image.thumbnail_buffer(data, size).jpegsave_buffer(Q=85, strip=True)
    header = pyvips.Image.new_from_buffer(data, "")  # lazy: reads the header only
    turned = header.get_typeof("orientation") and header.get("orientation") != 1
    # Sequential access is libvips's fast path, but a turn reads rows out of order.
    access = "random" if turned else "sequential"
    pyvips.Image.new_from_buffer(data, "", access=access).autorot().jpegsave_buffer(Q=90, strip=True)

fn = {"ours": ours, "naive": naive, "vips": vips}[method]
fn()  # warm: imports and codec set-up are not what is measured
times = []
for _ in range(runs):
    started = time.perf_counter(); fn(); times.append(time.perf_counter() - started)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"median_s": statistics.median(times), "peak_rss_mb": peak_mb}))
"""


def make_inputs(folder: Path) -> dict[str, Path]:
    from PIL import Image

    source = CORPUS / "photos" / "canon_eos1300d_18mp.jpg"
    photo = Image.open(source)
    exif = photo.getexif()
    turned = Image.Exif()
    turned.load(exif.tobytes())
    turned[0x0112] = 6  # how a phone held upright stores its picture: turned a quarter
    inputs = {}
    for label, size, tags in (
        ("24 MP JPEG", (6000, 4000), exif),
        ("24 MP JPEG, EXIF-turned", (6000, 4000), turned),
        ("12 MP JPEG", (4240, 2830), exif),
    ):
        path = folder / f"{len(inputs)}.jpg"
        photo.resize(size, Image.Resampling.LANCZOS).save(path, "JPEG", quality=92, exif=tags.tobytes())
        inputs[label] = path
    inputs["12 MP HEIC (iPhone)"] = CORPUS / "photos" / "iphone13promax.heic"
    return inputs


def measure(path: Path, method: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(path), method, str(RUNS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        # Made in a child process: Linux keeps ru_maxrss across fork+exec, so a parent that
        # had decoded the 24 MP input would hand every worker its own high-water mark.
        listing = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import json, bench.photo_pipeline as b; from pathlib import Path; "
                f"print(json.dumps({{k: str(v) for k, v in b.make_inputs(Path({folder!r})).items()}}))",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        inputs = {label: Path(path) for label, path in json.loads(listing).items()}
        columns = ["input", "ours", "naive Pillow", "libvips", "ours / naive", "ours / libvips"]
        columns += ["ours peak RSS", "naive RSS", "libvips RSS"]
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for label, path in inputs.items():
            ours, naive, vips = (measure(path, m) for m in ("ours", "naive", "vips"))
            cells = [label, *(f"{r['median_s']:.2f} s" for r in (ours, naive, vips))]
            cells += [f"{ours['median_s'] / peer['median_s']:.2f}x" for peer in (naive, vips)]
            cells += [f"{r['peak_rss_mb']:.0f} MB" for r in (ours, naive, vips)]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
