"""The presigned POST pins every condition S3 can enforce (enforcement itself is tested
against a real S3 implementation in the upload API's integration tests)."""

from __future__ import annotations

import base64
import json

import boto3
from botocore.config import Config

from orca_imaging.uploads import UploadPolicy, presigned_post

POLICY = UploadPolicy(
    max_bytes=10**9, ttl_base_seconds=300, min_bytes_per_second=256 * 1024, ttl_max_seconds=43200
)


def test_expiry_grows_with_size_and_is_capped() -> None:
    small, big, huge = (POLICY.expiry_seconds(n) for n in (1_000, 500 * 1024**2, 50 * 1024**3))
    assert small == 300
    assert small < big < huge
    assert huge == 43200


def test_policy_conditions_pin_key_size_type_encryption_and_metadata() -> None:
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(signature_version="s3v4"),
    )
    post = presigned_post(
        s3,
        bucket="b",
        key="clinic/c1/original/img_1",
        size=1234,
        content_type="image/jpeg",
        kms_key_id="key-1",
        metadata={"uploader": "u1"},
        expires_in=600,
    )
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    conditions = policy["conditions"]
    assert ["eq", "$key", "clinic/c1/original/img_1"] in conditions
    assert ["content-length-range", 1234, 1234] in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert {"x-amz-server-side-encryption": "aws:kms"} in conditions
    assert {"x-amz-server-side-encryption-aws-kms-key-id": "key-1"} in conditions
    assert {"x-amz-meta-uploader": "u1"} in conditions
    assert post["fields"]["Content-Type"] == "image/jpeg"
