"""Powertools Logger, Tracer and Metrics, shared by every entry point.

Logs carry ids (clinic, image, batch, correlation), never names, birth dates or DICOM
identifiers. Metric names and dimensions are fixed strings: never put an id in a name.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "orca-imaging"
METRICS_NAMESPACE = "Orca/Imaging"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

# A read-only request publishes no metric; that is expected, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")
