"""The versions that must agree between the laptop and the SageMaker container.

SageMaker's built-in XGBoost image 3.2-0 runs XGBoost 3.2.0 on Python 3.12. A booster saved by a
different major.minor may load with other defaults or not at all, so training refuses to run on
a drifted install and the artifact check refuses boosters saved by another version.
"""

from __future__ import annotations

CONTAINER_IMAGE_VERSION = "3.2-0"
CONTAINER_XGBOOST_VERSION = "3.2.0"
CONTAINER_PYTHON_VERSION = "3.12"
# The Lambda runtime the handler is deployed with (python3.8 is retired).
LAMBDA_RUNTIME = "python3.13"


def major_minor(version: str | tuple[int, ...]) -> tuple[int, int]:
    parts = version.split(".") if isinstance(version, str) else version
    return int(parts[0]), int(parts[1])


def local_xgboost_version() -> str:
    import xgboost

    return xgboost.__version__


def check_local_xgboost() -> None:
    """Fail loudly when the installed xgboost drifted from the container's."""
    local = local_xgboost_version()
    if major_minor(local) != major_minor(CONTAINER_XGBOOST_VERSION):
        raise RuntimeError(
            f"xgboost {local} is installed, but the SageMaker XGBoost {CONTAINER_IMAGE_VERSION} "
            f"container runs {CONTAINER_XGBOOST_VERSION}; install requirements.txt"
        )


def image_uri(region: str) -> str:
    """The XGBoost container's image URI for a region, from the SageMaker SDK's own table."""
    from sagemaker.core import image_uris  # slow import (~3 s): only when deploying

    return image_uris.retrieve(framework="xgboost", region=region, version=CONTAINER_IMAGE_VERSION)
