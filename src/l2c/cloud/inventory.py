"""Everything l2c has in an account and region, found by listing every service it deploys to.

``status()`` shows it (`l2c status`); destroy uses it to prove that nothing is left. A
resource counts as l2c's when it carries an ``l2c:`` tag, or when its name can only be l2c's:
a role under ``/l2c/``, an object in the ``l2c-<account>-<region>`` bucket, a log group of an
``l2c-`` function or endpoint (Lambda and SageMaker create those themselves, untagged), or a
SageMaker resource named like a deploy names them (a deploy interrupted before tagging leaves those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from l2c.cloud import apigateway, functions, iam, s3, sagemaker, tags
from l2c.cloud.session import AUTO, CloudSession, connect

_VERSIONED_NAME = re.compile(r"^l2c-(?P<stack>[a-z][a-z0-9-]*?)-[0-9a-f]{12}(-[0-9a-f]{6})?$")
_TRANSFORM_JOB_NAME = re.compile(r"^l2c-(?P<stack>[a-z][a-z0-9-]*?)-[0-9]{14}-[0-9a-f]{6}$")
_LOG_GROUP = re.compile(r"^/aws/(lambda|sagemaker/Endpoints)/l2c-(?P<stack>[a-z][a-z0-9-]*)$")


@dataclass(frozen=True)
class Resource:
    service: str
    kind: str
    name: str
    stack: str | None  # None: shared by every stack
    detail: str = ""

    def __str__(self) -> str:
        owner = self.stack or "shared"
        return f"{self.service} {self.kind} {self.name} [{owner}]" + (f" ({self.detail})" if self.detail else "")


def inventory(session: CloudSession, stack: str | None = None) -> list[Resource]:
    """Every l2c resource, or only one stack's (shared ones excluded then)."""
    found = [
        *_s3(session),
        *_iam(session),
        *_sagemaker(session),
        *_transform_jobs(session),
        *_autoscaling(session),
        *_lambda(session),
        *_logs(session),
        *_api_gateway(session),
    ]
    if stack is not None:
        found = [resource for resource in found if resource.stack == stack]
    return found


def stacks(resources: list[Resource]) -> list[str]:
    return sorted({resource.stack for resource in resources if resource.stack})


@dataclass
class Status:
    """What `l2c status` shows: every l2c resource of the account and region, by stack."""

    region: str
    target: str
    resources: list[Resource]
    # The local cloud's inference runtime, as GET /_l2c/runtime reports it (None on AWS).
    runtime: dict | None = None

    @property
    def stacks(self) -> list[str]:
        return stacks(self.resources)

    def of(self, stack: str | None) -> list[Resource]:
        return [resource for resource in self.resources if resource.stack == stack]

    @property
    def billing(self) -> list[Resource]:
        """Running endpoints: what costs money by the hour."""
        return [r for r in self.resources if r.kind == "endpoint" and "billed hourly" in r.detail]


def status(session: CloudSession | None = None, target: str = AUTO) -> Status:
    session = session or connect(target)
    runtime = local_runtime(session) if session.is_local else None
    return Status(session.region, session.target, inventory(session), runtime)


def local_runtime(session: CloudSession) -> dict | None:
    """How the local cloud's inference runtime fares (crashes, restarts), or None if this cloud
    does not say: a status must not fail for the want of it."""
    import os

    import httpx

    edge = session.endpoints.get("*") or os.environ.get("AWS_ENDPOINT_URL")
    if not edge:
        return None
    try:
        answer = httpx.get(edge.rstrip("/") + "/_l2c/runtime", timeout=5)
        return answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _s3(session: CloudSession) -> list[Resource]:
    bucket = s3.bucket_name(session)
    if not s3.bucket_exists(session, bucket):
        return []
    found = [Resource("s3", "bucket", bucket, None, "public access blocked, encrypted, TLS only")]
    for key in s3.list_keys(session, bucket):
        found.append(Resource("s3", "object", f"s3://{bucket}/{key}", key.split("/", 1)[0]))
    return found


def _iam(session: CloudSession) -> list[Resource]:
    found = [
        Resource("iam", "role", role["name"], tags.stack_of(role["tags"]) or _stack_from_role(role["name"]))
        for role in iam.list_roles(session)
    ]
    found += [
        Resource("iam", "policy", name, None, "stray managed policy") for name in iam.list_local_policies(session)
    ]
    return found


def _stack_from_role(name: str) -> str | None:
    for purpose in ("-sagemaker", "-lambda"):
        if name.startswith("l2c-") and name.endswith(purpose):
            return name[len("l2c-") : -len(purpose)]
    return None


def sagemaker_resources(session: CloudSession, stack: str) -> list[Resource]:
    return [resource for resource in _sagemaker(session) if resource.stack == stack]


def _sagemaker(session: CloudSession) -> list[Resource]:
    found = []
    for kind in ("endpoint", "endpoint-config", "model"):
        for item in sagemaker.list_tagged(session, kind):
            stack = tags.stack_of(item["tags"]) or _stack_from_name(item["name"], kind)
            if stack is None and not tags.is_l2c(item["tags"]):
                continue
            detail = _endpoint_detail(session, item) if kind == "endpoint" else ""
            found.append(Resource("sagemaker", kind, item["name"], stack, detail))
    return found


def _transform_jobs(session: CloudSession) -> list[Resource]:
    """Transform jobs still running (they bill by the instance-hour). SageMaker keeps finished
    jobs in its history and has no call to delete them (SageMaker API Reference: there is no
    DeleteTransformJob), so only running ones count as something l2c has; their objects are
    under the stack's prefix of the bucket, listed with the bucket's."""
    from l2c.cloud import batch

    found = []
    for job in batch.list_jobs(session, statuses=batch.IN_PROGRESS):
        arn = job["TransformJobArn"]
        job_tags = tags.from_tag_list(session.client("sagemaker").list_tags(ResourceArn=arn).get("Tags"))
        stack = tags.stack_of(job_tags)
        if stack is None:
            match = _TRANSFORM_JOB_NAME.match(job["TransformJobName"])
            stack = match["stack"] if match else None
        found.append(
            Resource(
                "sagemaker",
                "transform-job",
                job["TransformJobName"],
                stack,
                f"{job['TransformJobStatus']}, billed per instance-hour until it ends",
            )
        )
    return found


def _stack_from_name(name: str, kind: str) -> str | None:
    if kind == "endpoint":
        return None  # endpoints are tagged at creation by every implementation
    match = _VERSIONED_NAME.match(name)
    return match["stack"] if match else None


def _endpoint_detail(session: CloudSession, item: dict) -> str:
    description = sagemaker.describe_endpoint(session, item["name"]) or {}
    status = description.get("EndpointStatus", "?")
    config_name = description.get("EndpointConfigName")
    if not config_name:
        return status
    config = sagemaker.describe_endpoint_config(session, config_name)
    if config is None:  # deleted behind the endpoint's back (AWS allows it): the endpoint still runs
        variant = (description.get("ProductionVariants") or [{}])[0]
        if "CurrentServerlessConfig" in variant:
            hosting = "serverless"
        else:
            hosting = f"{variant.get('CurrentInstanceCount', '?')} instance(s), billed hourly"
        return f"{status}, {hosting}, config {config_name} missing"
    variant = config["ProductionVariants"][0]
    if "ServerlessConfig" in variant:
        hosting = f"serverless {variant['ServerlessConfig']['MemorySizeInMB']} MB"
    else:
        hosting = f"{variant.get('InitialInstanceCount')} x {variant.get('InstanceType')}, billed hourly"
    failure = f", last update failed: {description['FailureReason']}" if description.get("FailureReason") else ""
    return f"{status}, {hosting}, config {config_name}{failure}"


def _autoscaling(session: CloudSession) -> list[Resource]:
    return [
        Resource("application-autoscaling", "scalable-target", name, name.removeprefix("l2c-"))
        for name in sagemaker.autoscaled_endpoints(session)
    ]


def _lambda(session: CloudSession) -> list[Resource]:
    return [
        Resource("lambda", "function", function["name"], tags.stack_of(function["tags"]))
        for function in functions.list_functions(session)
        if tags.is_l2c(function["tags"])
    ]


def _logs(session: CloudSession) -> list[Resource]:
    found = []
    for group in functions.list_log_groups(session):
        match = _LOG_GROUP.match(group)
        found.append(Resource("logs", "log-group", group, match["stack"] if match else None))
    return found


def _api_gateway(session: CloudSession) -> list[Resource]:
    found = []
    api = apigateway.find_rest_api(session)
    if api is not None:
        routes = ", ".join(apigateway.routed_paths(session, api["id"])) or "no routes"
        found.append(Resource("apigateway", "rest-api", f"{api['name']} ({api['id']})", None, routes))
    plan = apigateway.find_usage_plan(session)
    if plan is not None:
        found.append(Resource("apigateway", "usage-plan", plan["name"], None, _limits_text(plan)))
    key = apigateway.find_api_key(session)
    if key is not None:
        found.append(Resource("apigateway", "api-key", key["name"], None))
    return found


def _limits_text(plan: dict) -> str:
    throttle, quota = plan.get("throttle") or {}, plan.get("quota") or {}
    return (
        f"{throttle.get('rateLimit')} req/s, burst {throttle.get('burstLimit')}, "
        f"quota {quota.get('limit')}/{str(quota.get('period', '')).lower()}"
    )
