"""An SQS event-source mapping, in process, with Lambda's semantics.

- Receives up to `batch_size` messages and invokes the consumer once with all of them.
- Deletes the messages that succeeded; a `batchItemFailures` entry, or an exception from
  the handler (which fails the whole batch), leaves a message to reappear after the
  queue's visibility timeout.
- After `maxReceiveCount` receives SQS itself moves the message to the dead-letter queue
  (the queue's redrive policy, which moto applies as AWS does).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from orca_imaging.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from orca_imaging.local.lambda_runtime import FunctionHost
    from orca_imaging.resources import FunctionSpec


class SqsPump:
    def __init__(
        self,
        *,
        sqs: SQSClient,
        host: FunctionHost,
        function: FunctionSpec,
        queue_url: str,
        queue_arn: str,
        region: str,
        batch_size: int,
        wait_seconds: int = 1,
    ) -> None:
        self._sqs = sqs
        self._host = host
        self._function = function
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._batch_size = min(batch_size, 10)
        self._wait_seconds = wait_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sqs-pump-{function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep pumping: a failed poll is logged and retried, like the ESM
                logger.exception("sqs pump poll failed", extra={"function": self._function.name})
                self._stop.wait(1)

    def poll_once(self) -> int:
        """One receive-invoke-delete cycle; returns how many messages were received."""
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=self._wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [self._record(dict(m)) for m in messages]}
        try:
            result = self._host.invoke(self._function, event) or {}
        except Exception:
            logger.exception(
                "consumer raised; the whole batch will be retried", extra={"function": self._function.name}
            )
            return len(messages)
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        done: list[Any] = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if m["MessageId"] not in failed
        ]
        if done:
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=done)
        return len(messages)

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue_arn,
            "awsRegion": self._region,
        }
