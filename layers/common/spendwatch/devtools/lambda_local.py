"""A local stand-in for the Lambda Invoke API that runs the real handlers in this process.

moto's Lambda cannot run code here (it needs Docker), so `spendwatch verify` is tested against this:
`POST /2015-03-31/functions/{name}/invocations` in Lambda's own wire format (a handler's result as the
JSON body; an exception as `X-Amz-Function-Error: Unhandled` with `errorMessage`/`errorType`; an unknown
function as 404 `ResourceNotFoundException`), so boto3's `lambda.invoke` runs unchanged against it
(`AWS_ENDPOINT_URL_LAMBDA`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from spendwatch.devtools.fake_openai import HttpRequest, HttpResponse, LoopbackService
from spendwatch.devtools.pipeline import FakeLambdaContext

_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
Handler = Callable[[dict[str, Any], Any], Any]


class LocalLambda(LoopbackService):
    """Serves `Invoke` (RequestResponse) for the given functions, one invocation at a time as Lambda would
    per execution environment; `invocations` records (function, event)."""

    def __init__(self, functions: Mapping[str, Handler]) -> None:
        super().__init__()
        self.functions = dict(functions)
        self.invocations: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def handle(self, request: HttpRequest) -> HttpResponse:
        match = _INVOKE.match(request.path)
        if request.method != "POST" or match is None:
            return _error(404, "UnknownOperationException", f"no such operation: {request.method} {request.path}")
        name = match["name"].rsplit(":", 1)[-1]
        handler = self.functions.get(name)
        if handler is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {name}")
        invocation_type = request.headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type != "RequestResponse":
            return _error(
                400, "InvalidParameterValueException", f"only RequestResponse is served, not {invocation_type}"
            )
        try:
            event = json.loads(request.body or b"{}")
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
        with self._lock:
            self.invocations.append((name, event))
            try:
                result = handler(event, FakeLambdaContext(function_name=name, remaining_ms=120_000))
            except Exception as exc:
                body = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": []}
                return HttpResponse(
                    200,
                    json.dumps(body).encode(),
                    headers={"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"},
                )
        return HttpResponse(
            200, json.dumps(result, default=str).encode(), headers={"X-Amz-Executed-Version": "$LATEST"}
        )


def _error(status: int, kind: str, message: str) -> HttpResponse:
    return HttpResponse(
        status, json.dumps({"Type": "User", "message": message}).encode(), headers={"x-amzn-ErrorType": kind}
    )
