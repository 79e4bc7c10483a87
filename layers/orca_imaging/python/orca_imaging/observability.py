"""Powertools Logger and Metrics, shared by every entry point.

Logs carry ids (clinic, image, batch, correlation), never names, birth dates or DICOM
identifiers. Metric names and dimensions are fixed strings: never put an id in a name.

Traces come from Lambda's active tracing (set on every function in CDK), and each log line
carries its `xray_trace_id`. There is no X-Ray SDK tracer: the SDK is in maintenance mode,
and at import it builds a botocore X-Ray client, about 170 ms of every cold start.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics

SERVICE = "orca-imaging"
METRICS_NAMESPACE = "Orca/Imaging"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

# A read-only request publishes no metric; that is expected, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")
