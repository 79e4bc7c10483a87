"""`orca-imaging`: the local stack and the tools around it.

orca-imaging serve            the whole pipeline on loopback (what `make run` runs)
orca-imaging token ...        a bearer token from the local issuer
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from orca_imaging.auth import Role

DEFAULT_STATE_DIR = Path(".orca-local")


def _serve(args: argparse.Namespace) -> int:
    from orca_imaging.local.stack import LocalStack, LocalStackConfig
    from orca_imaging.observability import write_whole_lines

    started = time.monotonic()
    # Every function, pump and the DICOM service log from threads of this one process:
    # Powertools' metrics, printed as a line and then its newline, were cut into.
    write_whole_lines()
    from orca_imaging.local.dicom import LocalDicomService

    stack = LocalStack(
        LocalStackConfig(
            state_dir=args.state_dir,
            api_port=args.port,
            moto_port=args.moto_port,
            services=[LocalDicomService(port=args.dicom_port)],
        )
    ).start()
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    _seed_demo(stack)
    print(f"Orca imaging local stack is up in {time.monotonic() - started:.1f} s", flush=True)
    for name, url in stack.urls():
        print(f"  {name:<22} {url}", flush=True)
    print(
        "  Get a token:           orca-imaging token --role doctor --clinic demo\n"
        "  Stop:                  Ctrl-C",
        flush=True,
    )
    stopping.wait()
    print("stopping...", flush=True)
    stack.stop()
    print("stopped", flush=True)
    return 0


DEMO_CLINIC = "demo"
DEMO_PATIENTS = {
    "pat_1": {"chartNumber": "1001", "familyName": "Demo", "givenName": "Ada", "birthDate": "2012-04-01"},
    "pat_2": {"chartNumber": "1002", "familyName": "Demo", "givenName": "Ben", "birthDate": "2010-09-15"},
}


def _seed_demo(stack: Any) -> None:
    """Two patients in the `demo` clinic, written through the API as the PMS sync would."""
    import requests

    token = stack.token(clinic_id=DEMO_CLINIC, roles=[Role.CLINIC_ADMIN], user_id="usr_demo_sync")
    for patient_id, record in DEMO_PATIENTS.items():
        requests.put(
            f"{stack.api_url}/api/imaging/patients/{patient_id}",
            json=record,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).raise_for_status()


def _token(args: argparse.Namespace) -> int:
    from orca_imaging.local.jwt_issuer import LocalIssuer

    issuer = LocalIssuer(args.state_dir)
    print(issuer.mint(clinic_id=args.clinic, roles=[Role(r) for r in args.role], user_id=args.user))
    return 0


def _upload(args: argparse.Namespace) -> int:
    """Request a target per file, POST the bytes straight to S3, then show each record."""
    import json
    import mimetypes

    import requests
    from tqdm import tqdm

    headers = {"Authorization": f"Bearer {args.token}"}
    api = args.api.rstrip("/")
    uploaded: list[str] = []
    failures = 0
    for path in tqdm(args.paths, unit="file", disable=len(args.paths) < 2, file=sys.stderr):
        data = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body = {
            "fileName": path.name,
            "size": len(data),
            "contentType": content_type,
            "patientId": args.patient,
        }
        response = requests.post(f"{api}/upload", json=body, headers=headers, timeout=30)
        if response.status_code != 201:
            failures += 1
            print(json.dumps({"file": path.name, "error": response.json()}), flush=True)
            continue
        target = response.json()
        posted = requests.post(
            target["url"], data=target["fields"], files={"file": (path.name, data)}, timeout=300
        )
        if posted.status_code >= 300:
            failures += 1
            print(json.dumps({"file": path.name, "error": {"status": posted.status_code}}), flush=True)
            continue
        uploaded.append(target["imageId"])
    for image_id in uploaded:
        record: dict[str, object] = {}
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            record = requests.get(f"{api}/images/{image_id}", headers=headers, timeout=30).json()
            if record.get("status") != "PENDING_UPLOAD":
                break
            time.sleep(0.5)
        record.pop("urls", None)
        print(json.dumps(record), flush=True)
    return 1 if failures else 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from orca_imaging.inspection import expand, inspect_file
    from orca_imaging.limits import PhotoLimits

    limits = PhotoLimits(
        soft_limit_bytes=args.photo_soft_limit or PhotoLimits.soft_limit_bytes,
        hard_limit_bytes=args.photo_hard_limit or PhotoLimits.hard_limit_bytes,
        min_edge_pixels=args.min_photo_edge or PhotoLimits.min_edge_pixels,
    )
    files = list(expand(args.paths))
    rejected = 0
    for path in tqdm(files, unit="file", disable=len(files) < 2, file=sys.stderr):
        report = inspect_file(path, limits=limits)
        rejected += report["outcome"] == "rejected"
        print(json.dumps(report), flush=True)
    print(f"{len(files) - rejected} accepted, {rejected} rejected", file=sys.stderr)
    return 0


def _anonymize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from orca_imaging.deidentify import deidentify
    from orca_imaging.inspection import expand

    files = list(expand([args.source]))
    results = deidentify(tqdm(files, unit="file", disable=len(files) < 2, file=sys.stderr), args.out)
    for result in results:
        if result.problem:
            print(f"{result.source}: {result.problem}", file=sys.stderr)
    written = sum(r.output is not None for r in results)
    print(f"{written} de-identified into {args.out}, {len(results) - written} skipped", file=sys.stderr)
    return 0 if written or not results else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orca-imaging", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="local keys and state")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the embedded local stack until Ctrl-C")
    serve.add_argument("--port", type=int, default=8080, help="API and web port on 127.0.0.1")
    serve.add_argument("--moto-port", type=int, default=5000, help="AWS endpoint port on 127.0.0.1")
    serve.add_argument("--dicom-port", type=int, default=11112, help="DICOM service port on 127.0.0.1")
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="mint a bearer token from the local issuer")
    token.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    token.add_argument("--clinic", required=True)
    token.add_argument("--user", default=None, help="the user id (sub); random if omitted")
    token.set_defaults(run=_token)

    upload = commands.add_parser("upload", help="upload files through the API and print their records")
    upload.add_argument("paths", nargs="+", type=Path)
    upload.add_argument("--patient", required=True, help="the patient id the files belong to")
    upload.add_argument("--token", required=True, help="a bearer token (see `token`)")
    upload.add_argument("--api", default="http://127.0.0.1:8080/api/imaging", help="the API base URL")
    upload.add_argument("--wait", type=float, default=30, help="seconds to wait for each file to be received")
    upload.set_defaults(run=_upload)

    inspect = commands.add_parser("inspect", help="run the processing locally on files or folders (no AWS)")
    inspect.add_argument("paths", nargs="+", type=Path)
    inspect.add_argument(
        "--photo-soft-limit", type=int, help="bytes above which a photo is flagged large_file"
    )
    inspect.add_argument("--photo-hard-limit", type=int, help="bytes above which a photo is rejected")
    inspect.add_argument("--min-photo-edge", type=int, help="shortest photo edge accepted, in pixels")
    inspect.set_defaults(run=_inspect)

    anonymize = commands.add_parser(
        "anonymize", help="de-identified copies of DICOM files (PS3.15 basic profile) for demo and test data"
    )
    anonymize.add_argument("source", type=Path, help="a DICOM file or a folder of them")
    anonymize.add_argument(
        "out", type=Path, help="the folder for the copies, named by their new SOP Instance UID"
    )
    anonymize.set_defaults(run=_anonymize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
