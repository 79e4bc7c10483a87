"""DICOM ingest benchmark: the preview beside Orthanc and dcmtk, and a CBCT series beside
the straightforward whole-volume path.

1. Metadata plus an 800 px preview of an 8 MB panoramic (2900x1400, 16-bit):
   - ours: `read_dicom` + `describe` + `render_preview`, in process;
   - Orthanc (Debian's): `GET /instances/{id}/rendered?width=800`, `Accept: image/jpeg`,
     over one keep-alive HTTP session, the file stored in Orthanc beforehand;
   - dcmtk: `dcmj2pnm +Sxv 800 +oj`, one process per run.
   Orthanc binds every interface, so this part runs in a private network namespace that
   holds only loopback (`unshare -n`, as root).
2. A 400-slice 512x512 CBCT: each slice ingested (read, described, previewed) and the volume
   built, in a fresh process (peak RSS its own):
   - ours: slice by slice (`volumes.PlaneBuilder`);
   - peer: the straightforward path, every slice stacked into one array, then the planes.

Run with `make bench`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def preview_part() -> dict[str, float]:
    """Runs inside the private namespace: the three preview paths on one file."""
    import requests

    from orca_imaging import dicom
    from tests.fixtures.dental_dicom import dental_object

    data = dental_object("PX", rows=1400, columns=2900)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pano.dcm"
        path.write_bytes(data)

        def ours() -> None:
            dataset = dicom.read_dicom(data)
            dicom.describe(dataset)
            dicom.render_preview(data, dataset)

        ours()
        ours_times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            ours()
            ours_times.append(time.perf_counter() - started)

        out = Path(folder) / "out.jpg"
        dcmtk_times = []
        for _ in range(RUNS // 2):
            started = time.perf_counter()
            subprocess.run(["dcmj2pnm", "+Sxv", "800", "+oj", str(path), str(out)], check=True)
            dcmtk_times.append(time.perf_counter() - started)

        port = _free_port()
        storage = Path(folder) / "orthanc"
        config = Path(folder) / "orthanc.json"
        config.write_text(
            json.dumps(
                {
                    "StorageDirectory": str(storage),
                    "IndexDirectory": str(storage),
                    "HttpPort": port,
                    "DicomServerEnabled": False,
                    "RemoteAccessAllowed": False,
                    "AuthenticationEnabled": False,
                    "Plugins": [],
                }
            )
        )
        orthanc = subprocess.Popen(
            ["Orthanc", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        try:
            session = requests.Session()
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    session.get(f"{base}/system", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            instance = session.post(f"{base}/instances", data=data, timeout=30).json()["ID"]
            url = f"{base}/instances/{instance}/rendered?width=800"
            session.get(url, headers={"Accept": "image/jpeg"}, timeout=30)
            orthanc_times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                response = session.get(url, headers={"Accept": "image/jpeg"}, timeout=30)
                orthanc_times.append(time.perf_counter() - started)
                assert response.content.startswith(b"\xff\xd8")
        finally:
            orthanc.terminate()
            orthanc.wait(10)
    return {
        "ours": _median_ms(ours_times),
        "orthanc": _median_ms(orthanc_times),
        "dcmtk": _median_ms(dcmtk_times),
        "mb": len(data) / 1e6,
    }


CBCT_WORKER = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy as np
from orca_imaging import dicom, volumes
from tests.fixtures.dental_dicom import cbct_slices
method, slices, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
storage = Path(tempfile.mkdtemp())  # stands in for the originals bucket


def ingest(index, data):
    dataset = dicom.read_dicom(data)
    dicom.describe(dataset)
    dicom.render_preview(data, dataset)
    (storage / str(index)).write_bytes(data)
    return volumes.placement(dataset)


started = time.perf_counter()
if method == "ours":
    # As the pipeline does: each slice ingested as it arrives, only its placement kept; the
    # volume then built by reading the slices back one at a time, in spatial order.
    placed = {str(index): ingest(index, data) for index, data in cbct_slices(slices, size)}
    ordered = volumes.order(placed)
    builder = volumes.PlaneBuilder(len(ordered.keys))
    for position, key in enumerate(ordered.keys):
        values, _ = volumes.slice_values((storage / key).read_bytes())
        builder.add(position, values)
    builder.pictures(None)
else:
    # Straightforward: every slice decoded and kept, the volume stacked, the planes cut.
    kept = []
    for index, data in cbct_slices(slices, size):
        kept.append((ingest(index, data).position, volumes.slice_values(data)[0]))
    kept.sort(key=lambda item: item[0])
    volume = np.stack([values for _, values in kept])
    planes = [volume[len(volume) // 2], volume[:, size // 2, :], volume[:, :, size // 2], volume.max(axis=1)]
elapsed = time.perf_counter() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_mb}))
"""


def cbct_part(slices: int = 400, size: int = 512) -> dict[str, dict[str, float]]:
    results = {}
    for method in ("ours", "stacked"):
        done = subprocess.run(
            [sys.executable, "-c", CBCT_WORKER, method, str(slices), str(size)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    if "--preview-inside" in sys.argv:
        print(json.dumps(preview_part()))
        return
    preview: dict[str, float] | None = None
    if os.geteuid() == 0 and shutil.which("Orthanc") and shutil.which("dcmj2pnm"):
        inside = f"ip link set lo up && exec {sys.executable} -m bench.dicom_ingest --preview-inside"
        done = subprocess.run(["unshare", "-n", "sh", "-c", inside], capture_output=True, text=True, cwd=ROOT)
        if done.returncode == 0:
            preview = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            print(done.stderr[-2000:], file=sys.stderr)
    print("| measurement | ours | Orthanc | dcmtk | ours / Orthanc | ours / dcmtk | target |")
    print("|---|---|---|---|---|---|---|")
    if preview:
        print(
            f"| metadata + 800 px preview, {preview['mb']:.1f} MB PX | {preview['ours']:.0f} ms "
            f"| {preview['orthanc']:.0f} ms | {preview['dcmtk']:.0f} ms "
            f"| {preview['ours'] / preview['orthanc']:.2f}x | {preview['ours'] / preview['dcmtk']:.2f}x "
            f"| <= Orthanc: {'met' if preview['ours'] <= preview['orthanc'] else '**not met**'} |"
        )
    else:
        print("| metadata + 800 px preview | skipped: needs root, Orthanc and dcmtk | | | | | |")
    cbct = cbct_part()
    print()
    print("| 400 x 512x512 CBCT | ours (slice by slice) | stacked volume | ours / stacked |")
    print("|---|---|---|---|")
    print(
        f"| ingest + volume build | {cbct['ours']['seconds']:.1f} s | {cbct['stacked']['seconds']:.1f} s "
        f"| {cbct['ours']['seconds'] / cbct['stacked']['seconds']:.2f}x |"
    )
    print(
        f"| peak RSS | {cbct['ours']['peak_rss_mb']:.0f} MB | {cbct['stacked']['peak_rss_mb']:.0f} MB "
        f"| {cbct['ours']['peak_rss_mb'] / cbct['stacked']['peak_rss_mb']:.2f}x |"
    )


if __name__ == "__main__":
    main()
