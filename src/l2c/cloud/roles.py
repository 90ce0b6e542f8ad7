"""The two IAM roles of a stack, filled in from the src/l2c/iam/ policy templates: the one SageMaker's
endpoint runs as (reads the stack's artifacts, pulls the image) and the function's (invokes the
endpoint)."""

from __future__ import annotations

from l2c.cloud import container, functions, iam, policies, sagemaker
from l2c.cloud.session import CloudSession


def sagemaker_role_spec(session: CloudSession, name: str, bucket: str) -> iam.RoleSpec:
    values = {
        "Partition": session.partition,
        "Region": session.region,
        "Account": session.account,
        "BucketName": bucket,
        "ModelPrefix": f"{name}/",
        "ImageAccount": policies.image_account(container.image_uri(session.region)),
        "EndpointName": sagemaker.endpoint_name(name),
    }
    return iam.RoleSpec(
        name=iam.role_name(name, "sagemaker", session.region),
        description=f"l2c: SageMaker execution role of stack {name}",
        trust_policy=policies.render_policy("sagemaker-trust-policy", **values),
        policy_name="l2c-sagemaker-execution",
        policy=policies.render_policy("sagemaker-execution-policy", **values),
    )


def lambda_role_spec(session: CloudSession, name: str) -> iam.RoleSpec:
    values = {
        "Partition": session.partition,
        "Region": session.region,
        "Account": session.account,
        "EndpointName": sagemaker.endpoint_name(name),
        "FunctionName": functions.function_name(name),
    }
    return iam.RoleSpec(
        name=iam.role_name(name, "lambda", session.region),
        description=f"l2c: role of the prediction function of stack {name}",
        trust_policy=policies.render_policy("lambda-trust-policy", **values),
        policy_name="l2c-invoke-endpoint",
        policy=policies.render_policy("lambda-invoke-endpoint-policy", **values),
    )
