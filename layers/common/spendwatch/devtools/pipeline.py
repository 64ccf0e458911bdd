"""The whole pipeline on one machine: local AWS APIs, the real handlers, and the stream between them.

`LocalPipeline` starts moto's server (SSM, SQS and, unless DynamoDB Local is given, DynamoDB with
Streams), creates the tables from `template.yaml`, stores the config and secrets in SSM as a deployment
would, and invokes the unmodified Lambda handlers with Lambda-shaped events. `make demo` and the
integration tests both drive it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from spendwatch.core.config import SpendwatchConfig, canonical_config_text, load_document
from spendwatch.core.snapshot import isoformat_utc
from spendwatch.devtools.aws_local import (
    FAKE_CREDENTIALS,
    DynamoDBLocal,
    MotoServer,
    create_tables_from_template,
    load_template,
    stream_mapping_settings,
)
from spendwatch.devtools.sqs_source import QueueStats, SqsEventSource
from spendwatch.devtools.stream import DeliveryStats, StreamPump

CONFIG_PARAMETER = "/spendwatch/config"


def repo_root() -> Path:
    """The checkout holding template.yaml (the package is installed editable from it)."""
    for candidate in (Path.cwd(), *Path(__file__).resolve().parents):
        if (candidate / "template.yaml").is_file() and (candidate / "functions").is_dir():
            return candidate
    raise FileNotFoundError("template.yaml not found: run from the spendwatch checkout")


@dataclass
class FakeLambdaContext:
    """The attributes Powertools and our handlers read from a Lambda context."""

    function_name: str = "spendwatch-local"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:spendwatch-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_handler(root: Path, function: str) -> ModuleType:
    """Import `functions/<function>/handler.py` under a unique name (both files are called handler.py)."""
    path = root / "functions" / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"spendwatch_local_{function}_{uuid.uuid4().hex[:8]}", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clear_parameter_caches() -> None:
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    parameters.clear_caches()  # type: ignore[no-untyped-call]
    # Providers keep a boto3 client bound to the endpoint they were created with.
    parameters.base.DEFAULT_PROVIDERS.clear()  # type: ignore[attr-defined]
    from spendwatch.aws import runtime  # noqa: PLC0415

    runtime._config_provider = None  # the config source's own provider and its cache (one per container)


def scheduled_event(root: Path, poll_time: datetime) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((root / "events" / "schedule.json").read_text(encoding="utf-8"))
    event["time"] = isoformat_utc(poll_time)
    event["id"] = str(uuid.uuid4())
    return event


class LocalPipeline:
    def __init__(self, *, dynamodb_local_jar: Path | None = None, root: Path | None = None) -> None:
        self.root = root or repo_root()
        self.template = load_template(self.root / "template.yaml")
        self._jar = dynamodb_local_jar
        self.moto = MotoServer()
        self.dynamodb_local: DynamoDBLocal | None = None
        self.tables: dict[str, str] = {}
        self.dlq_url = ""
        self._saved_env: dict[str, str | None] = {}
        self.pump: StreamPump | None = None
        self.poller: ModuleType | None = None
        self.alerter: ModuleType | None = None
        self.poll_queue: SqsEventSource | None = None
        self.watchdog: ModuleType | None = None
        self.digest: ModuleType | None = None

    @property
    def dynamodb_kind(self) -> str:
        return "DynamoDB Local" if self.dynamodb_local else "moto server"

    @property
    def dynamodb_endpoint(self) -> str:
        return self.dynamodb_local.endpoint_url if self.dynamodb_local else self.moto.endpoint_url

    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def start(self) -> LocalPipeline:
        self.moto.start()
        if self._jar is not None:
            self.dynamodb_local = DynamoDBLocal(self._jar).start()
        self._set_env(
            {
                **FAKE_CREDENTIALS,
                "AWS_ENDPOINT_URL": self.moto.endpoint_url,
                "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.dynamodb_endpoint,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_NAMESPACE": "Spendwatch",
                "POWERTOOLS_SERVICE_NAME": "spendwatch",
            }
        )
        self.reset()
        return self

    def reset(self) -> None:
        """Fresh tables, queue, parameters and handler modules (the servers keep running)."""
        self.moto.reset()
        clear_parameter_caches()
        dynamodb = boto3.client("dynamodb")
        for name in dynamodb.list_tables().get("TableNames", []):
            dynamodb.delete_table(TableName=name)
        self.tables = create_tables_from_template(dynamodb, self.template)
        self.dlq_url = boto3.client("sqs").create_queue(QueueName="AlerterDeadLetterQueue")["QueueUrl"]
        self._set_env(
            {
                "SNAPSHOTS_TABLE": self.tables["SnapshotsTable"],
                "ALERT_STATE_TABLE": self.tables["AlertStateTable"],
                "SPENDWATCH_CONFIG_PARAMETER": CONFIG_PARAMETER,
            }
        )
        stream_arn = dynamodb.describe_table(TableName=self.tables["SnapshotsTable"])["Table"]["LatestStreamArn"]
        sqs = boto3.client("sqs")
        self.pump = StreamPump.from_template_settings(
            boto3.client("dynamodbstreams"),
            stream_arn,
            stream_mapping_settings(self.template),
            on_failure=lambda description: sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(description)),
        )
        self.poller = load_handler(self.root, "poller")
        self.alerter = load_handler(self.root, "alerter")
        self.watchdog = load_handler(self.root, "watchdog")
        self.digest = load_handler(self.root, "digest")

    def configure(self, config_text: str, secrets: Mapping[str, str], environ: Mapping[str, str] = {}) -> None:
        """Store the config and the secrets in SSM, as `spendwatch config push` and the deploy guide do.

        The config is stored in the canonical JSON form `config push` writes, so the handlers read it the
        way they do when deployed (without a YAML parser).
        """
        ssm = boto3.client("ssm")
        canonical = canonical_config_text(load_document(config_text, "pipeline config"))
        ssm.put_parameter(Name=CONFIG_PARAMETER, Value=canonical, Type="String", Overwrite=True)
        for name, value in secrets.items():
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
        self._set_env(dict(environ))
        clear_parameter_caches()

    def poll(self, poll_time: datetime, context: FakeLambdaContext | None = None) -> Any:
        assert self.poller is not None
        return self.poller.lambda_handler(scheduled_event(self.root, poll_time), context or FakeLambdaContext())

    def poll_all(self, poll_time: datetime, context: FakeLambdaContext | None = None) -> QueueStats:
        """The deployed poll: the Scheduled Event queues one poll per organization (`POLL_QUEUE_URL` set),
        then the poll queue is drained into the same handler as Lambda's SQS event source would.

        `poll()` stays the single-invocation path (no queue): the handler module used here is a separate
        instance whose app was built with the queue URL.
        """
        source = SqsEventSource.from_template(
            boto3.client("sqs"), self.template, "PollRequestsQueue", "PollRequestsDeadLetterQueue"
        )
        os.environ["POLL_QUEUE_URL"] = source.queue_url
        try:
            poller = load_handler(self.root, "poller")
            poller.app()  # built now, so it keeps the queue URL
        finally:
            os.environ.pop("POLL_QUEUE_URL", None)
        self.poll_queue = source
        poller.lambda_handler(scheduled_event(self.root, poll_time), context or FakeLambdaContext())
        return source.drain(poller.lambda_handler, context or FakeLambdaContext())

    def deliver(self, context: FakeLambdaContext | None = None) -> DeliveryStats:
        assert self.pump is not None and self.alerter is not None
        return self.pump.deliver(self.alerter.lambda_handler, context or FakeLambdaContext())

    def run_watchdog(self, moment: datetime, context: FakeLambdaContext | None = None) -> Any:
        """Invoke the watchdog handler with a scheduled event for `moment` (its notion of "now")."""
        assert self.watchdog is not None
        return self.watchdog.lambda_handler(scheduled_event(self.root, moment), context or FakeLambdaContext())

    def run_digest(self, moment: datetime, context: FakeLambdaContext | None = None) -> Any:
        """Invoke the digest handler with a scheduled event for `moment` (which digests are due)."""
        assert self.digest is not None
        return self.digest.lambda_handler(scheduled_event(self.root, moment), context or FakeLambdaContext())

    def dead_letters(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        messages = sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def stop(self) -> None:
        if self.dynamodb_local is not None:
            self.dynamodb_local.stop()
        self.moto.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        clear_parameter_caches()

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def config_text(config: SpendwatchConfig) -> str:
    """A validated config as the canonical JSON text `spendwatch config push` stores."""
    return canonical_config_text(config.model_dump(mode="json", exclude_none=True))


@contextmanager
def running(pipeline: LocalPipeline) -> Iterator[LocalPipeline]:
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()
