"""What a deploy is asked to do (DeployOptions), and everything checked before it creates anything.

``check_options`` refuses a wrong option without an AWS call; ``check_before_creating`` refuses
a deploy that AWS would refuse half-way (the image, the instance quota, a hosting change, given
roles, via IAM's policy simulator); ``plan`` lists what a deploy creates and what keeps billing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from l2c.cloud import apigateway, container, cors, functions, iam, policies, roles, s3, sagemaker
from l2c.cloud.apigateway import Limits
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import CloudError, CloudSession


@dataclass(frozen=True)
class DeployOptions:
    hosting: Hosting = field(default_factory=Hosting)
    public: bool = False  # no API key on the method: anyone with the URL can call (and bill) it
    role_arn: str | None = None  # an existing SageMaker execution role, for callers who may not create roles
    lambda_role_arn: str | None = None
    autoscale: tuple[int, int] | None = None
    limits: Limits = field(default_factory=Limits)
    lambda_timeout: int = functions.DEFAULT_TIMEOUT_S
    max_rows: int = functions.DEFAULT_MAX_ROWS
    api_key_value: str | None = None  # None: AWS generates the key (the local cloud's `l2c up` fixes one)
    bucket: str | None = None  # an artifact bucket of the user's choice; None: l2c's own (s3.bucket_name)
    # The one origin whose pages may call the API from a browser (CORS). None: the target's
    # default, see cors.cors_origin_for; apigateway.NO_CORS: none; "*": any (never a default).
    cors_origin: str | None = None


# What SageMaker's execution role does with a model (src/l2c/iam/sagemaker-execution-policy.json).
READ_ARTIFACT = ("s3:GetObject",)
PULL_IMAGE = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
# What creating the function's role takes (iam.ensure_role).
CREATE_ROLE = ("iam:CreateRole", "iam:PutRolePolicy", "iam:TagRole")


def check_options(options: DeployOptions) -> None:
    """Refuse, in one line, an option AWS would refuse half-way through the deploy; no AWS call."""
    options.hosting.check()
    if options.autoscale:
        if options.hosting.serverless:
            raise CloudError("--autoscale applies to instance endpoints; serverless ones scale by themselves")
        low, high = options.autoscale
        if not 1 <= low <= high:
            raise CloudError(f"--autoscale {low}:{high}: MIN must be at least 1 and at most MAX")
    # Lambda API reference, CreateFunction: Timeout 1-900 seconds.
    if not functions.MIN_TIMEOUT_S <= options.lambda_timeout <= functions.MAX_TIMEOUT_S:
        raise CloudError(
            f"the function timeout {options.lambda_timeout} s is out of Lambda's range "
            f"({functions.MIN_TIMEOUT_S} to {functions.MAX_TIMEOUT_S} s)"
        )
    if options.max_rows < 1:
        raise CloudError(f"max rows {options.max_rows}: a request must be allowed at least one row")
    if options.bucket:
        s3.check_bucket_name(options.bucket)
    if options.cors_origin is not None:
        apigateway.check_cors_origin(options.cors_origin)


def with_bucket(session: CloudSession, bucket: str | None) -> CloudSession:
    """The session with the user's bucket (a copy: the caller's session is left as it was)."""
    if not bucket or session.bucket == bucket:
        return session
    return dataclasses.replace(session, bucket=s3.check_bucket_name(bucket))


def check_before_creating(
    name: str, session: CloudSession, options: DeployOptions, version: str | None = None, card: dict | None = None
) -> list[str]:
    """Refuse, with what to do, a deploy that AWS would refuse after S3, IAM and SageMaker were
    already written to; otherwise one line per check, for the plan."""
    check_options(options)
    if session.bucket:
        s3.bucket_exists(session, session.bucket)  # refuses a bucket of another account, before anything
    if card is not None:
        environment = functions.environment_from_card(
            card, sagemaker.endpoint_name(name), options.max_rows, cors.cors_origin_for(session, options)
        )
        functions.check_environment(environment)
    image = container.image_uri(session.region)
    sagemaker.check_hosting_change(session, sagemaker.endpoint_name(name), options.hosting)
    lines = [f"image {image}", sagemaker.check_instance_quota(session, options.hosting)]
    if options.role_arn:
        lines.append(_check_execution_role(session, name, version, options.role_arn, image))
        if not options.lambda_role_arn:
            lines.append(_check_may_create_function_role(session, name))
    return lines


def _check_execution_role(session: CloudSession, name: str, version: str | None, role_arn: str, image: str) -> str:
    bucket = s3.bucket_name(session)
    key = s3.artifact_key(name, version or "0" * 12)
    artifact = f"arn:{session.partition}:s3:::{bucket}/{key}"
    repository = (
        f"arn:{session.partition}:ecr:{session.region}:{policies.image_account(image)}:repository/sagemaker-xgboost"
    )
    denied = _denied(session, role_arn, READ_ARTIFACT, artifact)
    if denied is None:
        return f"role {role_arn}: could not be checked (iam:SimulatePrincipalPolicy refused); {_role_needs(session, bucket, name)}"
    denied += _denied(session, role_arn, PULL_IMAGE, repository) or []
    if denied:
        raise CloudError(
            f"role {role_arn} may not {', '.join(denied)} (IAM policy simulation); nothing was created.\n"
            f"  {_role_needs(session, bucket, name)}\n"
            "  A SageMaker notebook role with AmazonSageMakerFullAccess reads only buckets with 'sagemaker' in their name.\n"
            "  Or leave out --role-arn: l2c then creates a role that reads this stack's artifacts only."
        )
    return f"role {role_arn}: may read {artifact} and pull the XGBoost image"


def _role_needs(session: CloudSession, bucket: str, name: str) -> str:
    return (
        f"the SageMaker execution role needs s3:GetObject on arn:{session.partition}:s3:::{bucket}/{name}/*, "
        f"{', '.join(PULL_IMAGE)} on the sagemaker-xgboost repository, ecr:GetAuthorizationToken, "
        "and logs:CreateLogStream/PutLogEvents (src/l2c/iam/sagemaker-execution-policy.json is exactly that)"
    )


def _check_may_create_function_role(session: CloudSession, name: str) -> str:
    caller = _caller_principal(session)
    spec = roles.lambda_role_spec(session, name)
    role = f"arn:{session.partition}:iam::{session.account}:role{iam.ROLE_PATH}{spec.name}"
    denied = _denied(session, caller, CREATE_ROLE, role) if caller else None
    if denied is None:
        return f"the function's role {spec.name} will be created (whether you may could not be checked)"
    if denied:
        endpoint = session.arn("sagemaker", f"endpoint/{sagemaker.endpoint_name(name)}")
        raise CloudError(
            f"you ({caller}) may not create the function's role ({', '.join(denied)} denied); nothing was created.\n"
            f"  Pass --lambda-role-arn: a role lambda.amazonaws.com may assume, allowed sagemaker:InvokeEndpoint on "
            f"{endpoint} and logs:CreateLogStream/PutLogEvents (src/l2c/iam/lambda-invoke-endpoint-policy.json)"
        )
    return f"the function's role {spec.name} will be created (you may create roles)"


def _caller_principal(session: CloudSession) -> str | None:
    """Who is deploying, as IAM's simulator names principals: a user's ARN, or an assumed role's role ARN."""
    from l2c.cloud.session import caller_role_arn

    try:
        role = caller_role_arn(session)
    except CloudError:
        return None  # an assumed role whose path cannot be read: the simulator would not know it
    return role or session.client("sts").get_caller_identity()["Arn"]


def _denied(session: CloudSession, principal: str, actions, resource: str) -> list[str] | None:
    """The actions IAM's policy simulator denies ``principal`` on ``resource``; None if it cannot say."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        results = session.client("iam").simulate_principal_policy(
            PolicySourceArn=principal, ActionNames=list(actions), ResourceArns=[resource]
        )["EvaluationResults"]
    except (ClientError, BotoCoreError):
        return None  # not allowed to simulate, or a principal the simulator does not know
    return [result["EvalActionName"] for result in results if result["EvalDecision"] != "allowed"]


# --------------------------------------------------------------------------- plan (what --aws will bill)


def plan(name: str, session: CloudSession, options: DeployOptions | None = None) -> list[str]:
    """What a deploy creates, and which of it keeps costing money until destroyed.

    Runs the same checks as the deploy itself does before creating anything (image, quota,
    hosting change, given roles): a deploy that AWS would refuse half-way is refused here."""
    options = options or DeployOptions()
    check_options(options)
    session = with_bucket(session, options.bucket)
    checked = check_before_creating(name, session, options)
    bucket = s3.bucket_name(session)
    endpoint = sagemaker.endpoint_name(name)
    return [f"checked: {line}" for line in checked] + [
        f"S3 bucket {bucket} (if missing) and the model artifact: storage, cents a month",
        f"IAM roles {iam.role_name(name, 'sagemaker', session.region)} and {iam.role_name(name, 'lambda', session.region)}: free",
        "SageMaker model and endpoint configuration: free",
        f"SageMaker endpoint {endpoint}: {options.hosting.describe()}  <- KEEPS BILLING until `l2c destroy {name} --aws`",
        f"Lambda function {functions.function_name(name)} and its log group: per request and per GB of logs",
        f"API Gateway REST API {apigateway.API_NAME}, stage {apigateway.STAGE}, "
        + ("no API key (PUBLIC)" if options.public else "API key and usage plan")
        + f", every method throttled to {options.limits.rate_limit:g} requests/s for all callers: per request",
        cors.cors_plan_line(cors.cors_origin_for(session, options)),
        # Throttles are not a cost control (AWS calls them best effort); a budget alert is.
        "tip: an AWS Budgets alert mails you when the month's cost passes a limit: "
        "https://console.aws.amazon.com/billing/home#/budgets (or `aws budgets create-budget`)",
    ]
