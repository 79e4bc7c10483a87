"""DICOM service throughput: dcmtk `storescu` pushing to three receivers, side by side.

- Sets: 200 x 8 MB panoramics (PX, 2900x1400, 16-bit) and 400 CT slices of 512x512, on
  tmpfs, each object its own SOP instance.
- Senders: one `storescu` association with every file, and four at once with a quarter
  each; 128 KB PDUs and TCP_NODELAY on every side.
- Receivers:
  - ours: `services/dicom_scp/main.py` as Fargate runs it, its spool on this machine's disk
    with the fsync on the Success path, and the drainer writing to the local stack's S3
    during the run; besides the senders' time, the time until the last object is in S3.
    moto, standing in for S3 and DynamoDB in this process, yields the cores as the drain
    does (niceness +10): in AWS those services cost the task no CPU;
  - dcmtk `storescp` tuned (`+B`, bit-preserving, no fsync);
  - Orthanc (Debian's), with its own storage on disk.
  Orthanc binds every interface, so everything runs inside a private network namespace
  that holds only loopback (`unshare -n`, as root). Ingest (the consumers) is not running:
  this measures receiving and draining only.
- Rounds: this machine is shared, and one receiver's rate moves by a fifth or more from
  one minute to the next. So every measurement is taken `ROUNDS` times, the three receivers
  in turn (their order rotating), and the table gives medians and ranges; each ratio is the
  median of the ratios within a round, where the receivers met the same machine. Beside
  four senders' scaling, its "mid-run" form: ours' own pace between its 5th and 95th
  percentile store, without each `storescu`'s start and the last senders' finish. Before
  each receiver's run the disk is synced: the peers write without fsync, and what they left
  to be written (and the removal of their folders) would otherwise land in the next run.

Run with `make bench`. Prints the README's table.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STORESCU, STORESCP, ORTHANC = "/usr/bin/storescu", "/usr/bin/storescp", "/usr/sbin/Orthanc"
NODELAY = {**os.environ, "TCP_NODELAY": "1"}
PDU = "131072"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ROUNDS = 5
RECEIVERS = ("ours", "storescp", "orthanc")


def _free_port() -> int:
    from orca_imaging.local.stack import free_port

    return free_port()


def make_sets(folder: Path) -> dict[str, list[Path]]:
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from tests.fixtures.dental_dicom import dental_object

    sets: dict[str, list[Path]] = {}
    for name, count, template in (
        ("PX", 200, dental_object("PX", rows=1400, columns=2900)),
        ("CT", 400, dental_object("CT", rows=512, columns=512)),
    ):
        ds = dcmread(io.BytesIO(template))
        if name == "CT":
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        (folder / name).mkdir()
        sets[name] = []
        for n in range(count):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            sets[name].append(folder / name / f"{n:04d}.dcm")
            ds.save_as(sets[name][-1], enforce_file_format=True)
    return sets


def send(port: int, calling: str, files: list[Path], senders: int) -> float:
    """Seconds until every sender has every file acknowledged."""
    chunks = [files[i::senders] for i in range(senders)]
    command = [STORESCU, "--max-pdu", PDU, "-aet", calling, "-aec", "ORCA", "127.0.0.1", str(port)]
    started = time.perf_counter()
    processes = [
        subprocess.Popen([*command, *map(str, chunk)], env=NODELAY, stderr=subprocess.PIPE)
        for chunk in chunks
    ]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - started


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        command = ["/usr/bin/echoscu", "-aet", "BENCH", "-aec", "ORCA", "127.0.0.1", str(port)]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing answered on {port}")


def ours(stack: Any, files: list[Path], senders: int, disk: Path) -> tuple[float, float, float]:
    """(seconds to acknowledge all, seconds until all are in S3, seconds its middle 90% of
    stores took, scaled to all: see `_middle_seconds`)."""
    from orca_imaging import repository
    from orca_imaging.models import DicomNodeModel
    from tests.integration.test_dicom_service_faults import ServiceProcess, spooled

    calling, clinic = f"B{uuid.uuid4().hex[:10].upper()}", f"bench-{uuid.uuid4().hex[:8]}"
    repository.put_dicom_node(DicomNodeModel(ae_title=calling, clinic_id=clinic))
    spool = disk / f"spool-{clinic}"
    service = ServiceProcess(spool)  # as Fargate runs it, with the stack's settings
    try:
        started = time.perf_counter()
        acknowledged = send(service.dicom_port, calling, files, senders)
        # An object leaves the spool only once S3 has it. Watching the spool, not listing the
        # bucket, keeps the watching off moto, which shares the cores with the run: each
        # listing is a walk over every key in it.
        while spooled(spool):
            time.sleep(0.05)
        in_s3 = time.perf_counter() - started
        s3, bucket = stack.client("s3"), stack.resources.values["originals_bucket"]
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"clinic/{clinic}/original/", MaxKeys=1000)
        if listed.get("KeyCount", 0) != len(files):
            raise AssertionError(f"{listed.get('KeyCount', 0)} of {len(files)} objects in S3")
        # moto keeps objects this size in memory: all rounds of radiographs would be 16 GB.
        keys = [{"Key": o["Key"]} for o in listed["Contents"]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        return acknowledged, in_s3, _middle_seconds(service.log)
    finally:
        service.stop()


def _middle_seconds(log: Path) -> float:
    """The service's own pace once every sender is sending: the seconds from its 5th to its
    95th percentile store (its "object spooled" lines), scaled to all of them. A run's rate
    also holds each `storescu` starting (~20 ms alone, up to ~45 ms four at once on two cores),
    negotiating and the last senders finishing, which weigh more in a four-sender run half
    as long."""
    spooled = [
        datetime.strptime(json.loads(line)["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
        for line in log.read_text().splitlines()
        if '"object spooled"' in line
    ]
    spooled.sort()
    first, last = spooled[len(spooled) // 20], spooled[len(spooled) * 19 // 20]
    return (last - first) / 0.9


def peer(command: list[str], port: int, scratch: Path, files: list[Path], senders: int) -> float:
    """Seconds for a peer receiver, started by `command` on `port`, to take every file."""
    process = subprocess.Popen(command, env=NODELAY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        return send(port, "BENCH", files, senders)
    finally:
        process.terminate()
        process.wait(60)  # Orthanc takes a few seconds to exit
        shutil.rmtree(scratch, ignore_errors=True)


def storescp(files: list[Path], senders: int, disk: Path) -> float:
    port, out = _free_port(), Path(tempfile.mkdtemp(dir=disk))
    command = [STORESCP, "+B", "--max-pdu", PDU, "-aet", "ORCA", "-od", str(out), str(port)]
    return peer(command, port, out, files, senders)


def orthanc(files: list[Path], senders: int, disk: Path) -> float:
    folder = Path(tempfile.mkdtemp(dir=disk))
    port = _free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(folder),
        "IndexDirectory": str(folder),
        "DicomAet": "ORCA",
        "DicomPort": port,
        "HttpPort": _free_port(),
        "Plugins": [],
        "RemoteAccessAllowed": False,
        "MaximumPduLength": int(PDU),
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    return peer([ORTHANC, str(folder / "orthanc.json")], port, folder, files, senders)


def _stand_in_yields_cores(niceness: int = 10) -> None:
    """moto, standing in for S3 and DynamoDB, serves the drain from threads of this process;
    in AWS those services take none of the task's CPU. Its threads are lowered as the drain
    is (the receivers are measured beside the drain's own work, not the stand-in's); this
    thread, which starts the senders and the peers, is not. moto's request threads take
    their creator's priority."""
    from orca_imaging.dicom_task import yield_cores

    yield_cores(niceness, sparing=threading.get_native_id())


def inside() -> None:
    """In the private namespace: every receiver, every set, one sender and four, `ROUNDS` times."""
    from orca_imaging.local.stack import LocalStack, LocalStackConfig

    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(dir="/dev/shm") as shm,
        tempfile.TemporaryDirectory(dir="/var/tmp") as disk,
    ):
        sets = make_sets(Path(shm))
        sizes = {name: sum(p.stat().st_size for p in files) for name, files in sets.items()}
        stack = LocalStack(LocalStackConfig(state_dir=Path(disk) / "state", web_root=None)).start()
        try:
            for pump in stack.pumps:  # receiving and draining only: no ingest competing for the cores
                pump.stop()
            _stand_in_yields_cores()
            # Nor the S3 events ingest would consume: moto sends each to its queue in this
            # process, and walks every message waiting there to do it (it counts them), so
            # they took half of moto's CPU from the run, where AWS spends none of ours.
            stack.client("s3").put_bucket_notification_configuration(
                Bucket=stack.resources.values["originals_bucket"], NotificationConfiguration={}
            )
            for round_ in range(ROUNDS):
                order = RECEIVERS[round_ % 3 :] + RECEIVERS[: round_ % 3]
                for name, files in sets.items():
                    for senders in (1, 4):
                        result = results.setdefault(
                            f"{name}/{senders}", {"files": len(files), "bytes": sizes[name], "rounds": []}
                        )
                        seconds: dict[str, float] = {}
                        for receiver in order:
                            # What the last receiver left to the disk (storescp and Orthanc
                            # write without fsync, and their folders' removal is discarded
                            # on this disk) is written out first, not during the next run.
                            os.sync()
                            if receiver == "ours":
                                seconds["ours"], seconds["ours_s3"], seconds["ours_middle"] = ours(
                                    stack, files, senders, Path(disk)
                                )
                            elif receiver == "storescp":
                                seconds["storescp"] = storescp(files, senders, Path(disk))
                            else:
                                seconds["orthanc"] = orthanc(files, senders, Path(disk))
                        result["rounds"].append(seconds)
                ours_rates = {k: round(r["files"] / r["rounds"][-1]["ours"]) for k, r in results.items()}
                print(f"round {round_ + 1} of {ROUNDS}, ours in files/s: {ours_rates}", file=sys.stderr)
        finally:
            stack.stop()
    print(json.dumps(results))


def _spread(values: list[float], digits: int = 0) -> str:
    """Median, and the range when the rounds differ: '207 (186-232)'."""
    low, middle, high = (f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))
    return middle if low == high else f"{middle} ({low}-{high})"


def table(results: dict[str, Any]) -> str:
    """The README's table: per-round rates, their medians and ranges, ratios within rounds."""
    lines = [
        "| set, senders | ours: acknowledged | ours: last in S3 | dcmtk storescp +B | Orthanc "
        "| ours / storescp | ours / Orthanc | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        name, senders = key.split("/")
        rates = [{k: r["files"] / v for k, v in round_.items()} for round_ in r["rounds"]]
        mb = [r["bytes"] / 1e6 / round_["ours"] for round_ in r["rounds"]]
        target = {"PX": f">= 300 MB/s (here {_spread(mb)})", "CT": ">= 234 files/s"}[name]
        if senders == "4":
            one = results[f"{name}/1"]["rounds"]
            scaling = [o["ours"] / f["ours"] for o, f in zip(one, r["rounds"], strict=True)]
            middle = [o["ours_middle"] / f["ours_middle"] for o, f in zip(one, r["rounds"], strict=True)]
            target += f"; 4 senders >= 1.6x one (here {_spread(scaling, 2)}x; mid-run {_spread(middle, 2)}x)"
        column = {k: _spread([rate[k] for rate in rates]) for k in rates[0]}
        ratio = {k: _spread([rate["ours"] / rate[k] for rate in rates], 2) for k in ("storescp", "orthanc")}
        lines.append(
            f"| {name} x{r['files']}, {senders} | {column['ours']} files/s | {column['ours_s3']} files/s "
            f"| {column['storescp']} files/s | {column['orthanc']} files/s "
            f"| {ratio['storescp']}x | {ratio['orthanc']}x | {target} |"
        )
    return "\n".join(lines)


def main() -> None:
    if "--inside" in sys.argv:
        inside()
        return
    if os.geteuid() != 0 or not all(map(shutil.which, (STORESCU, STORESCP, ORTHANC))):
        print("DICOM service benchmark skipped: needs root (for unshare), dcmtk and Orthanc", file=sys.stderr)
        return
    command = f"ip link set lo up && exec {sys.executable} -m bench.dicom_service --inside"
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", command], stdout=subprocess.PIPE, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    print(f"Medians of {ROUNDS} rounds (range in brackets); ratios are medians of each round's own.")
    print(table(json.loads(done.stdout.strip().splitlines()[-1])))


if __name__ == "__main__":
    main()
