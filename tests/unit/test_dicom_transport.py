"""The file head a streamed C-STORE is written behind (`dicom_transport.file_head`)."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from orca_imaging.dicom_transport import file_head


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        (CTImageStorage, "1.2.826.0.1.3680043.8.498.12345678901234567890", ExplicitVRLittleEndian),
        (CTImageStorage, "1.2.826.0.1.3680043.8.498.1234567890123456789", ImplicitVRLittleEndian),
        ("1.2.840.10008.5.1.4.1.1.1.1", "2.25.1", JPEG2000Lossless),  # odd lengths: padded
        ("1.2.840.10008.5.1.4.1.1.1.1", "1." + "2" * 62, ExplicitVRLittleEndian),  # the longest
    ],
)
def test_the_file_head_is_pynetdicoms_byte_for_byte(sop_class: str, sop_instance: str, syntax: str) -> None:
    meta = create_file_meta(
        sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_instance), transfer_syntax=UID(syntax)
    )
    assert file_head(sop_class, sop_instance, syntax) == b"\0" * 128 + b"DICM" + encode_file_meta(meta)


def test_pydicom_reads_the_file_head_back() -> None:
    read = dcmread(io.BytesIO(file_head(CTImageStorage, "2.25.7", ExplicitVRLittleEndian)))
    assert read.file_meta.MediaStorageSOPInstanceUID == "2.25.7"
    assert read.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_a_uid_that_is_not_ascii_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        file_head(CTImageStorage, "1.2.3\u00e9", ExplicitVRLittleEndian)
