"""The embedded local stack: the whole pipeline on one machine, on loopback.

moto stands in for S3, SQS, DynamoDB, Step Functions, EventBridge and KMS; the real
handlers serve the API and consume the queues in process. Resources come from
`orca_imaging.resources`, the same list the CDK app deploys.
"""
