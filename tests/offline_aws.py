"""How the test suite keeps away from real AWS accounts (used by the root conftest.py)."""

from __future__ import annotations

import os
import re

# The suite never reaches AWS, whatever the developer's shell holds: every test, notebook kernel
# and subprocess inherits fake credentials, no config or credentials files and no instance
# metadata, and a test that needs the local cloud when it failed to start gets an endpoint
# nothing listens on (the discard port) instead of the developer's account.
UNREACHABLE_ENDPOINT = "http://127.0.0.1:9"
OFFLINE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Every other way botocore finds credentials, a profile or an endpoint.
REAL_AWS_VARIABLES = re.compile(
    r"^AWS_(PROFILE|DEFAULT_PROFILE|SESSION_TOKEN|SECURITY_TOKEN|ROLE_ARN|ROLE_SESSION_NAME|WEB_IDENTITY_TOKEN_FILE"
    r"|CONTAINER_\w+|ENDPOINT_URL\w*|SSO_\w+|CREDENTIAL_EXPIRATION)$"
)


def pin_offline(environ=os.environ) -> None:
    for name in [name for name in environ if REAL_AWS_VARIABLES.match(name)]:
        del environ[name]
    environ.update(OFFLINE_AWS)
