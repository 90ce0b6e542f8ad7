"""Deploy a model as a prediction API, one step at a time, in the tutorial's order.

A *stack* is one model's deployment, named after the model (``iris``, ``house-price``):

    S3 object -> IAM roles -> SageMaker model -> endpoint config -> endpoint
              -> log group -> Lambda function -> API resource + method (+ CORS) -> stage, key, usage plan

The notebooks call the steps one by one (``stack.prepare``, ``stack.upload_model``,
``stack.create_roles`` ... ``stack.create_api``); ``deploy`` runs them all. Every step first
looks at what exists, so running deploy again changes nothing, and a deploy that stopped
half-way is finished by the next one.

The other jobs have their own modules: the options and the checks before anything is created
(``plan``), calling a deployment (``calling``), what runs (``inventory.status``), taking it all
down again (``teardown``).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from l2c import checks
from l2c.artifact import TARBALL_NAME
from l2c.cloud import apigateway, container, cors, functions, iam, inventory, postman, roles, s3, sagemaker, tags
from l2c.cloud.names import check_stack_name, model_version
from l2c.cloud.plan import DeployOptions, check_before_creating, check_options, with_bucket
from l2c.cloud.progress import ConsoleReporter, Reporter
from l2c.cloud.session import AUTO, CloudError, CloudSession, connect

# --------------------------------------------------------------------------- deploy, step by step


@dataclass
class Stack:
    """One deploy in progress: what it is deploying, and what each step has made so far.

    The notebooks run the steps one by one, as the tutorial does them by hand; ``deploy`` runs
    them all. Each step can be run again: it finds what exists and changes only what differs.
    """

    name: str
    model_dir: Path
    card: dict
    session: CloudSession
    options: DeployOptions
    reporter: Reporter
    bucket: str = ""
    model_data_url: str = ""
    sagemaker_role_arn: str = ""
    lambda_role_arn: str = ""
    model_name: str = ""
    endpoint_config: str = ""
    endpoint: str = ""
    endpoint_change: str = ""
    function_arn: str = ""
    api_id: str = ""
    url: str = ""
    api_key: str | None = None
    cors_origin: str | None = None  # resolved from the options and the target (cors.cors_origin_for)
    changes: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return model_version(self.card)

    @property
    def tags(self) -> dict[str, str]:
        return tags.stack_tags(self.name)

    def changed(self, what: str, really: bool = True) -> None:
        if really:
            self.changes.append(what)


def prepare(
    name: str,
    model_dir: Path | str | None = None,
    *,
    session: CloudSession | None = None,
    target: str = AUTO,
    options: DeployOptions | None = None,
    reporter: Reporter | None = None,
) -> Stack:
    """Check the artifact as the container will load it (`l2c check`), then open the session."""
    check_stack_name(name)
    options = options or DeployOptions()
    check_options(options)  # before the session: a wrong option costs no AWS call
    model_dir = Path(model_dir) if model_dir is not None else Path("models") / name
    checks.check_model_dir(model_dir)  # an artifact the container would mis-load never reaches S3
    stack = Stack(
        name=name,
        model_dir=model_dir,
        card=checks.read_card(model_dir),
        session=with_bucket(session or connect(target), options.bucket),
        options=options,
        reporter=reporter if reporter is not None else ConsoleReporter(),
    )
    stack.cors_origin = cors.cors_origin_for(stack.session, options)
    check_before_creating(stack.name, stack.session, stack.options, stack.version, stack.card)
    apigateway.refuse_route_collision(stack.session, stack.name)
    return stack


def deploy(name: str, model_dir: Path | str | None = None, **settings) -> Deployment:
    """Deploy ``models/<name>`` (or ``model_dir``) as a stack; safe to run again at any point.

    ``settings`` are those of :func:`prepare`: session or target, options, reporter.
    """
    stack = prepare(name, model_dir, **settings)
    for step in (upload_model, create_roles, create_model, create_endpoint_config, create_endpoint, create_function):
        step(stack)
    return create_api(stack)


def upload_model(stack: Stack) -> str:
    """Step 1: the hardened bucket, and the artifact under its versioned key."""
    session = stack.session
    stack.bucket = s3.bucket_name(session)
    stack.changed(f"bucket {stack.bucket} created", s3.ensure_bucket(session, stack.bucket))
    stack.reporter.step(f"bucket {stack.bucket}: public access blocked, encrypted, TLS only")
    key = s3.artifact_key(stack.name, stack.version)
    tarball = stack.model_dir / TARBALL_NAME
    stack.changed(f"uploaded {key}", s3.upload_artifact(session, stack.bucket, key, tarball, _sha256_of(tarball)))
    stack.model_data_url = s3.s3_uri(stack.bucket, key)
    stack.reporter.step(f"artifact {stack.model_data_url}")
    return stack.model_data_url


def create_roles(stack: Stack) -> tuple[str, str]:
    """Step 2: SageMaker's execution role and the function's role, from the src/l2c/iam/ templates."""
    session, name, options = stack.session, stack.name, stack.options
    bucket = stack.bucket or s3.bucket_name(session)
    if options.role_arn:
        stack.sagemaker_role_arn = options.role_arn
        stack.reporter.step(f"SageMaker execution role {options.role_arn} (given)")
    else:
        stack.sagemaker_role_arn, changed = iam.ensure_role(
            session, roles.sagemaker_role_spec(session, name, bucket), stack.tags
        )
        stack.changed("SageMaker role", changed)
        stack.reporter.step(
            f"SageMaker execution role {iam.role_name(name, 'sagemaker', session.region)}: reads s3://{bucket}/{name}/ only"
        )
    if options.lambda_role_arn:
        stack.lambda_role_arn = options.lambda_role_arn
        stack.reporter.step(f"Lambda role {options.lambda_role_arn} (given)")
    else:
        stack.lambda_role_arn, changed = iam.ensure_role(session, roles.lambda_role_spec(session, name), stack.tags)
        stack.changed("Lambda role", changed)
        stack.reporter.step(
            f"Lambda role {iam.role_name(name, 'lambda', session.region)}: invokes endpoint {sagemaker.endpoint_name(name)} only"
        )
    return stack.sagemaker_role_arn, stack.lambda_role_arn


def create_model(stack: Stack) -> str:
    """Step 3: the SageMaker model: the XGBoost image, the artifact, the execution role."""
    _require(stack, "model_data_url", upload_model)
    _require(stack, "sagemaker_role_arn", create_roles)
    stack.model_name = sagemaker.model_name(stack.name, stack.version)
    image = container.image_uri(stack.session.region)
    created = sagemaker.ensure_model(
        stack.session, stack.model_name, image, stack.model_data_url, stack.sagemaker_role_arn, stack.tags
    )
    stack.changed(f"model {stack.model_name}", created)
    stack.reporter.step(f"SageMaker model {stack.model_name} on {image.split('/', 1)[1]}")
    return stack.model_name


def create_endpoint_config(stack: Stack) -> str:
    """Step 4: how the endpoint runs: instance type and count, or serverless."""
    _require(stack, "model_name", create_model)
    hosting = stack.options.hosting
    stack.endpoint_config = sagemaker.endpoint_config_name(stack.name, stack.version, hosting)
    created = sagemaker.ensure_endpoint_config(
        stack.session, stack.endpoint_config, stack.model_name, hosting, stack.tags
    )
    stack.changed(f"endpoint config {stack.endpoint_config}", created)
    stack.reporter.step(f"endpoint config {stack.endpoint_config}: {hosting.describe()}")
    return stack.endpoint_config


def create_endpoint(stack: Stack) -> str:
    """Step 5: the endpoint, waited on until InService; a new version replaces the old one."""
    _require(stack, "endpoint_config", create_endpoint_config)
    session, options = stack.session, stack.options
    stack.endpoint = sagemaker.endpoint_name(stack.name)
    # Created before SageMaker writes to it, so it is tagged and expires like the function's.
    functions.ensure_expiring_log_group(session, sagemaker.log_group_name(stack.endpoint), stack.tags)
    stack.endpoint_change = sagemaker.ensure_endpoint(
        session, stack.endpoint, stack.endpoint_config, stack.tags, stack.reporter
    )
    stack.changed(f"endpoint {stack.endpoint_change}", stack.endpoint_change != "unchanged")
    stack.reporter.step(f"endpoint {stack.endpoint} InService ({stack.endpoint_change})")
    _remove_superseded(stack)
    if options.autoscale:
        sagemaker.register_autoscaling(session, stack.endpoint, *options.autoscale)
        stack.reporter.step(f"autoscaling {options.autoscale[0]}-{options.autoscale[1]} instances on invocations")
    return stack.endpoint


def _remove_superseded(stack: Stack) -> None:
    """Older versions' configs, models and artifacts, once the endpoint no longer uses them.

    What the live endpoint references is kept whatever this deploy thinks is current: it is
    what serves the API (after a rolled-back update, the previous version)."""
    live = _live_references(stack.session, stack.endpoint or sagemaker.endpoint_name(stack.name))
    keep = {stack.endpoint_config, stack.model_name, *live}
    for resource in inventory.sagemaker_resources(stack.session, stack.name):
        if resource.name in keep:
            continue
        if resource.kind == "endpoint-config":
            sagemaker.delete_endpoint_config(stack.session, resource.name)
            stack.reporter.step(f"removed superseded endpoint config {resource.name}")
        elif resource.kind == "model":
            sagemaker.delete_model(stack.session, resource.name)
            stack.reporter.step(f"removed superseded model {resource.name}")
    bucket = stack.bucket or s3.bucket_name(stack.session)
    current = {s3.artifact_key(stack.name, stack.version)} | {
        url.removeprefix(f"s3://{bucket}/") for url in live if url.startswith(f"s3://{bucket}/")
    }
    old = [key for key in s3.list_keys(stack.session, bucket, f"{stack.name}/") if key not in current]
    if old:
        s3.delete_keys(stack.session, bucket, old)
        stack.reporter.step(f"removed superseded artifact(s) {', '.join(old)}")


def _live_references(session: CloudSession, endpoint: str) -> set[str]:
    """The config, models and artifact URLs the endpoint runs on now (empty when there is none)."""
    description = sagemaker.describe_endpoint(session, endpoint)
    if description is None:
        return set()
    config = sagemaker.describe_endpoint_config(session, description["EndpointConfigName"])
    references = {description["EndpointConfigName"]}
    for variant in (config or {}).get("ProductionVariants", []):
        references.add(variant["ModelName"])
        model = sagemaker.get_model(session, variant["ModelName"])
        url = ((model or {}).get("PrimaryContainer") or {}).get("ModelDataUrl")
        if url:
            references.add(url)
    return references


def create_function(stack: Stack) -> str:
    """Step 6: the Lambda function (src/l2c/lambda/ zipped, python3.13), its settings from the model card."""
    _require(stack, "lambda_role_arn", create_roles)
    function = functions.function_name(stack.name)
    endpoint = stack.endpoint or sagemaker.endpoint_name(stack.name)
    functions.ensure_log_group(stack.session, function, stack.tags)
    environment = functions.environment_from_card(stack.card, endpoint, stack.options.max_rows, stack.cors_origin)
    spec = functions.FunctionSpec(
        name=function,
        role_arn=stack.lambda_role_arn,
        code=functions.build_zip(functions.lambda_source_dir(), functions.bundled_files(stack.card, environment)),
        environment=environment,
        timeout=stack.options.lambda_timeout,
    )
    stack.function_arn, change = functions.ensure_function(stack.session, spec, stack.tags)
    stack.changed(f"function {change}", change != "unchanged")
    stack.reporter.step(f"Lambda function {function} ({change}), settings from the model card")
    return stack.function_arn


def create_api(stack: Stack) -> Deployment:
    """Step 7: the REST API route, its invoke permission, the stage, the key and usage plan."""
    _require(stack, "function_arn", create_function)
    session, options, name = stack.session, stack.options, stack.name
    stack.api_id = _ensure_route(stack)
    plan_id = apigateway.ensure_usage_plan(session, stack.api_id, options.limits)
    _, key = apigateway.ensure_api_key(session, plan_id, options.api_key_value)
    stack.api_key = None if options.public else key
    base_url = apigateway.invoke_url(session, stack.api_id)
    stack.url = f"{base_url}/{apigateway.resource_path(name)}"
    if options.public:
        stack.reporter.warn(f"{stack.url} is PUBLIC: anyone with the URL can call it and run up the bill")
    else:
        limits = options.limits
        stack.reporter.step(
            f"API key required; usage plan {limits.rate_limit:g} req/s (burst {limits.burst_limit}), "
            f"{limits.quota_limit}/{limits.quota_period.lower()}"
        )
    deployment = deployment_of(stack)
    deployment.postman_environment = postman.write_postman_environment(session, base_url, key)
    return deployment


def _ensure_route(stack: Stack) -> str:
    session, name = stack.session, stack.name
    api_id, created = apigateway.ensure_rest_api(session)
    stack.changed("REST API created", created)
    path = apigateway.resource_path(name)
    resource_id = apigateway.ensure_resource(session, api_id, path)
    uri = apigateway.integration_uri(session, stack.function_arn)
    stack.changed(
        f"POST /{path}", apigateway.ensure_post_method(session, api_id, resource_id, uri, not stack.options.public)
    )
    cors.ensure_cors(stack, api_id, resource_id, path)
    source_arn = apigateway.method_arn(session, api_id, path)
    function = functions.function_name(name)
    stack.changed(
        "invoke permission", functions.allow_invoke_from(session, function, f"l2c-{name}-apigateway", source_arn)
    )
    stack.changed(f"stage {apigateway.STAGE} deployed", apigateway.ensure_stage_deployed(session, api_id))
    limits = stack.options.limits
    stack.changed(
        f"stage {apigateway.STAGE} throttled to {limits.rate_limit:g} requests/s (burst {limits.burst_limit}) for all callers",
        apigateway.ensure_stage_throttling(session, api_id, limits),
    )
    stack.reporter.step(f"API POST /{path} -> {function} (Lambda proxy), stage {apigateway.STAGE}")
    return api_id


def _require(stack: Stack, attribute: str, step) -> None:
    if not getattr(stack, attribute):
        raise CloudError(f"run {step.__name__}() first: this step needs its result ({attribute})")


# --------------------------------------------------------------------------- what a deploy made


@dataclass
class Deployment:
    """What a deploy made, and how to call it."""

    stack: str
    region: str
    target: str
    model_version: str
    model_data_url: str
    endpoint: str
    endpoint_change: str
    function: str
    api_id: str
    url: str
    api_key: str | None
    postman_environment: Path | None = None
    changes: list[str] = field(default_factory=list)
    cors_origin: str | None = None  # the origin browsers may call from; None: no CORS

    def shown_key(self, show_key: bool | None = None) -> str | None:
        """The key as output shows it: masked (``abcd…wxyz``) unless asked for. ``None`` asks the
        target: on AWS it is masked (deploy output lands in CI logs and screen shares); the local
        cloud's key opens nothing but loopback, so it is shown."""
        if not self.api_key:
            return None
        show = self.target == "local" if show_key is None else show_key
        return self.api_key if show else mask_key(self.api_key)

    def curl(self, body: str = '{"data": "..."}', show_key: bool | None = None) -> str:
        parts = ["curl", "-sS", "-X", "POST", self.url, "-H", "Content-Type: application/json"]
        key = self.shown_key(show_key)
        if key:
            parts += ["-H", f"x-api-key: {key}"]
        return " ".join(shlex.quote(part) for part in parts + ["-d", body])

    def summary(self, show_key: bool | None = None) -> list[str]:
        key = self.shown_key(show_key)
        shown = key if key is None or key == self.api_key else f"{key} (masked: --show-key prints it)"
        lines = [
            f"endpoint   {self.endpoint} ({self.endpoint_change}), model version {self.model_version}",
            f"function   {self.function}",
            f"invoke URL {self.url}",
            f"API key    {shown}" if self.api_key else "API key    none: this API is PUBLIC",
            f"CORS       browsers on {self.cors_origin} may call it"
            if self.cors_origin
            else "CORS       none: pages on other origins cannot call it from a browser (--cors-origin ORIGIN)",
        ]
        if self.postman_environment:
            lines.append(f"Postman    environment written to {self.postman_environment}")
        return lines


def mask_key(key: str) -> str:
    """``abcd…wxyz``: enough to tell keys apart, not enough to call the API with."""
    if len(key) <= 8:
        return "…"
    return f"{key[:4]}…{key[-4:]}"


def deployment_of(stack: Stack) -> Deployment:
    return Deployment(
        stack=stack.name,
        region=stack.session.region,
        target=stack.session.target,
        model_version=stack.version,
        model_data_url=stack.model_data_url,
        endpoint=stack.endpoint,
        endpoint_change=stack.endpoint_change,
        function=functions.function_name(stack.name),
        api_id=stack.api_id,
        url=stack.url,
        api_key=stack.api_key,
        changes=list(stack.changes),
        cors_origin=stack.cors_origin,
    )


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
