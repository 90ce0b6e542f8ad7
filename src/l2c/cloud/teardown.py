"""Destroy: delete a stack (or every stack) in the reverse order of the deploy, tolerating
whatever is already gone, then list every service to prove that nothing of it is left.

Shared resources (the bucket, the REST API, its key and usage plan) go with the last stack."""

from __future__ import annotations

from dataclasses import dataclass

from l2c.cloud import apigateway, batch, functions, iam, inventory, s3, sagemaker
from l2c.cloud.inventory import Resource
from l2c.cloud.names import check_stack_name
from l2c.cloud.plan import with_bucket
from l2c.cloud.progress import ConsoleReporter, Reporter
from l2c.cloud.session import AUTO, CloudError, CloudSession, connect


@dataclass
class DestroyReport:
    stacks: list[str]
    deleted: list[str]
    remaining: list[Resource]


def destroy(
    name: str | None = None,
    *,
    everything: bool = False,
    session: CloudSession | None = None,
    target: str = AUTO,
    reporter: Reporter | None = None,
    bucket: str | None = None,
) -> DestroyReport:
    """Delete one stack (or every stack), then list every service to prove nothing is left.

    Shared resources (bucket, REST API, key, usage plan) go with the last stack that used them.
    Raises CloudError naming what is left if anything survived.
    """
    if (name is None) == (not everything):
        raise CloudError("name one stack to destroy, or ask for all of them")
    reporter = reporter if reporter is not None else ConsoleReporter()
    session = with_bucket(session or connect(target), bucket)
    names = inventory.stacks(inventory.inventory(session)) if everything else [check_stack_name(name)]
    deleted: list[str] = []
    for stack in names:
        deleted += _destroy_stack(session, stack, reporter)
    deleted += _destroy_shared_if_unused(session, reporter)
    remaining = inventory.inventory(session)
    left = remaining if everything else [r for r in remaining if r.stack in names]
    if left:
        raise CloudError("destroy left these behind:\n  " + "\n  ".join(map(str, left)))
    reporter.step("verified: nothing of " + ("any stack" if everything else f"stack {name}") + " is left")
    return DestroyReport(stacks=names, deleted=deleted, remaining=remaining)


def _destroy_stack(session: CloudSession, name: str, reporter: Reporter) -> list[str]:
    deleted = []
    buckets = _artifact_buckets(session, name)  # read before the models that name them are deleted

    def note(what: str, done: bool) -> None:
        if done:
            deleted.append(what)
            reporter.step(f"deleted {what}")

    # The endpoint first: it is what bills, and deleting it is what AWS may refuse for a while
    # (an operation in progress). Should that fail, the route and function are still there and
    # the stack is whole: running destroy again finishes it.
    # Running transform jobs too: they bill, and they would write into the prefix deleted below.
    for job in batch.stop_jobs(session, name):
        note(f"transform job {job} (stopped)", True)
    endpoint = sagemaker.endpoint_name(name)
    note(f"autoscaling of {endpoint}", sagemaker.deregister_autoscaling(session, endpoint))
    note(f"endpoint {endpoint}", sagemaker.delete_endpoint(session, endpoint, reporter))
    api = apigateway.find_rest_api(session)
    path = apigateway.resource_path(name)
    if api is not None and apigateway.remove_resource(session, api["id"], path):
        note(f"API route /{path}", True)
        if apigateway.routed_paths(session, api["id"]):
            apigateway.ensure_stage_deployed(session, api["id"])
    function = functions.function_name(name)
    note(f"Lambda function {function}", functions.delete_function(session, function))
    note(
        f"log group {functions.log_group_name(function)}",
        functions.delete_log_group(session, functions.log_group_name(function)),
    )
    endpoint_logs = sagemaker.log_group_name(endpoint)
    note(f"log group {endpoint_logs}", functions.delete_log_group(session, endpoint_logs))
    for resource in inventory.inventory(session, name):
        if resource.kind == "endpoint-config":
            note(f"endpoint config {resource.name}", sagemaker.delete_endpoint_config(session, resource.name))
        elif resource.kind == "model" and resource.service == "sagemaker":
            note(f"model {resource.name}", sagemaker.delete_model(session, resource.name))
        elif resource.kind == "role":
            note(f"IAM role {resource.name}", iam.delete_role(session, resource.name))
        elif resource.kind == "log-group":
            note(f"log group {resource.name}", functions.delete_log_group(session, resource.name))
    for bucket in buckets:
        keys = s3.list_keys(session, bucket, prefix=f"{name}/")
        s3.delete_keys(session, bucket, keys)
        note(f"{len(keys)} object(s) under s3://{bucket}/{name}/", bool(keys))
    return deleted


def _artifact_buckets(session: CloudSession, name: str) -> list[str]:
    """This session's bucket, and those the stack's models read their artifacts from (a deploy
    with --bucket), when this account owns them: the stack's objects are deleted from each."""
    buckets = [s3.bucket_name(session)]
    for resource in inventory.sagemaker_resources(session, name):
        if resource.kind != "model":
            continue
        model = sagemaker.get_model(session, resource.name) or {}
        url = (model.get("PrimaryContainer") or {}).get("ModelDataUrl", "")
        bucket = url.removeprefix("s3://").split("/", 1)[0] if url.startswith("s3://") else ""
        if bucket and bucket not in buckets and s3.bucket_exists_and_owned(session, bucket):
            buckets.append(bucket)
    return buckets


def _destroy_shared_if_unused(session: CloudSession, reporter: Reporter) -> list[str]:
    deleted = []
    api = apigateway.find_rest_api(session)
    if api is None or not apigateway.routed_paths(session, api["id"]):
        for what in apigateway.delete_shared(session):
            deleted.append(what)
            reporter.step(f"deleted {what}")
    bucket = s3.bucket_name(session)
    if s3.delete_bucket_if_empty(session, bucket):
        deleted.append(f"bucket {bucket}")
        reporter.step(f"deleted bucket {bucket}")
    return deleted
