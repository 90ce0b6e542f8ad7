"""The two IAM roles of a stack, filled in from the src/l2c/iam/ policy templates: the one SageMaker's
endpoint runs as (reads the stack's artifacts, pulls the image) and the function's (invokes the
endpoint)."""

from __future__ import annotations

from l2c.cloud import container, functions, iam, policies, sagemaker
from l2c.cloud.session import CloudSession


def sagemaker_role_spec(session: CloudSession, name: str, bucket: str) -> iam.RoleSpec:
    return _role_spec(
        session,
        name,
        service="sagemaker",
        description=f"l2c: SageMaker execution role of stack {name}",
        policy_name="l2c-sagemaker-execution",
        templates=("sagemaker-trust-policy", "sagemaker-execution-policy"),
        BucketName=bucket,
        ModelPrefix=f"{name}/",
        ImageAccount=policies.image_account(container.image_uri(session.region)),
    )


def lambda_role_spec(session: CloudSession, name: str) -> iam.RoleSpec:
    return _role_spec(
        session,
        name,
        service="lambda",
        description=f"l2c: role of the prediction function of stack {name}",
        policy_name="l2c-invoke-endpoint",
        templates=("lambda-trust-policy", "lambda-invoke-endpoint-policy"),
        FunctionName=functions.function_name(name),
    )


def _role_spec(
    session: CloudSession,
    name: str,
    service: str,
    description: str,
    policy_name: str,
    templates: tuple[str, str],
    **values: str,
) -> iam.RoleSpec:
    """A role of the stack: its trust and permission templates filled in with where it lives
    (partition, region, account), the stack's endpoint, and the role's own ``values``."""
    values = {
        "Partition": session.partition,
        "Region": session.region,
        "Account": session.account,
        "EndpointName": sagemaker.endpoint_name(name),
        **values,
    }
    trust, permissions = templates
    return iam.RoleSpec(
        name=iam.role_name(name, service, session.region),
        description=description,
        trust_policy=policies.render_policy(trust, **values),
        policy_name=policy_name,
        policy=policies.render_policy(permissions, **values),
    )
