"""The one error hierarchy.

Every error the domain raises is an `OrcaError` with an HTTP status and a stable,
machine-readable `code`. The API maps it to a response once (see `api.error_response`);
the DICOM service maps it to a DIMSE status once. Messages carry ids, never PHI.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OrcaError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadRequestError(OrcaError):
    status = 400
    code = "bad_request"


class RequestValidationError(BadRequestError):
    """A request body or parameter failed validation; `details.fields` names each field."""

    code = "validation_error"


class UnauthorizedError(OrcaError):
    status = 401
    code = "unauthorized"


class ForbiddenError(OrcaError):
    status = 403
    code = "forbidden"


class NotFoundError(OrcaError):
    """Also the answer for another clinic's data: it must not hint that the item exists.

    `subject` (type, id) lets the API audit the attempt; it is never sent to the caller.
    """

    status = 404
    code = "not_found"

    def __init__(self, message: str, *, subject: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class ConflictError(OrcaError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(OrcaError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(OrcaError):
    status = 415
    code = "unsupported_media_type"


class ConfigurationError(OrcaError):
    """Settings are missing or invalid; raised at start so a bad deploy fails loudly."""

    code = "configuration_error"


class DependencyError(OrcaError):
    """An AWS service or other dependency failed; the caller may retry."""

    status = 503
    code = "dependency_unavailable"


class RemoteNodeError(DependencyError):
    """A PACS could not be reached, refused the association, or failed the request."""

    status = 502
    code = "remote_node_failed"


class FileRejectedError(OrcaError):
    """A file failed validation. `reason` is the stable code stored on its record and shown
    in its batch (e.g. `corrupt_image`, `unsupported_format`, `checksum_mismatch`)."""

    status = 422
    code = "file_rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason


class InvalidObjectKeyError(OrcaError):
    """An S3 key outside the layout in `keys`: not ours to process."""

    status = 400
    code = "invalid_object_key"


class SpoolFullError(OrcaError):
    """The DICOM service's spool cannot keep an object (over its limit, or the disk is
    full). The sender is answered 0xA700, Refused: Out of Resources."""

    status = 507
    code = "spool_full"


class SpooledObjectDamagedError(OrcaError):
    """A spooled object whose bytes no longer match the length and CRC-32 counted as they
    arrived: damaged on disk after its device was told Success. Set aside, never sent."""

    status = 500
    code = "spooled_object_damaged"


class RecordFailedError(OrcaError):
    """A queued record's handling raised: SQS delivers it again. Its message is the error's
    type only. When every record of a batch fails, Powertools raises an error quoting each
    record's error whole, and Lambda writes that to its log; an error's message may quote a
    patient's data. The record's own log line (its image id, the error's type and
    traceback) says the rest."""

    code = "record_failed"


class ScheduledRunFailedError(OrcaError):
    """A scheduled function's run raised; its message is the error's type only, for the
    reason `RecordFailedError` gives. The run's log line says the rest."""

    code = "scheduled_run_failed"
