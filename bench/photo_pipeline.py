"""Photo pipeline benchmark: ours beside two peers producing the same outputs.

For each input, each implementation runs in a fresh subprocess (so peak RSS is its own):
- ours: `process_photo` (full validation decode, EXIF, three variants, quality, dHash) plus sha256;
- naive Pillow: full decode, orientation, conversion to sRGB through an embedded profile,
  `thumbnail()` per size and a progressive optimised save of each variant (150, 800 and full),
  plus sha256;
- libvips (pyvips, Debian's libvips42): `thumbnail_buffer` with shrink-on-load for 150 and 800,
  an autorotated stripped full-size JPEG, both exported to sRGB, plus sha256.

The same outputs: every variant upright, sRGB, without metadata. Each implementation's last
800 px preview is kept, and the table gives how far each peer's is from ours (mean absolute
difference, in levels of 255): a peer that skipped a step (a turn, a colour conversion)
was 5.5 levels off on the iPhone HEIC without its colour conversion (measured), and a turn
skipped would be tens of levels off.

Inputs: a 24 MP and a 12 MP JPEG made from the corpus's real 18 MP DSLR photo (resampled,
its EXIF kept), the 24 MP one again with EXIF orientation 6 (pixels must turn, so no
lossless full-size copy), and the corpus's real 12 MP iPhone HEIC. Run with `make bench`.

Rounds: this machine is shared and a peer's own time moved by up to a fifth between runs,
so each input is measured `ROUNDS` times, the three implementations in turn (their order
rotating). The table gives the median time with its range, and each ratio as the median
of the ratios within a round, where the three met the same machine; peak RSS is the
highest of the rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
RUNS = 5
ROUNDS = 3

WORKER = r"""
import hashlib, io, json, resource, statistics, sys, time
from datetime import UTC, datetime
path, method, runs, preview_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = open(path, "rb").read()

def ours():
    from orca_imaging.photos import process_photo
    hashlib.sha256(data).hexdigest()
    photo = process_photo(data, datetime.now(UTC))
    return next(v.data for v in photo.variants if v.name == "preview.jpg")

def naive():
    from PIL import Image, ImageCms, ImageOps
    from pillow_heif import register_heif_opener
    register_heif_opener()
    hashlib.sha256(data).hexdigest()
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    if image.info.get("icc_profile"):
        source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        image = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"))
    outputs = {}
    for size in (150, 800, None):
        copy = image.copy()
        if size:
            copy.thumbnail((size, size))
        out = io.BytesIO()
        copy.save(out, "JPEG", quality=85, progressive=True, optimize=True)
        outputs[size] = out.getvalue()
    return outputs[800]

def vips():
    import pyvips
    hashlib.sha256(data).hexdigest()
    outputs = {}
    for size in (150, 800):
        small = pyvips.Image.thumbnail_buffer(data, size, export_profile="srgb")
        outputs[size] = small.jpegsave_buffer(Q=85, strip=True)
    header = pyvips.Image.new_from_buffer(data, "")  # lazy: reads the header only
    turned = header.get_typeof("orientation") and header.get("orientation") != 1
    # Sequential access is libvips's fast path, but a turn reads rows out of order.
    access = "random" if turned else "sequential"
    full = pyvips.Image.new_from_buffer(data, "", access=access).autorot()
    if full.get_typeof("icc-profile-data"):
        full = full.icc_transform("srgb")
    full.jpegsave_buffer(Q=90, strip=True)
    return outputs[800]

fn = {"ours": ours, "naive": naive, "vips": vips}[method]
fn()  # warm: imports and codec set-up are not what is measured
times = []
for _ in range(runs):
    started = time.perf_counter(); preview = fn(); times.append(time.perf_counter() - started)
open(preview_path, "wb").write(preview)
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


def measure(path: Path, method: str, preview: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(path), method, str(RUNS), str(preview)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def difference(peer: Path, ours: Path) -> float:
    """Mean absolute difference of two previews, in levels of 255 (sizes may differ by a
    pixel's rounding: the peer's is resampled to ours)."""
    import numpy as np
    from PIL import Image

    reference = Image.open(ours).convert("RGB")
    other = Image.open(peer).convert("RGB").resize(reference.size)
    return float(np.abs(np.asarray(other, np.int16) - np.asarray(reference, np.int16)).mean())


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
        columns += ["ours peak RSS", "naive RSS", "libvips RSS", "preview vs ours: naive, libvips"]
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        methods = ("ours", "naive", "vips")
        for label, path in inputs.items():
            previews = {m: Path(folder) / f"{path.stem}-{m}.jpg" for m in methods}
            rounds: list[dict[str, dict[str, float]]] = []
            for round_ in range(ROUNDS):
                order = methods[round_ % 3 :] + methods[: round_ % 3]
                rounds.append({m: measure(path, m, previews[m]) for m in order})
            times = {m: [r[m]["median_s"] for r in rounds] for m in methods}
            cells = [label, *(_spread(times[m], "{:.2f}", " s") for m in methods)]
            cells += [
                _spread([o / p for o, p in zip(times["ours"], times[peer], strict=True)], "{:.2f}", "x")
                for peer in ("naive", "vips")
            ]
            cells += [f"{max(r[m]['peak_rss_mb'] for r in rounds):.0f} MB" for m in methods]
            off = [difference(previews[m], previews["ours"]) for m in ("naive", "vips")]
            cells.append(", ".join(f"{d:.1f}" for d in off))
            print("| " + " | ".join(cells) + " |")


def _spread(values: list[float], shown: str, unit: str) -> str:
    """Median, and the range when the rounds differ: '0.51x (0.49-0.55)'."""
    low, middle, high = (shown.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{middle}{unit}" if low == high else f"{middle}{unit} ({low}-{high})"


if __name__ == "__main__":
    main()
