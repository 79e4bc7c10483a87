"""DynamoDB items, through PynamoDB. Every item is partitioned by clinic.

The CDK tables and the local stack's tables are both built from these models'
own schema (`resources.table_schema`), and `tests/infra` checks the synthesized template
against them, so keys and indexes cannot drift.

Secondary-index keys that must stay within one clinic are composed as `{clinicId}#{...}`:
a query on them can never return another clinic's items.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model


class FileType(StrEnum):
    PHOTO = "PHOTO"
    XRAY = "XRAY"
    SCAN_3D = "SCAN_3D"
    VIDEO = "VIDEO"
    DOCUMENT = "DOCUMENT"


class ImageCategory(StrEnum):
    EXTRAORAL = "EXTRAORAL"
    INTRAORAL = "INTRAORAL"
    PANORAMIC = "PANORAMIC"
    CEPHALOMETRIC = "CEPHALOMETRIC"
    PERIAPICAL = "PERIAPICAL"
    BITEWING = "BITEWING"
    CBCT = "CBCT"
    SCAN_UPPER = "SCAN_UPPER"
    SCAN_LOWER = "SCAN_LOWER"
    SCAN_BITE = "SCAN_BITE"
    OTHER = "OTHER"


class ImageStatus(StrEnum):
    """The spec's four statuses plus the three the pipeline needs before ACTIVE."""

    PENDING_UPLOAD = "PENDING_UPLOAD"
    PROCESSING = "PROCESSING"
    PENDING_MATCH = "PENDING_MATCH"
    REJECTED = "REJECTED"
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"
    DELETED = "DELETED"


class UploadSource(StrEnum):
    DSLR = "DSLR"
    MOBILE = "mobile"
    FOLDER_IMPORT = "folder_import"
    MIGRATION = "migration"
    INTRAORAL_CAMERA = "intraoral_camera"
    DICOM_NETWORK = "dicom_network"
    PACS = "pacs"
    ITERO = "itero"


def utcnow() -> datetime:
    return datetime.now(UTC)


def scoped(clinic_id: str, value: str) -> str:
    """A secondary-index key confined to one clinic."""
    return f"{clinic_id}#{value}"


class ByPatientIndex(GlobalSecondaryIndex["ImageModel"]):
    class Meta:
        index_name = "byPatient"
        projection = AllProjection()

    patient_key = UnicodeAttribute(hash_key=True, attr_name="patientKey")
    captured_at_key = UnicodeAttribute(range_key=True, attr_name="capturedAtKey")


class BySha256Index(GlobalSecondaryIndex["ImageModel"]):
    class Meta:
        index_name = "bySha256"
        projection = KeysOnlyProjection()

    sha_key = UnicodeAttribute(hash_key=True, attr_name="shaKey")
    image_id = UnicodeAttribute(range_key=True, attr_name="imageId")


class BySopInstanceIndex(GlobalSecondaryIndex["ImageModel"]):
    class Meta:
        index_name = "bySopInstance"
        projection = KeysOnlyProjection()

    sop_key = UnicodeAttribute(hash_key=True, attr_name="sopKey")
    image_id = UnicodeAttribute(range_key=True, attr_name="imageId")


class ByStudyIndex(GlobalSecondaryIndex["ImageModel"]):
    class Meta:
        index_name = "byStudy"
        projection = KeysOnlyProjection()

    study_key = UnicodeAttribute(hash_key=True, attr_name="studyKey")
    image_id = UnicodeAttribute(range_key=True, attr_name="imageId")


class OpenSeriesIndex(GlobalSecondaryIndex["ImageModel"]):
    """Sparse, across clinics: only CBCT volumes still waiting for slices carry the key, so
    the scheduled sweep finds the quiet ones without scanning. Read by the system only."""

    class Meta:
        index_name = "openSeries"
        projection = KeysOnlyProjection()

    series_open_key = UnicodeAttribute(hash_key=True, attr_name="seriesOpenKey")
    last_slice_at_key = UnicodeAttribute(range_key=True, attr_name="lastSliceAtKey")


class ByStatusIndex(GlobalSecondaryIndex["ImageModel"]):
    class Meta:
        index_name = "byStatus"
        projection = KeysOnlyProjection()

    status_key = UnicodeAttribute(hash_key=True, attr_name="statusKey")
    updated_at_key = UnicodeAttribute(range_key=True, attr_name="updatedAtKey")


class ByBatchIndex(GlobalSecondaryIndex["ImageModel"]):
    class Meta:
        index_name = "byBatch"
        projection = AllProjection()

    batch_key = UnicodeAttribute(hash_key=True, attr_name="batchKey")
    image_id = UnicodeAttribute(range_key=True, attr_name="imageId")


class ExifSummary(MapAttribute[str, Any]):
    make = UnicodeAttribute(null=True)
    model = UnicodeAttribute(null=True)
    lens = UnicodeAttribute(null=True)
    focal_length = NumberAttribute(null=True, attr_name="focalLength")
    aperture = NumberAttribute(null=True)
    shutter_speed = UnicodeAttribute(null=True, attr_name="shutterSpeed")
    iso = NumberAttribute(null=True)
    orientation = NumberAttribute(null=True)


class ImageModel(Model):
    """One file in a patient's record: a photo, an X-ray, a 3D scan, a video or a document."""

    class Meta:
        table_name = "unbound-images"

    # Identification
    clinic_id = UnicodeAttribute(hash_key=True, attr_name="clinicId")
    image_id = UnicodeAttribute(range_key=True, attr_name="imageId")
    patient_id = UnicodeAttribute(null=True, attr_name="patientId")
    image_number = UnicodeAttribute(null=True, attr_name="imageNumber")
    filename = UnicodeAttribute(null=True)  # the uploader's name for it; never used in a key
    file_type = UnicodeAttribute(attr_name="fileType")
    category = UnicodeAttribute(null=True)
    subcategory = UnicodeAttribute(null=True)

    # Storage
    # None only for a CBCT volume record: its originals are its slices.
    storage_key = UnicodeAttribute(null=True, attr_name="storageKey")
    object_version = UnicodeAttribute(null=True, attr_name="objectVersion")
    multipart_upload_id = UnicodeAttribute(null=True, attr_name="multipartUploadId")
    thumbnail_key = UnicodeAttribute(null=True, attr_name="thumbnailKey")
    preview_key = UnicodeAttribute(null=True, attr_name="previewKey")
    variant_keys = MapAttribute[str, str](null=True, attr_name="variantKeys")
    declared_size = NumberAttribute(null=True, attr_name="declaredSize")
    original_size = NumberAttribute(null=True, attr_name="originalSize")
    mime_type = UnicodeAttribute(null=True, attr_name="mimeType")
    declared_mime_type = UnicodeAttribute(null=True, attr_name="declaredMimeType")
    sha256 = UnicodeAttribute(null=True)
    declared_sha256 = UnicodeAttribute(null=True, attr_name="declaredSha256")

    # Image properties
    width = NumberAttribute(null=True)
    height = NumberAttribute(null=True)
    color_space = UnicodeAttribute(null=True, attr_name="colorSpace")
    bit_depth = NumberAttribute(null=True, attr_name="bitDepth")

    # Capture
    captured_at = UTCDateTimeAttribute(null=True, attr_name="capturedAt")
    captured_at_source = UnicodeAttribute(null=True, attr_name="capturedAtSource")
    captured_by = UnicodeAttribute(null=True, attr_name="capturedBy")
    device_type = UnicodeAttribute(null=True, attr_name="deviceType")
    device_name = UnicodeAttribute(null=True, attr_name="deviceName")
    source = UnicodeAttribute(null=True)

    # EXIF / metadata (the table is encrypted with the customer key)
    metadata = JSONAttribute(null=True)
    exif = ExifSummary(null=True)

    # DICOM
    dicom_data = JSONAttribute(null=True, attr_name="dicomData")
    modality = UnicodeAttribute(null=True)
    study_uid = UnicodeAttribute(null=True, attr_name="studyId")
    series_uid = UnicodeAttribute(null=True, attr_name="seriesId")
    instance_uid = UnicodeAttribute(null=True, attr_name="instanceId")
    modality_code = UnicodeAttribute(null=True, attr_name="modalityCode")  # OPG, CEPH, CBCT, PA, BW
    # Patient, UIDs, acquisition, equipment, geometry, calibration, transfer syntax.
    dicom_summary = JSONAttribute(null=True, attr_name="dicomSummary")
    radiation_dose = JSONAttribute(null=True, attr_name="radiationDose")  # doses with units, exposure
    preview_unavailable = UnicodeAttribute(null=True, attr_name="previewUnavailable")
    # CBCT: a volume record's summary and its slices ("imageId|position|instance", as they
    # came); a slice's volume. See `cbct`.
    volume = JSONAttribute(null=True)
    volume_slices = ListAttribute[str](null=True, attr_name="volumeSlices")
    volume_id = UnicodeAttribute(null=True, attr_name="volumeId")
    expected_slices = NumberAttribute(null=True, attr_name="expectedSlices")
    series_open_key = UnicodeAttribute(null=True, attr_name="seriesOpenKey")
    last_slice_at_key = UnicodeAttribute(null=True, attr_name="lastSliceAtKey")
    # PENDING_MATCH: scored registry patients, [{"patientId", "score"}], best first.
    match_candidates = JSONAttribute(null=True, attr_name="matchCandidates")
    match_verified_by = UnicodeAttribute(null=True, attr_name="matchVerifiedBy")  # a user id
    matched_at = UTCDateTimeAttribute(null=True, attr_name="matchedAt")

    # Protocol / treatment links
    protocol_id = UnicodeAttribute(null=True, attr_name="protocolId")
    protocol_session_id = UnicodeAttribute(null=True, attr_name="protocolSessionId")
    protocol_slot = UnicodeAttribute(null=True, attr_name="protocolSlot")
    treatment_id = UnicodeAttribute(null=True, attr_name="treatmentId")
    milestone_id = UnicodeAttribute(null=True, attr_name="milestoneId")
    appointment_id = UnicodeAttribute(null=True, attr_name="appointmentId")
    batch_id = UnicodeAttribute(null=True, attr_name="batchId")

    # Quality and duplicates
    quality_score = NumberAttribute(null=True, attr_name="qualityScore")
    quality_notes = ListAttribute[str](null=True, attr_name="qualityNotes")
    needs_retake = BooleanAttribute(default=False, attr_name="needsRetake")
    duplicate_of = UnicodeAttribute(null=True, attr_name="duplicateOf")
    perceptual_hash = UnicodeAttribute(null=True, attr_name="perceptualHash")
    possible_duplicate_of = UnicodeAttribute(null=True, attr_name="possibleDuplicateOf")

    # Status
    status = UnicodeAttribute()
    is_archived = BooleanAttribute(default=False, attr_name="isArchived")
    reject_code = UnicodeAttribute(null=True, attr_name="rejectCode")
    reject_message = UnicodeAttribute(null=True, attr_name="rejectMessage")
    warnings = ListAttribute[str](null=True)

    # Timestamps and audit fields
    created_at = UTCDateTimeAttribute(default=utcnow, attr_name="createdAt")
    updated_at = UTCDateTimeAttribute(default=utcnow, attr_name="updatedAt")
    upload_expires_at = UTCDateTimeAttribute(null=True, attr_name="uploadExpiresAt")
    received_at = UTCDateTimeAttribute(null=True, attr_name="receivedAt")
    deleted_at = UTCDateTimeAttribute(null=True, attr_name="deletedAt")
    created_by = UnicodeAttribute(null=True, attr_name="createdBy")
    updated_by = UnicodeAttribute(null=True, attr_name="updatedBy")
    version = VersionAttribute()

    # Secondary-index keys (derived; kept current by `refresh_index_keys`)
    patient_key = UnicodeAttribute(null=True, attr_name="patientKey")
    captured_at_key = UnicodeAttribute(null=True, attr_name="capturedAtKey")
    sha_key = UnicodeAttribute(null=True, attr_name="shaKey")
    sop_key = UnicodeAttribute(null=True, attr_name="sopKey")
    study_key = UnicodeAttribute(null=True, attr_name="studyKey")
    status_key = UnicodeAttribute(null=True, attr_name="statusKey")
    updated_at_key = UnicodeAttribute(null=True, attr_name="updatedAtKey")
    batch_key = UnicodeAttribute(null=True, attr_name="batchKey")

    by_patient = ByPatientIndex()
    by_sha256 = BySha256Index()
    by_sop_instance = BySopInstanceIndex()
    by_study = ByStudyIndex()
    open_series = OpenSeriesIndex()
    by_status = ByStatusIndex()
    by_batch = ByBatchIndex()

    def refresh_index_keys(self) -> None:
        """Recompute every clinic-scoped index key from the fields it is made of."""
        clinic = self.clinic_id
        when = self.captured_at or self.created_at
        self.patient_key = scoped(clinic, self.patient_id) if self.patient_id else None
        self.captured_at_key = when.isoformat() if self.patient_id else None
        self.sha_key = scoped(clinic, self.sha256) if self.sha256 else None
        self.sop_key = scoped(clinic, self.instance_uid) if self.instance_uid else None
        self.study_key = scoped(clinic, self.study_uid) if self.study_uid else None
        self.status_key = scoped(clinic, self.status)
        self.updated_at_key = self.updated_at.isoformat()
        self.batch_key = scoped(clinic, self.batch_id) if self.batch_id else None


class BySubjectIndex(GlobalSecondaryIndex["AuditEventModel"]):
    class Meta:
        index_name = "bySubject"
        projection = AllProjection()

    subject_key = UnicodeAttribute(hash_key=True, attr_name="subjectKey")
    event_id = UnicodeAttribute(range_key=True, attr_name="eventId")


class AuditEventModel(Model):
    """Who did what to which item, when. Ids only: details never hold PHI."""

    class Meta:
        table_name = "unbound-audit"

    clinic_id = UnicodeAttribute(hash_key=True, attr_name="clinicId")
    # `{ISO time}#{id}`: sorts by time within a clinic.
    event_id = UnicodeAttribute(range_key=True, attr_name="eventId")
    action = UnicodeAttribute()
    actor = UnicodeAttribute()
    subject_type = UnicodeAttribute(attr_name="subjectType")
    subject_id = UnicodeAttribute(attr_name="subjectId")
    subject_key = UnicodeAttribute(attr_name="subjectKey")
    at = UTCDateTimeAttribute(default=utcnow)
    correlation_id = UnicodeAttribute(null=True, attr_name="correlationId")
    details = JSONAttribute(null=True)

    by_subject = BySubjectIndex()


class ByChartIndex(GlobalSecondaryIndex["PatientModel"]):
    class Meta:
        index_name = "byChart"
        projection = AllProjection()

    chart_key = UnicodeAttribute(hash_key=True, attr_name="chartKey")
    patient_id = UnicodeAttribute(range_key=True, attr_name="patientId")


class PatientModel(Model):
    """The clinic's patient registry, replicated from the practice-management system.

    Used to scope patient routes to the clinic and, later, to match files to patients.
    Names and birth dates are PHI: they stay in this KMS-encrypted table and never in a
    log, a key or an error message.
    """

    class Meta:
        table_name = "unbound-patients"

    clinic_id = UnicodeAttribute(hash_key=True, attr_name="clinicId")
    patient_id = UnicodeAttribute(range_key=True, attr_name="patientId")
    chart_number = UnicodeAttribute(null=True, attr_name="chartNumber")
    family_name = UnicodeAttribute(null=True, attr_name="familyName")
    given_name = UnicodeAttribute(null=True, attr_name="givenName")
    birth_date = UnicodeAttribute(null=True, attr_name="birthDate")  # YYYY-MM-DD
    sex = UnicodeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(default=utcnow, attr_name="updatedAt")
    chart_key = UnicodeAttribute(null=True, attr_name="chartKey")

    by_chart = ByChartIndex()


class BatchStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    CANCELLED = "CANCELLED"


class BatchModel(Model):
    """An upload batch: its counters are the single truth the state machine waits on.

    The consumers add to `succeededCount`/`failedCount` in the same transaction that moves
    a file to its final state, so a redelivered event can never count twice.
    """

    class Meta:
        table_name = "unbound-batches"

    clinic_id = UnicodeAttribute(hash_key=True, attr_name="clinicId")
    batch_id = UnicodeAttribute(range_key=True, attr_name="batchId")
    batch_number = UnicodeAttribute(attr_name="batchNumber")
    status = UnicodeAttribute()
    source = UnicodeAttribute()
    kind = UnicodeAttribute()  # upload, dicom_import, 3d_import
    patient_id = UnicodeAttribute(null=True, attr_name="patientId")
    protocol_session_id = UnicodeAttribute(null=True, attr_name="protocolSessionId")
    total_files = NumberAttribute(attr_name="totalFiles")
    succeeded_count = NumberAttribute(default=0, attr_name="succeededCount")
    failed_count = NumberAttribute(default=0, attr_name="failedCount")
    upload_deadline = UTCDateTimeAttribute(attr_name="uploadDeadline")
    execution_arn = UnicodeAttribute(null=True, attr_name="executionArn")
    created_by = UnicodeAttribute(attr_name="createdBy")
    created_at = UTCDateTimeAttribute(default=utcnow, attr_name="createdAt")
    updated_at = UTCDateTimeAttribute(default=utcnow, attr_name="updatedAt")
    started_at = UTCDateTimeAttribute(null=True, attr_name="startedAt")
    # Written by the state machine as Step Functions' ISO time, hence a string.
    completed_at = UnicodeAttribute(null=True, attr_name="completedAt")
    cancelled_at = UTCDateTimeAttribute(null=True, attr_name="cancelledAt")


class ClinicSettingsModel(Model):
    """What a clinic's admin configures for imaging intake."""

    class Meta:
        table_name = "unbound-clinics"

    clinic_id = UnicodeAttribute(hash_key=True, attr_name="clinicId")
    # e.g. "{chart}_{slot}": how folder-import file names name the patient (see `matching`).
    filename_pattern = UnicodeAttribute(null=True, attr_name="filenamePattern")
    # Photo limits (see `limits.PhotoLimits`); unset means the system's default.
    photo_soft_limit_bytes = NumberAttribute(null=True, attr_name="photoSoftLimitBytes")
    photo_hard_limit_bytes = NumberAttribute(null=True, attr_name="photoHardLimitBytes")
    min_photo_edge_pixels = NumberAttribute(null=True, attr_name="minPhotoEdgePixels")
    # Which DICOM objects link to a patient without a person: "exact" (chart number and
    # birth date agree; the default) or "never" (every one is verified by hand).
    dicom_auto_link = UnicodeAttribute(null=True, attr_name="dicomAutoLink")
    # The clinic's own category rules, tried before the defaults (see `dicom.CATEGORY_RULES`).
    dicom_category_rules = JSONAttribute(null=True, attr_name="dicomCategoryRules")
    updated_at = UTCDateTimeAttribute(default=utcnow, attr_name="updatedAt")
    updated_by = UnicodeAttribute(null=True, attr_name="updatedBy")


class DicomNodeModel(Model):
    """A device allowed to push DICOM: its calling AE title (unique in the deployment), the
    clinic its objects belong to, and optionally the network it must call from. A node with
    a host and port is also a PACS the clinic can query and retrieve from (`pacs.py`)."""

    class Meta:
        table_name = "unbound-dicom-nodes"

    ae_title = UnicodeAttribute(hash_key=True, attr_name="aeTitle")
    clinic_id = UnicodeAttribute(attr_name="clinicId")
    cidr = UnicodeAttribute(null=True)
    host = UnicodeAttribute(null=True)
    port = NumberAttribute(null=True)
    description = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(default=utcnow, attr_name="createdAt")
    created_by = UnicodeAttribute(null=True, attr_name="createdBy")


class WorklistEntryModel(Model):
    """A scheduled imaging step, as the Modality Worklist SCP offers it to the clinic's
    devices. The patient's identity is copied from the registry when it is scheduled, so a
    device's C-FIND reads one table. Sorted by when it is scheduled: `scheduledKey` is
    YYYYMMDDHHMMSS#entryId, so a day's list is one range query."""

    class Meta:
        table_name = "unbound-worklist"

    clinic_id = UnicodeAttribute(hash_key=True, attr_name="clinicId")
    scheduled_key = UnicodeAttribute(range_key=True, attr_name="scheduledKey")
    entry_id = UnicodeAttribute(attr_name="entryId")
    patient_id = UnicodeAttribute(attr_name="patientId")
    chart_number = UnicodeAttribute(null=True, attr_name="chartNumber")
    family_name = UnicodeAttribute(null=True, attr_name="familyName")
    given_name = UnicodeAttribute(null=True, attr_name="givenName")
    birth_date = UnicodeAttribute(null=True, attr_name="birthDate")  # YYYY-MM-DD
    sex = UnicodeAttribute(null=True)
    accession_number = UnicodeAttribute(attr_name="accessionNumber")
    station_ae = UnicodeAttribute(null=True, attr_name="stationAeTitle")
    modality = UnicodeAttribute()
    procedure_description = UnicodeAttribute(null=True, attr_name="procedureDescription")
    created_at = UTCDateTimeAttribute(default=utcnow, attr_name="createdAt")
    created_by = UnicodeAttribute(null=True, attr_name="createdBy")


class PacsRetrieveModel(Model):
    """A retrieve from a clinic's PACS, run by the pacs_retrieve consumer: a study can take
    longer than an API request may (`pacs.py`). QUEUED, then RUNNING, then COMPLETED with
    the PACS's sub-operation counts, or FAILED with the reason."""

    class Meta:
        table_name = "unbound-pacs-retrieves"

    clinic_id = UnicodeAttribute(hash_key=True, attr_name="clinicId")
    retrieve_id = UnicodeAttribute(range_key=True, attr_name="retrieveId")
    node = UnicodeAttribute()  # the PACS's AE title
    study_instance_uid = UnicodeAttribute(attr_name="studyInstanceUid")
    series_instance_uid = UnicodeAttribute(null=True, attr_name="seriesInstanceUid")
    method = UnicodeAttribute()  # move | get
    status = UnicodeAttribute()
    completed = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    warning = NumberAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    correlation_id = UnicodeAttribute(null=True, attr_name="correlationId")
    created_at = UTCDateTimeAttribute(default=utcnow, attr_name="createdAt")
    created_by = UnicodeAttribute(null=True, attr_name="createdBy")
    updated_at = UTCDateTimeAttribute(default=utcnow, attr_name="updatedAt")


# Every table the system has, by the settings field that names it.
TABLE_MODELS: dict[str, type[Model]] = {
    "images_table": ImageModel,
    "audit_table": AuditEventModel,
    "patients_table": PatientModel,
    "batches_table": BatchModel,
    "clinics_table": ClinicSettingsModel,
    "dicom_nodes_table": DicomNodeModel,
    "worklist_table": WorklistEntryModel,
    "pacs_retrieves_table": PacsRetrieveModel,
}
