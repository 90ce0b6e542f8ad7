"""Which cloud a deploy talks to, and who it is there.

There is one code path for real AWS and for the embedded local cloud: boto3 reaches the local
cloud through the standard endpoint variables (``AWS_ENDPOINT_URL`` and the per-service
``AWS_ENDPOINT_URL_<SERVICE>``), which `l2c up` prints and the test session exports. The account
and region always come from the session itself (STS), never from a constant.

Targets:
- ``auto``  the standard boto3 configuration chain, endpoint variables included (notebooks);
- ``local`` the embedded cloud: the endpoint variables, else the file `l2c up` writes;
- ``aws``   real AWS, ignoring any endpoint variables left in the shell.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    SSOError,
    TokenRetrievalError,
)

from l2c.config import EXECUTE_API_URL_ENV, LOCAL_CREDENTIALS, LOCAL_REGION, PACE_ENV, STATE_DIR_ENV
from l2c.errors import L2CError

AUTO, LOCAL, AWS = "auto", "local", "aws"
TARGETS = (AUTO, LOCAL, AWS)

# Below this a poll of the local cloud is a busy loop.
MIN_LOCAL_POLL_S = 0.05
LOCAL_CLOUD_FILE = "local-cloud.json"

_RETRIES = {"mode": "standard", "max_attempts": 5}


class CloudError(L2CError, RuntimeError):
    """A cloud step cannot go on; the message says what happened and what to do."""


def _is_missing(err: ClientError, missing) -> bool:
    return missing(err) if callable(missing) else err.response["Error"]["Code"] in missing


def get_if_present(call, missing, default=None):
    """``call()``, or ``default`` when the service answers that the thing is not there.

    ``missing`` is a set of error codes, or a predicate for services whose "not found" shares
    its code with other errors (SageMaker's ValidationException).
    """
    try:
        return call()
    except ClientError as err:
        if _is_missing(err, missing):
            return default
        raise


def delete_if_present(call, missing) -> bool:
    """``call()`` a delete; True when it deleted, False when there was nothing to delete, so
    destroy tolerates half-deployed and already-cleaned stacks."""
    try:
        call()
    except ClientError as err:
        if _is_missing(err, missing):
            return False
        raise
    return True


@dataclass
class CloudSession:
    """A boto3 session with the facts every step needs: region, account, partition."""

    boto: boto3.Session
    region: str
    account: str
    partition: str
    target: str
    execute_api_url: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    pace: float | None = None  # the local cloud's pace; None on AWS
    bucket: str | None = None  # the artifact bucket the user named (--bucket); None: l2c's own (s3.bucket_name)
    config: Config = field(default_factory=lambda: Config(retries=_RETRIES))
    _clients: dict = field(default_factory=dict, repr=False)

    def client(self, service: str, attempts: int | None = None):
        """A cached boto3 client; ``attempts`` overrides the retry budget (1: no retries)."""
        if (service, attempts) not in self._clients:
            config = self.config
            if attempts is not None:
                config = config.merge(Config(retries={"mode": "standard", "max_attempts": attempts}))
            endpoint = self.endpoints.get(service) or self.endpoints.get("*")
            self._clients[service, attempts] = self.boto.client(
                service, region_name=self.region, config=config, endpoint_url=endpoint
            )
        return self._clients[service, attempts]

    def arn(self, service: str, resource: str, region: str | None = None) -> str:
        region = self.region if region is None else region
        return f"arn:{self.partition}:{service}:{region}:{self.account}:{resource}"

    @property
    def is_local(self) -> bool:
        return self.target == LOCAL

    def poll_seconds(self, aws_seconds: float) -> float:
        """How often to poll for something AWS is doing: AWS's own interval there, scaled by the
        local cloud's pace here (its delays are scaled the same way)."""
        if self.pace is None:
            return aws_seconds
        return max(MIN_LOCAL_POLL_S, aws_seconds * self.pace)


def state_dir() -> Path:
    """Where l2c keeps files that must not be committed (``.l2c/``, gitignored)."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.cwd() / ".l2c")


def local_cloud_file() -> Path:
    return state_dir() / LOCAL_CLOUD_FILE


PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by this user only, its folder too.

    What l2c keeps in ``.l2c/`` is an API key or credentials: a umask of 022 would leave them
    readable by every account on the machine (a shared notebook host, a CI runner). The file is
    created 0600 before a byte is written and replaced atomically, so no reader ever sees it
    half-written or with wider permissions. The folder is made 0700 when l2c creates it, and
    ``.l2c/`` itself is narrowed to 0700 if it was wider; any other existing folder (a
    ``--state-file`` in /tmp) is left as it is."""
    path = Path(path)
    folder_existed = path.parent.is_dir()
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if not folder_existed or path.parent.resolve() == state_dir().resolve():
        os.chmod(path.parent, PRIVATE_DIR_MODE)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "w") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)  # a file left by an earlier run keeps its mode
            handle.write(text)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    staging.replace(path)
    return path


def connect(
    target: str = AUTO, region: str | None = None, profile: str | None = None, env: dict[str, str] | None = None
) -> CloudSession:
    """Open a session on the target and ask STS who we are; fail with a clear message if we can't.

    ``env``: the variables of a local cloud this process started (``LocalCloud.env``), for target
    ``local`` only; without it, the environment or the file `l2c up` wrote says where it is."""
    if target not in TARGETS:
        raise CloudError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    if env is not None and target != LOCAL:
        raise CloudError(f"a local cloud's variables were given for target {target!r}; they are for {LOCAL!r} only")
    if target == LOCAL:
        return _connect_local(region, {**LOCAL_CREDENTIALS, **env} if env is not None else local_cloud_env())
    boto = _aws_session(profile, region)
    config = Config(retries=_RETRIES, ignore_configured_endpoint_urls=(target == AWS))
    # boto3 sessions read AWS_DEFAULT_REGION; AWS_REGION is what Lambda and most tools set.
    region = boto.region_name or os.environ.get("AWS_REGION")
    if not region:
        raise CloudError(
            "no AWS region is configured: set AWS_REGION (for example us-east-1), run `aws configure`, or pass --region"
        )
    points_at_local = target == AUTO and bool(os.environ.get("AWS_ENDPOINT_URL"))
    session = CloudSession(
        boto=boto,
        region=region,
        account="",
        partition=boto.get_partition_for_region(region),
        target=LOCAL if points_at_local else AWS,
        execute_api_url=os.environ.get(EXECUTE_API_URL_ENV) if points_at_local else None,
        pace=_pace(os.environ) if points_at_local else None,
        config=config,
    )
    session.account = _account_of(session)
    return session


def _aws_session(profile: str | None, region: str | None) -> boto3.Session:
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as err:  # e.g. ProfileNotFound
        raise CloudError(f"cannot open an AWS session: {err}") from None


def _connect_local(region: str | None, env: dict[str, str]) -> CloudSession:
    region = region or env.get("AWS_DEFAULT_REGION") or LOCAL_REGION
    boto = boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )
    endpoints = {"*": env["AWS_ENDPOINT_URL"]}
    if env.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"):
        endpoints["sagemaker-runtime"] = env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]
    session = CloudSession(
        boto=boto,
        region=region,
        account="",
        partition=boto.get_partition_for_region(region),
        target=LOCAL,
        execute_api_url=env.get(EXECUTE_API_URL_ENV),
        endpoints=endpoints,
        pace=_pace(env),
    )
    session.account = _account_of(session)
    return session


def _pace(env) -> float:
    try:
        return float(env.get(PACE_ENV) or 0.0)
    except ValueError:
        return 0.0


def local_cloud_env() -> dict[str, str]:
    """The variables that point boto3 at the running local cloud: from the environment when
    `l2c up` (or the test session) exported them, else from the file `l2c up` wrote."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        env = {key: value for key, value in os.environ.items() if key.startswith(("AWS_", "L2C_"))}
        return {**LOCAL_CREDENTIALS, **env}
    path = local_cloud_file()
    if not path.is_file():
        raise CloudError(
            "no local cloud is running: start one with `l2c up` in another terminal "
            "(or pass --aws to deploy to your AWS account)"
        )
    try:
        return {**LOCAL_CREDENTIALS, **json.loads(path.read_text())["env"]}
    except (ValueError, KeyError) as err:
        raise CloudError(f"{path} is unreadable ({err}); stop and restart `l2c up`") from None


def sso_login_hint(err: BaseException, profile: str | None = None) -> str | None:
    """What to do when botocore could not refresh an IAM Identity Center (SSO) session, or None
    for any other error. botocore raises UnauthorizedSSOTokenError (an SSOError) for an expired
    cached token and TokenRetrievalError when refreshing it fails (botocore/credentials.py,
    botocore/tokens.py): both mean the user must sign in again."""
    if not isinstance(err, (SSOError, TokenRetrievalError)):
        return None
    command = "aws sso login" + (f" --profile {profile}" if profile and profile != "default" else "")
    return f"your AWS SSO session has expired or is invalid ({err}): run `{command}`, then run l2c again"


def _account_of(session: CloudSession) -> str:
    sts = session.client("sts")
    try:
        return sts.get_caller_identity()["Account"]
    except (SSOError, TokenRetrievalError) as err:
        raise CloudError(sso_login_hint(err, session.boto.profile_name)) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise CloudError(
            "no AWS credentials found: run `aws configure`, set AWS_PROFILE, or run inside "
            "SageMaker with a role; to try l2c without an AWS account, run `l2c up`"
        ) from None
    except EndpointConnectionError as err:
        where = "the local cloud" if session.target == LOCAL else "AWS STS"
        hint = " Is `l2c up` still running?" if session.target == LOCAL else ""
        raise CloudError(f"cannot reach {where} ({err.kwargs.get('endpoint_url', err)}).{hint}") from None
    except ClientError as err:
        error = err.response.get("Error", {})
        raise CloudError(
            f"AWS refused the credentials ({error.get('Code')}: {error.get('Message')}); "
            "refresh them (e.g. `aws sso login`) or pick another profile"
        ) from None


def caller_role_arn(session: CloudSession) -> str | None:
    """The IAM role behind an assumed-role session (a SageMaker notebook's own role), if any."""
    arn = session.client("sts").get_caller_identity()["Arn"]
    parts = arn.split(":", 5)
    if len(parts) < 6 or not parts[5].startswith("assumed-role/"):
        return None
    role_name = parts[5].split("/")[1]
    try:
        # The STS ARN drops the role's path (SageMaker's roles live under /service-role/).
        return session.client("iam").get_role(RoleName=role_name)["Role"]["Arn"]
    except ClientError as err:
        raise CloudError(
            f"cannot read role {role_name} ({err.response['Error'].get('Code')}); pass its ARN instead "
            "(SageMaker console: the notebook's IAM role ARN)"
        ) from None
