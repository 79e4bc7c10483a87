"""DICOM ingest: the consumer for DICOM originals and the DICOM API routes (issue 5)."""
