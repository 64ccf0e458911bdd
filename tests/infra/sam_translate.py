"""Offline, in-process SAM -> CloudFormation translation of template.yaml (no AWS calls, no credentials).

This is what `sam validate` and cfn-lint <= 1.53 do internally: local CodeUri/ContentUri paths become
placeholder s3:// URIs, and the managed-policy lookup (normally an IAM ListPolicies call) is stubbed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

# Stub for samtranslator's ManagedPolicyLoader. SAM looks managed policies up by name: the ones it adds
# itself (basic execution, X-Ray for Tracing: Active, stream/queue pollers) plus any the template names.
MANAGED_POLICIES: dict[str, str] = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSLambdaDynamoDBExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
    "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}

PLACEHOLDER_BUCKET = "s3://placeholder-bucket/"


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template, turning short-form tags (!Ref, !Sub, ...) into Fn:: dicts."""
    document = yaml_parse(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise TypeError(f"{path} is not a YAML mapping")
    return document


@contextmanager
def _region_env(region: str) -> Iterator[None]:
    """samtranslator reads AWS_DEFAULT_REGION in places (ArnGenerator); set it only for the translation."""
    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = saved or region
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AWS_DEFAULT_REGION"]


def translate(
    path: Path,
    region: str = "us-east-1",
    parameter_values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Translate the SAM template at `path` into a plain CloudFormation template (a dict).

    Raises samtranslator.model.exceptions.InvalidDocumentException for invalid SAM.
    """
    sam = copy.deepcopy(load_template(path))
    for resource in sam.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            uri = properties.get(key)
            if isinstance(uri, str) and not uri.startswith("s3://"):
                properties[key] = PLACEHOLDER_BUCKET + uri.strip("./").replace("/", "-")
    with _region_env(region):
        # A session with an explicit region makes no API call; it only names the partition and region.
        translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
        translated: dict[str, Any] = translator.translate(
            sam,
            parameter_values=dict(parameter_values or {}),
            get_managed_policy_map=lambda: MANAGED_POLICIES,
        )
    return translated
