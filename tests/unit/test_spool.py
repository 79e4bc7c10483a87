"""The DICOM spool and drainer: durable before Success, nothing lost while S3 is down,
a restart drains what the last run acknowledged, a full spool refuses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from orca_imaging.drainer import Drainer
from orca_imaging.errors import SpoolFullError
from orca_imaging.keys import original_key
from orca_imaging.spool import Arrival, Spool

if TYPE_CHECKING:
    from pathlib import Path

BUCKET = "originals-test"


def arrival(n: int) -> Arrival:
    return Arrival(
        clinic_id="clinic-a",
        image_id=f"img_{n:04d}",
        calling_ae="PANO1",
        source_address="10.0.0.5",
        received_at="2026-11-22T10:00:00+00:00",
        sop_instance_uid=f"1.2.3.{n}",
    )


class FlakyS3:
    """S3 that is unreachable for the first `failures` writes."""

    def __init__(self, s3: Any, failures: int) -> None:
        self.s3, self.failures = s3, failures

    def put_object(self, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise EndpointConnectionError(endpoint_url="https://s3")
        return self.s3.put_object(**kwargs)


def test_an_object_is_ready_only_once_whole_and_a_restart_clears_partial_writes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spooled = spool.put(b"DICM-bytes", arrival(1))
    assert spooled.path.read_bytes() == b"DICM-bytes"
    (tmp_path / "incoming" / "img_9999.partial").write_bytes(b"half")  # a write that died
    again = Spool(tmp_path, max_bytes=10_000)  # the next task
    assert [s.arrival for s in again.waiting()] == [arrival(1)]
    assert list((tmp_path / "incoming").iterdir()) == []


def test_a_full_spool_refuses_rather_than_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=15)
    spool.put(b"0123456789", arrival(1))
    with pytest.raises(SpoolFullError):
        spool.put(b"0123456789", arrival(2))
    assert [s.arrival.image_id for s in spool.waiting()] == ["img_0001"]


@mock_aws
def test_nothing_is_lost_while_s3_is_down_and_everything_arrives_once_it_is_back(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(3):
        spool.put(f"object-{n}".encode(), arrival(n))
    drainer = Drainer(spool, FlakyS3(s3, failures=2), bucket=BUCKET, kms_key_id=None)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(EndpointConnectionError):
            drainer.drain_once()
        assert len(list(spool.waiting())) == 3  # still all there
    assert drainer.drain_once() == 3
    assert list(spool.waiting()) == []
    for n in range(3):
        stored = s3.get_object(Bucket=BUCKET, Key=original_key("clinic-a", f"img_{n:04d}"))
        assert stored["Body"].read() == f"object-{n}".encode()
        assert stored["Metadata"]["calling-ae"] == "PANO1" and stored["Metadata"]["source"] == "dicom_scp"


@mock_aws
def test_a_retry_after_a_lost_answer_never_replaces_the_original(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=original_key("clinic-a", "img_0001"), Body=b"first")
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.put(b"second", arrival(1))
    assert Drainer(spool, s3, bucket=BUCKET, kms_key_id=None).drain_once() == 1
    assert s3.get_object(Bucket=BUCKET, Key=original_key("clinic-a", "img_0001"))["Body"].read() == b"first"
