"""The versions that must agree between the laptop and the SageMaker container.

SageMaker's built-in XGBoost image 3.2-0 runs XGBoost 3.2.0 on Python 3.12. A booster saved by a
different major.minor may load with other defaults or not at all, so training refuses to run on
a drifted install and the artifact check refuses boosters saved by another version.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from l2c.errors import L2CError

CONTAINER_IMAGE_VERSION = "3.2-0"
CONTAINER_XGBOOST_VERSION = "3.2.0"
# The Lambda runtime the handler is deployed with (python3.8 is retired).
LAMBDA_RUNTIME = "python3.13"


def major_minor(version: str | tuple[int, ...]) -> tuple[int, int]:
    parts = version.split(".") if isinstance(version, str) else version
    return int(parts[0]), int(parts[1])


def local_xgboost_version() -> str:
    import xgboost

    return xgboost.__version__


class XgboostDrift(L2CError, RuntimeError):
    """The installed xgboost is another major.minor than the container's: its boosters would not match."""


def check_local_xgboost() -> None:
    """Fail loudly when the installed xgboost drifted from the container's."""
    local = local_xgboost_version()
    if major_minor(local) != major_minor(CONTAINER_XGBOOST_VERSION):
        raise XgboostDrift(
            f"xgboost {local} is installed, but the SageMaker XGBoost {CONTAINER_IMAGE_VERSION} "
            f"container runs {CONTAINER_XGBOOST_VERSION}; install requirements.txt"
        )


def image_uri(region: str) -> str:
    """The XGBoost container's image URI for a region, from the SageMaker SDK's own table.

    Importing the SDK takes seconds (most of a local deploy's); its table only changes with the
    SDK's version, so the answer is kept in the user's cache folder under that version.
    """
    key = f"sagemaker-core {_sdk_version()} xgboost {CONTAINER_IMAGE_VERSION} {region}"
    cached = _read_image_cache().get(key)
    if cached:
        return cached
    from sagemaker.core import image_uris  # slow import (~3 s): only when the cache has no answer

    uri = image_uris.retrieve(framework="xgboost", region=region, version=CONTAINER_IMAGE_VERSION)
    _write_image_cache(key, uri)
    return uri


def image_cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "l2c" / "image-uris.json"


def _sdk_version() -> str:
    try:
        return version("sagemaker-core")
    except PackageNotFoundError:
        return "unknown"


def _read_image_cache() -> dict:
    try:
        found = json.loads(image_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _write_image_cache(key: str, uri: str) -> None:
    path = image_cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        staging.write_text(json.dumps({**_read_image_cache(), key: uri}, indent=1, sort_keys=True) + "\n")
        staging.replace(path)
    except OSError:  # a read-only home only costs the next deploy the slow lookup
        pass
