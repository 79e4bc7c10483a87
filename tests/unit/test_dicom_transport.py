"""What the DICOM service packs itself rather than through pydicom datasets: the file head a
streamed C-STORE is written behind (`file_head`) and the C-STORE response (`store_response`)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom import AE, _config, evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta
from pynetdicom.pdu_primitives import P_DATA

from orca_imaging.dicom_transport import _WaitingDimse, file_head, store_response


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


def _store_response(status: int, sop_class: str | None, sop_instance: str | None) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = sop_class
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Status = status
    return primitive


def _pynetdicoms_command(primitive: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    (pdata,) = message.encode_msg(1, 0)
    ((_, fragment),) = pdata.presentation_data_value_list
    assert fragment[:1] == b"\x03"  # a command's last fragment
    return bytes(fragment[1:])


@pytest.mark.parametrize(
    ("status", "sop_class", "sop_instance"),
    [
        (0x0000, CTImageStorage, "1.2.826.0.1.3680043.8.498.12345678901234567890"),  # even lengths
        (0x0000, "1.2.840.10008.5.1.4.1.1.1.1", "2.25.1"),  # odd lengths: padded
        (0xA700, CTImageStorage, "1." + "2" * 62),  # out of resources, the longest UID
        (0xC000, None, None),  # cannot understand, with neither UID given
        (0x0110, CTImageStorage, None),
    ],
)
def test_the_store_response_is_pynetdicoms_byte_for_byte(
    status: int, sop_class: str | None, sop_instance: str | None
) -> None:
    primitive = _store_response(status, sop_class, sop_instance)
    assert store_response(primitive) == _pynetdicoms_command(primitive)


def test_pydicom_reads_the_store_response_back() -> None:
    command = store_response(_store_response(0xA700, CTImageStorage, "2.25.7"))
    assert command is not None
    read = read_dataset(io.BytesIO(command), is_implicit_VR=True, is_little_endian=True)
    assert read.CommandGroupLength == len(command) - 12
    assert (read.CommandField, read.MessageIDBeingRespondedTo, read.Status) == (0x8001, 7, 0xA700)
    assert (read.AffectedSOPClassUID, read.AffectedSOPInstanceUID) == (CTImageStorage, "2.25.7")


def test_a_response_with_more_than_the_usual_fields_is_left_to_pynetdicom() -> None:
    commented = _store_response(0xC000, CTImageStorage, "2.25.7")
    commented.ErrorComment = "dataset does not match its SOP class"  # type: ignore[assignment]  # typed as None
    assert store_response(commented) is None


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Association, list[tuple[int, bytes]]]]:
    """An acceptor's association as the service has it (its DIMSE provider, and none of
    pynetdicom's logging handlers), keeping the PDVs it sends."""
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "none")
    association = Association(AE(), MODE_ACCEPTOR)
    association.dimse.__class__ = _WaitingDimse
    pdvs: list[tuple[int, bytes]] = []

    def send_pdu(pdata: P_DATA) -> None:
        pdvs.extend(pdata.presentation_data_value_list)

    monkeypatch.setattr(association.dul, "send_pdu", send_pdu)
    yield association, pdvs
    association.dul.kill_dul()


def test_a_store_response_goes_out_packed_in_one_pdv(
    sent: tuple[Association, list[tuple[int, bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    association, pdvs = sent
    primitive = _store_response(0x0000, CTImageStorage, "2.25.7")
    expected = _pynetdicoms_command(primitive)

    def not_pynetdicoms(*_: Any) -> None:
        raise AssertionError("encoded through pynetdicom's message")

    monkeypatch.setattr(C_STORE_RSP, "encode_msg", not_pynetdicoms)
    association.dimse.send_msg(primitive, 3)
    assert pdvs == [(3, b"\x03" + expected)]


def test_a_handler_watching_sent_messages_gets_pynetdicoms_message(
    sent: tuple[Association, list[tuple[int, bytes]]],
) -> None:
    association, pdvs = sent
    watched: list[Any] = []
    association.bind(evt.EVT_DIMSE_SENT, lambda event: watched.append(event.message))
    primitive = _store_response(0x0000, CTImageStorage, "2.25.7")
    association.dimse.send_msg(primitive, 3)
    assert [message.command_set.AffectedSOPInstanceUID for message in watched] == ["2.25.7"]
    assert pdvs == [(3, b"\x03" + _pynetdicoms_command(primitive))]
