"""Deploy a model as a prediction API, see what runs, and take it all down again.

A *stack* is one model's deployment, named after the model (``iris``, ``house-price``):

    S3 object -> IAM roles -> SageMaker model -> endpoint config -> endpoint
              -> log group -> Lambda function -> API resource + method (+ CORS) -> stage, key, usage plan

Every step first looks at what exists, so running deploy again changes nothing, and a deploy
that stopped half-way is finished by the next one. Destroy walks the same list backwards,
tolerates whatever is missing, and then lists every service to prove nothing is left.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from l2c import checks
from l2c.artifact import TARBALL_NAME
from l2c.cloud import apigateway, batch, functions, iam, inventory, policies, s3, sagemaker, tags
from l2c.cloud.apigateway import Limits
from l2c.cloud.inventory import Resource
from l2c.cloud.progress import ConsoleReporter, Reporter
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import AUTO, CloudError, CloudSession, connect, state_dir, write_private

STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
POSTMAN_DIR = Path(__file__).resolve().parents[3] / "postman"


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
    # default, see cors_origin_for; apigateway.NO_CORS: none; "*": any (never a default).
    cors_origin: str | None = None


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
            f"CORS       browsers on {self.cors_origin} may call it" if self.cors_origin
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


def check_stack_name(name: str) -> str:
    if not STACK_NAME.match(name):
        raise CloudError(
            f"{name!r} cannot name a stack: use 2-32 lower-case letters, digits and hyphens, "
            "starting with a letter (it becomes part of AWS resource names)"
        )
    return name


def model_version(card: dict) -> str:
    """The first 12 hex digits of the booster's SHA-256: a new model is a new version."""
    return card["booster_sha256"][:12]


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
    cors_origin: str | None = None  # resolved from the options and the target (cors_origin_for)
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
    stack.cors_origin = cors_origin_for(stack.session, options)
    check_before_creating(stack.name, stack.session, stack.options, stack.version, stack.card)
    apigateway.refuse_route_collision(stack.session, stack.name)
    return stack


def with_bucket(session: CloudSession, bucket: str | None) -> CloudSession:
    """The session with the user's bucket (a copy: the caller's session is left as it was)."""
    if not bucket or session.bucket == bucket:
        return session
    return dataclasses.replace(session, bucket=s3.check_bucket_name(bucket))


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
    """Step 2: SageMaker's execution role and the function's role, from the iam/ templates."""
    session, name, options = stack.session, stack.name, stack.options
    bucket = stack.bucket or s3.bucket_name(session)
    if options.role_arn:
        stack.sagemaker_role_arn = options.role_arn
        stack.reporter.step(f"SageMaker execution role {options.role_arn} (given)")
    else:
        stack.sagemaker_role_arn, changed = iam.ensure_role(session, sagemaker_role_spec(session, name, bucket), stack.tags)
        stack.changed("SageMaker role", changed)
        stack.reporter.step(f"SageMaker execution role {iam.role_name(name, 'sagemaker', session.region)}: reads s3://{bucket}/{name}/ only")
    if options.lambda_role_arn:
        stack.lambda_role_arn = options.lambda_role_arn
        stack.reporter.step(f"Lambda role {options.lambda_role_arn} (given)")
    else:
        stack.lambda_role_arn, changed = iam.ensure_role(session, lambda_role_spec(session, name), stack.tags)
        stack.changed("Lambda role", changed)
        stack.reporter.step(f"Lambda role {iam.role_name(name, 'lambda', session.region)}: invokes endpoint {sagemaker.endpoint_name(name)} only")
    return stack.sagemaker_role_arn, stack.lambda_role_arn


def sagemaker_role_spec(session: CloudSession, name: str, bucket: str) -> iam.RoleSpec:
    values = {
        "Partition": session.partition,
        "Region": session.region,
        "Account": session.account,
        "BucketName": bucket,
        "ModelPrefix": f"{name}/",
        "ImageAccount": policies.image_account(image_uri(session.region)),
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


def image_uri(region: str) -> str:
    """The XGBoost 3.2-0 image for the region (the SDK's table is slow to import: once)."""
    from l2c import versions

    if region not in _IMAGES:
        try:
            _IMAGES[region] = versions.image_uri(region)
        except ValueError:  # the SDK's "Unsupported region" for a region its table lacks
            raise CloudError(
                f"SageMaker's XGBoost {versions.CONTAINER_IMAGE_VERSION} image is not published in {region}; "
                f"supported regions: {', '.join(image_regions())}"
            ) from None
    return _IMAGES[region]


def image_regions() -> list[str]:
    from sagemaker.core import image_uris

    from l2c import versions

    table = image_uris.config_for_framework("xgboost")["inference"]["versions"]
    return sorted(table[versions.CONTAINER_IMAGE_VERSION]["registries"])


_IMAGES: dict[str, str] = {}


def create_model(stack: Stack) -> str:
    """Step 3: the SageMaker model: the XGBoost image, the artifact, the execution role."""
    _require(stack, "model_data_url", upload_model)
    _require(stack, "sagemaker_role_arn", create_roles)
    stack.model_name = sagemaker.model_name(stack.name, stack.version)
    image = image_uri(stack.session.region)
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
    created = sagemaker.ensure_endpoint_config(stack.session, stack.endpoint_config, stack.model_name, hosting, stack.tags)
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
    stack.endpoint_change = sagemaker.ensure_endpoint(session, stack.endpoint, stack.endpoint_config, stack.tags, stack.reporter)
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
    """Step 6: the Lambda function (lambda/ zipped, python3.13), its settings from the model card."""
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
    deployment.postman_environment = write_postman_environment(session, base_url, key)
    return deployment


def _ensure_route(stack: Stack) -> str:
    session, name = stack.session, stack.name
    api_id, created = apigateway.ensure_rest_api(session)
    stack.changed("REST API created", created)
    path = apigateway.resource_path(name)
    resource_id = apigateway.ensure_resource(session, api_id, path)
    uri = apigateway.integration_uri(session, stack.function_arn)
    stack.changed(f"POST /{path}", apigateway.ensure_post_method(session, api_id, resource_id, uri, not stack.options.public))
    _ensure_cors(stack, api_id, resource_id, path)
    source_arn = apigateway.method_arn(session, api_id, path)
    function = functions.function_name(name)
    stack.changed("invoke permission", functions.allow_invoke_from(session, function, f"l2c-{name}-apigateway", source_arn))
    stack.changed(f"stage {apigateway.STAGE} deployed", apigateway.ensure_stage_deployed(session, api_id))
    limits = stack.options.limits
    stack.changed(
        f"stage {apigateway.STAGE} throttled to {limits.rate_limit:g} requests/s (burst {limits.burst_limit}) for all callers",
        apigateway.ensure_stage_throttling(session, api_id, limits),
    )
    stack.reporter.step(f"API POST /{path} -> {function} (Lambda proxy), stage {apigateway.STAGE}")
    return api_id


def cors_origin_for(session: CloudSession, options: DeployOptions) -> str | None:
    """The origin browsers may call the API from, None for no CORS at all.

    Given (``--cors-origin``), it is used on either target. Otherwise the local cloud allows the
    origin of the pages it serves itself, its edge (``http://127.0.0.1:4566`` for `l2c up`), and
    AWS allows none: which site may call an API that bills you is yours to name, never ``*`` by
    default."""
    chosen = options.cors_origin
    if chosen == apigateway.NO_CORS:
        return None
    if chosen:
        return chosen
    if session.is_local:
        import os

        edge = session.endpoints.get("*") or os.environ.get("AWS_ENDPOINT_URL")
        return apigateway.origin_of(edge) if edge else None
    return None


def _ensure_cors(stack: Stack, api_id: str, resource_id: str, path: str) -> None:
    """The route's preflight and the API's error responses for the stack's origin (or none)."""
    session, origin = stack.session, stack.cors_origin
    before = apigateway.gateway_cors_origin(session, api_id)
    others = [route for route in apigateway.routed_paths(session, api_id) if route != f"/{path}"]
    if others and before != origin and (before is not None or origin is not None):
        # The gateway responses are the API's, shared by every route: the last deploy's origin wins.
        stack.reporter.warn(
            f"the API's errors now carry CORS for {origin or 'no origin'} instead of {before or 'none'}; deploy "
            f"the stacks of {', '.join(others)} again with the same --cors-origin so their pages agree"
        )
    if origin is None:
        stack.changed(f"OPTIONS /{path} removed (no CORS)", apigateway.remove_cors_method(session, api_id, resource_id))
        stack.changed("CORS headers removed from the API's errors",
                      apigateway.ensure_cors_gateway_responses(session, api_id, None))
        stack.reporter.step(f"no CORS on /{path}: browsers on other origins cannot call it (--cors-origin ORIGIN allows one)")
        return
    if origin == apigateway.ANY_ORIGIN:
        stack.reporter.warn(f"--cors-origin '*': a page on ANY website may call /{path} from a browser")
    stack.changed(f"OPTIONS /{path} (CORS preflight for {origin})",
                  apigateway.ensure_cors_method(session, api_id, resource_id, origin))
    stack.changed(f"CORS headers for {origin} on the API's errors",
                  apigateway.ensure_cors_gateway_responses(session, api_id, origin))
    stack.reporter.step(f"CORS: browsers on {origin} may call /{path} (preflight without key; errors carry the headers)")


def _require(stack: Stack, attribute: str, step) -> None:
    if not getattr(stack, attribute):
        raise CloudError(f"run {step.__name__}() first: this step needs its result ({attribute})")


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


def write_postman_environment(session: CloudSession, base_url: str, api_key: str) -> Path:
    """Fill the committed Postman environment's values into ``.l2c/`` (gitignored: it holds the key)."""
    name = "local" if session.is_local else "aws"
    templates = [POSTMAN_DIR / f"{name}.postman_environment{suffix}.json" for suffix in ("", ".template")]
    template = next((path for path in templates if path.is_file()), None)
    environment = json.loads(template.read_text()) if template else _blank_environment(name)
    values = {"baseUrl": base_url, "apiKey": api_key}
    present = {item["key"] for item in environment["values"]}
    for item in environment["values"]:
        if item["key"] in values:
            item["value"] = values[item["key"]]
    for key, value in values.items():
        if key not in present:
            environment["values"].append({"key": key, "value": value, "type": "default", "enabled": True})
    # It holds the key: readable by this user only (0600, in a 0700 folder).
    return write_private(state_dir() / f"{name}.postman_environment.json", json.dumps(environment, indent=2) + "\n")


def _blank_environment(name: str) -> dict:
    return {"name": f"l2c {name}", "values": [], "_postman_variable_scope": "environment"}


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
        _cors_plan_line(cors_origin_for(session, options)),
        # Throttles are not a cost control (AWS calls them best effort); a budget alert is.
        "tip: an AWS Budgets alert mails you when the month's cost passes a limit: "
        "https://console.aws.amazon.com/billing/home#/budgets (or `aws budgets create-budget`)",
    ]


def _cors_plan_line(origin: str | None) -> str:
    if origin is None:
        return ("no CORS: pages on other origins cannot call the API from a browser "
                "(--cors-origin https://your.site allows one: an OPTIONS preflight per route, CORS headers on errors)")
    if origin == apigateway.ANY_ORIGIN:
        return "CORS for ANY origin ('*'): a page on any website may call the API from a browser  <- you asked for '*'"
    return f"CORS for {origin}: an OPTIONS preflight (no key) per route, CORS headers on the API's errors: free"


# --------------------------------------------------------------------------- checks before anything is created

# What SageMaker's execution role does with a model (iam/sagemaker-execution-policy.json).
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
            card, sagemaker.endpoint_name(name), options.max_rows, cors_origin_for(session, options)
        )
        functions.check_environment(environment)
    image = image_uri(session.region)
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
    repository = f"arn:{session.partition}:ecr:{session.region}:{policies.image_account(image)}:repository/sagemaker-xgboost"
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
        "and logs:CreateLogStream/PutLogEvents (iam/sagemaker-execution-policy.json is exactly that)"
    )


def _check_may_create_function_role(session: CloudSession, name: str) -> str:
    caller = _caller_principal(session)
    spec = lambda_role_spec(session, name)
    role = f"arn:{session.partition}:iam::{session.account}:role{iam.ROLE_PATH}{spec.name}"
    denied = _denied(session, caller, CREATE_ROLE, role) if caller else None
    if denied is None:
        return f"the function's role {spec.name} will be created (whether you may could not be checked)"
    if denied:
        endpoint = session.arn("sagemaker", f"endpoint/{sagemaker.endpoint_name(name)}")
        raise CloudError(
            f"you ({caller}) may not create the function's role ({', '.join(denied)} denied); nothing was created.\n"
            f"  Pass --lambda-role-arn: a role lambda.amazonaws.com may assume, allowed sagemaker:InvokeEndpoint on "
            f"{endpoint} and logs:CreateLogStream/PutLogEvents (iam/lambda-invoke-endpoint-policy.json)"
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


# --------------------------------------------------------------------------- status / invoke


@dataclass
class Status:
    region: str
    target: str
    resources: list[Resource]
    # The local cloud's inference runtime, as GET /_l2c/runtime reports it (None on AWS).
    runtime: dict | None = None

    @property
    def stacks(self) -> list[str]:
        return inventory.stacks(self.resources)

    def of(self, stack: str | None) -> list[Resource]:
        return [resource for resource in self.resources if resource.stack == stack]

    @property
    def billing(self) -> list[Resource]:
        """Running endpoints: what costs money by the hour."""
        return [r for r in self.resources if r.kind == "endpoint" and "billed hourly" in r.detail]


def status(session: CloudSession | None = None, target: str = AUTO) -> Status:
    session = session or connect(target)
    runtime = local_runtime(session) if session.is_local else None
    return Status(session.region, session.target, inventory.inventory(session), runtime)


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


def api_access(session: CloudSession, name: str) -> tuple[str, str | None]:
    """The invoke URL of a deployed stack and the key it needs (None when public)."""
    api = apigateway.find_rest_api(session)
    path = apigateway.resource_path(name)
    if api is None or f"/{path}" not in apigateway.routed_paths(session, api["id"]):
        raise CloudError(f"stack {name} has no API route; deploy it first")
    method = next(
        item["resourceMethods"]["POST"]
        for item in apigateway.resources(session, api["id"])
        if item["path"] == f"/{path}"
    )
    key = apigateway.find_api_key(session) if method.get("apiKeyRequired") else None
    return f"{apigateway.invoke_url(session, api['id'])}/{path}", key["value"] if key else None


def invoke(name: str, rows, session: CloudSession | None = None, target: str = AUTO) -> dict:
    """Call the stack's endpoint directly (as the notebook's boto3 step does): CSV in, JSON out."""
    session = session or connect(target)
    body = rows if isinstance(rows, str) else "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    _check_row_widths(body, deployed_feature_names(session, name))
    response = session.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=sagemaker.endpoint_name(name), ContentType="text/csv", Accept="application/json", Body=body
    )
    return json.loads(response["Body"].read())


def deployed_feature_names(session: CloudSession, name: str) -> list[str] | None:
    """The columns the deployed model takes, as the stack's function was told at deploy time."""
    from botocore.exceptions import ClientError

    try:
        config = session.client("lambda").get_function_configuration(FunctionName=functions.function_name(name))
    except ClientError:
        return None  # an endpoint deployed without its function: nothing to check against
    variables = config.get("Environment", {}).get("Variables", {})
    names = variables.get("FEATURE_NAMES", "")
    if names:
        return names.split(",")
    count = variables.get("FEATURE_COUNT", "")
    # Names too many for the environment travel in the zip; the count is what the check needs.
    return [f"column {index}" for index in range(1, int(count) + 1)] if count.isdigit() else None


def _check_row_widths(body: str, feature_names: list[str] | None) -> None:
    # The container predicts a short row as if the missing columns were missing values, and
    # answers with a plausible number: the caller's mistake must be caught before it.
    if not feature_names:
        return
    for number, line in enumerate(body.strip().splitlines(), start=1):
        width = len(line.split(","))
        if width != len(feature_names):
            shown = ", ".join(feature_names[:20]) + (", ..." if len(feature_names) > 20 else "")
            raise CloudError(f"row {number} has {width} values but the model expects {len(feature_names)} ({shown})")


# A fresh deploy's key and stage take seconds to work on AWS (403 meanwhile), and its
# endpoint may answer 5xx while it warms up: call_api keeps trying for this long.
API_READY_WAIT_S = 60.0


def call_api(
    name: str, body: dict, session: CloudSession | None = None, target: str = AUTO, wait_s: float = API_READY_WAIT_S
) -> tuple[int, dict]:
    """POST a JSON body to the stack's API over HTTP, with its key, the way Postman does.

    A 403 or 5xx is retried with back-off for up to ``wait_s`` seconds (scaled to the local
    cloud's pace) before it is returned: right after a deploy, they mean "not ready yet"."""
    import httpx

    from l2c.cloud import retries

    session = session or connect(target)
    url, key = api_access(session, name)
    headers = {"x-api-key": key} if key else {}

    def post() -> httpx.Response:
        return httpx.post(url, json=body, headers=headers, timeout=60)

    def not_ready(response: httpx.Response) -> bool:
        return response.status_code == 403 or response.status_code >= 500

    response = retries.repeat_while(post, not_ready, session.poll_seconds(wait_s) if wait_s > 0 else 0,
                                    session.poll_seconds(retries.FIRST_DELAY_S), session.poll_seconds(retries.MAX_DELAY_S))
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"raw": response.text}


# --------------------------------------------------------------------------- destroy


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
    note(f"log group {functions.log_group_name(function)}", functions.delete_log_group(session, functions.log_group_name(function)))
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
