"""The one place for what l2c reads from outside its code: resource folders, ``L2C_*`` variables,
and the fake credentials of the local cloud.

The folders live inside the package, so a wheel (``pip install .``) carries them like an editable
install does; they are found from this file, never from a repository root.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# Least-privilege policy and trust documents, rendered by l2c.cloud.policies and pasted by hand.
IAM_DIR = PACKAGE_DIR / "iam"
# The API's Lambda handler: one self-contained file, zipped as it is by l2c.cloud.functions.
LAMBDA_DIR = PACKAGE_DIR / "lambda"
# The Postman collection and its environment templates, filled in by a deploy.
POSTMAN_DIR = PACKAGE_DIR / "postman"
# The Boston house prices CSV and its provenance.
DATA_DIR = PACKAGE_DIR / "data"

# Where deploy state (.l2c/) goes instead of the working directory; the demo points it at a temp folder.
STATE_DIR_ENV = "L2C_STATE_DIR"
# Set by `l2c up` and the test session: where the local execute-api gateway listens.
EXECUTE_API_URL_ENV = "L2C_EXECUTE_API_URL"
# Exported by the local cloud: the fraction of AWS's durations its delays take (l2c.local.pace).
PACE_ENV = "L2C_PACE"
# A folder holding another lambda_function.py to deploy instead of the bundled one.
LAMBDA_DIR_ENV = "L2C_LAMBDA_DIR"
# The local cloud's per-instance-type endpoint quotas, e.g. "ml.m5.large=0,ml.t2.medium=2".
QUOTAS_ENV = "L2C_INSTANCE_QUOTAS"
# `l2c serve` hands its worker processes the model path, the digest it checked, and the refresh period.
SERVE_MODEL_ENV = "L2C_SERVE_MODEL"
SERVE_MODEL_SHA256_ENV = "L2C_SERVE_MODEL_SHA256"
RUNTIME_REFRESH_ENV = "L2C_RUNTIME_REFRESH_SECONDS"

# The local cloud accepts any key pair; these are the ones l2c prints and exports (moto's convention).
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
