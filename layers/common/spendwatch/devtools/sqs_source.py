"""A local stand-in for Lambda's SQS event source mapping (the poller's poll queue).

Receives messages over the real SQS API (moto's server), shapes them exactly as Lambda delivers them
(`messageId`, `receiptHandle`, `body`, `attributes`, `eventSource: aws:sqs`, `eventSourceARN`), invokes the
handler with the template's `BatchSize`, honours `ReportBatchItemFailures` (failed messages become visible
again; the others are deleted), and after the queue's `maxReceiveCount` receives moves a message to the
dead-letter queue, as SQS's redrive policy does. The visibility timeout is not waited out: a failed
message is made visible again at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class QueueStats:
    invocations: int = 0
    succeeded: int = 0
    retried: int = 0
    failed_invocations: int = 0
    dead_lettered: list[dict[str, Any]] = field(default_factory=list)


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One received SQS message in the shape of a Lambda SQS event record."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsEventSource:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        dead_letter_url: str,
        *,
        batch_size: int,
        max_receive_count: int,
        region: str = "us-east-1",
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url
        self._batch_size = batch_size
        self._max_receives = max_receive_count
        self._region = region
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    @classmethod
    def from_template(cls, sqs: Any, template: dict[str, Any], queue_id: str, dead_letter_id: str) -> SqsEventSource:
        """Create both queues and read the mapping's batch size and the queue's redrive count from the template."""
        resources = template["Resources"]
        redrive = resources[queue_id]["Properties"]["RedrivePolicy"]
        arn = ({"Fn::GetAtt": [queue_id, "Arn"]}, {"Fn::GetAtt": f"{queue_id}.Arn"})
        mapping = next(
            r["Properties"]
            for r in resources.values()
            if r.get("Type") == "AWS::Lambda::EventSourceMapping"
            and r["Properties"].get("EventSourceArn") in arn  # `!GetAtt X.Arn` loads as "X.Arn" or [X, Arn]
        )
        queue_url = sqs.create_queue(QueueName=queue_id)["QueueUrl"]
        dead_letter_url = sqs.create_queue(QueueName=dead_letter_id)["QueueUrl"]
        return cls(
            sqs,
            queue_url,
            dead_letter_url,
            batch_size=int(mapping.get("BatchSize", 10)),
            max_receive_count=int(redrive["maxReceiveCount"]),
        )

    def drain(self, handler: Handler, context: Any) -> QueueStats:
        """Deliver every message until the queue is empty (failed ones are retried, then dead-lettered)."""
        stats = QueueStats()
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self._batch_size,
                MessageSystemAttributeNames=["All"],
                VisibilityTimeout=60,
            ).get("Messages", [])
            if not messages:
                return stats
            event = {"Records": [lambda_record(m, self.queue_arn, self._region) for m in messages]}
            stats.invocations += 1
            try:
                response = handler(event, context) or {}
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            except Exception:  # a function error returns the whole batch to the queue
                stats.failed_invocations += 1
                failed = {m["MessageId"] for m in messages}
            for message in messages:
                self._settle(message, message["MessageId"] in failed, stats)

    def _settle(self, message: dict[str, Any], failed: bool, stats: QueueStats) -> None:
        handle = message["ReceiptHandle"]
        if not failed:
            stats.succeeded += 1
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
        elif int(message["Attributes"]["ApproximateReceiveCount"]) >= self._max_receives:
            stats.dead_lettered.append({"messageId": message["MessageId"], "body": message["Body"]})
            self._sqs.send_message(QueueUrl=self.dead_letter_url, MessageBody=message["Body"])
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
        else:
            stats.retried += 1
            self._sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)

    def dead_letters(self) -> list[str]:
        messages = self._sqs.receive_message(QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10).get("Messages", [])
        return [m["Body"] for m in messages]
