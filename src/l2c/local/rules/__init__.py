"""What AWS refuses, delays and enforces that moto does not: the local cloud's AWS rules.

moto is the store; these rules are the service's behaviour on top of it. Each rule is a
function registered for one (service, operation) of the control plane, run by the edge
(:mod:`l2c.local.edge`) before moto answers (it may refuse, with AWS's error code and message
shape) or after (it may start a delayed transition, or reshape the answer as AWS shapes it).
Every rule names the AWS behaviour it reproduces and where that behaviour is documented; the
table in docs/aws-rules.md lists them all, and a unit test keeps the two in step.

Rule modules, one per service: :mod:`.sagemaker`, :mod:`.awslambda`, :mod:`.apigateway`,
:mod:`.iam`, :mod:`.s3`. ``python -m l2c.local.rules`` prints the table (``make rules-doc``
writes it into docs/aws-rules.md).
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

RULE_MODULES = ("sagemaker", "transform", "awslambda", "apigateway", "iam", "s3")


@dataclass
class Reply:
    """An HTTP answer of the control plane (moto's, or one a rule gives instead)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def json(self) -> dict:
        return json.loads(self.body or b"{}")

    def with_json(self, document: dict) -> Reply:
        body = json.dumps(document).encode()
        headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        return Reply(self.status, headers + [("Content-Length", str(len(body)))], body)


class AwsError(Exception):
    """A refusal with AWS's error code, HTTP status and message, rendered in the service's protocol."""

    def __init__(self, code: str, message: str, status: int = 400, **members):
        super().__init__(message)
        self.code, self.message, self.status, self.members = code, message, status, members

    def reply(self, protocol: str, service: str) -> Reply:
        request_id = str(uuid.uuid4())
        if protocol == "query":
            body = (
                f'<ErrorResponse xmlns="https://{service}.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
                f"<Code>{_xml(self.code)}</Code><Message>{_xml(self.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            content_type = "text/xml"
        elif protocol == "rest-xml":
            members = "".join(f"<{name}>{_xml(str(value))}</{name}>" for name, value in self.members.items())
            body = (
                f"<Error><Code>{_xml(self.code)}</Code><Message>{_xml(self.message)}</Message>"
                f"{members}<RequestId>{request_id}</RequestId></Error>"
            ).encode()
            content_type = "application/xml"
        elif protocol == "json":
            body = json.dumps({"__type": self.code, "message": self.message, **self.members}).encode()
            content_type = "application/x-amz-json-1.1"
        else:  # rest-json: the code travels in a header (Lambda, API Gateway)
            body = json.dumps({"message": self.message, **self.members}).encode()
            content_type = "application/json"
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", self.code),
        ]
        return Reply(self.status, headers, body)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class Call:
    """One control-plane request, as a rule sees it."""

    service: str  # botocore's service name: "sagemaker", "lambda", "apigateway", "iam", ...
    operation: str  # "CreateEndpoint"
    params: dict  # path parameters, query and body members, by their wire names
    region: str
    account: str
    access_key: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names


@dataclass(frozen=True)
class Rule:
    """One AWS behaviour: where it comes from and what the local cloud does about it."""

    id: str  # "sagemaker.update-rollback"
    service: str
    operations: tuple[str, ...]
    when: str  # "before" or "after"
    source: str  # the doc page, botocore model or issue thread that says AWS does this
    summary: str  # what the local cloud does
    run: Callable
    test: str = ""  # the test that proves it: "tests/integration/test_x.py::test_name"
    # False: the rule judges the path, query and headers only, so the edge leaves the body to
    # moto unread (an S3 upload keeps streaming).
    reads_body: bool = True


class Registry:
    def __init__(self):
        self.rules: list[Rule] = []

    def before(
        self,
        service: str,
        *operations: str,
        id: str,
        source: str,
        summary: str,
        test: str = "",
        reads_body: bool = True,
    ):
        """Register ``fn(call)``: raise AwsError to refuse, or return a Reply to answer instead of moto."""
        return self._register(service, operations, "before", id, source, summary, test, reads_body)

    def after(self, service: str, *operations: str, id: str, source: str, summary: str, test: str = ""):
        """Register ``fn(call, reply) -> Reply | None`` on moto's successful answer (None: keep it)."""
        return self._register(service, operations, "after", id, source, summary, test)

    def _register(self, service, operations, when, id, source, summary, test="", reads_body=True):
        def decorate(fn):
            self.rules.append(Rule(id, service, tuple(operations), when, source, summary, fn, test, reads_body))
            return fn

        return decorate

    def for_call(self, service: str, operation: str, when: str) -> list[Rule]:
        return [r for r in self.rules if r.service == service and operation in r.operations and r.when == when]

    def has_rules_for(self, service: str, operation: str) -> bool:
        """Whether any rule runs for this operation (else the edge leaves the request to moto)."""
        return any(r.service == service and operation in r.operations for r in self.rules)

    def reads_body(self, service: str, operation: str) -> bool:
        """Whether a rule of this operation reads the request's body (the edge then buffers it)."""
        return any(r.reads_body for r in self.rules if r.service == service and operation in r.operations)

    def services(self) -> set[str]:
        return {rule.service for rule in self.rules}


RULES = Registry()


def load_all() -> Registry:
    for name in RULE_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return RULES
