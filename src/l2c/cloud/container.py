"""Which SageMaker XGBoost container image loads and serves the model, in each region."""

from __future__ import annotations

from l2c.cloud.session import CloudError

_IMAGES: dict[str, str] = {}


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
