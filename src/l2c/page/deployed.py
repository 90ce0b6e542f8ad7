"""The page of a deployed stack: its API's invoke URL and key, and the model card behind it.

The card comes from the model folder when its booster is the one the stack's endpoint serves
(its version, the first 12 hex digits of the booster's SHA-256, ends the SageMaker model's
name); otherwise the page is built from what the deployed function was told at deploy time
(its FEATURE_NAMES and CLASS_LABELS), without ranges or unit. The page then still takes the
deployed model's columns, never a retrained folder's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from l2c.cloud import calling, functions, names, sagemaker
from l2c.cloud.session import CloudError, CloudSession, write_private
from l2c.page import PageConfig, PageError, render

PAGES_DIR = Path("pages")


@dataclass(frozen=True)
class FoundCard:
    card: dict
    source: str  # where it came from, said to whoever asked for the page


def deployed_version(session: CloudSession, name: str) -> str | None:
    """The model version the stack's endpoint serves, from its SageMaker model's name."""
    endpoint = sagemaker.describe_endpoint(session, sagemaker.endpoint_name(name))
    config = endpoint and sagemaker.describe_endpoint_config(session, endpoint.get("EndpointConfigName", ""))
    variants = (config or {}).get("ProductionVariants") or [{}]
    model = variants[0].get("ModelName") or ""
    prefix = sagemaker.model_name(name, "")
    if not model.startswith(prefix):
        return None
    return model[len(prefix) :] or None


def find_card(session: CloudSession, name: str, model_dirs: list[Path]) -> FoundCard:
    version = deployed_version(session, name)
    for folder in model_dirs:
        path = Path(folder) / "model_card.json"
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and version and names.model_version(card) == version:
            return FoundCard(card, str(path))
    return FoundCard(card_from_function(session, name), f"the deployed function {functions.function_name(name)}")


def card_from_function(session: CloudSession, name: str) -> dict:
    configuration = functions.get_configuration(session, functions.function_name(name))
    if configuration is None:
        raise CloudError(f"stack {name} has no Lambda function; deploy it first")
    variables = configuration.get("Environment", {}).get("Variables", {})
    feature_names = calling.deployed_feature_names(session, name)
    if not feature_names:
        raise PageError(f"the function of stack {name} does not say which columns the model takes (FEATURE_NAMES)")
    labels = [label for label in variables.get("CLASS_LABELS", "").split(",") if label]
    return {
        "name": name,
        "task": "classification" if labels else "regression",
        "feature_names": feature_names,
        "class_labels": labels or None,
    }


def stack_page(
    session: CloudSession, name: str, model_dirs: list[Path], with_key: bool
) -> tuple[PageConfig, FoundCard]:
    """What the stack's page holds; the API key only when ``with_key`` is true."""
    url, key = calling.api_access(session, name)
    found = find_card(session, name, model_dirs)
    config = PageConfig(
        stack=name, invoke_url=url, card=found.card, api_key=key if with_key else None, key_required=key is not None
    )
    return config, found


@dataclass(frozen=True)
class WrittenPage:
    path: Path
    invoke_url: str
    card_source: str
    holds_key: bool


def write_page(
    session: CloudSession, name: str, path: Path | None = None, model_dir: Path | None = None, with_key: bool = False
) -> WrittenPage:
    """`l2c page`: write the stack's page to ``path`` (default pages/NAME.html).

    A file outlives the moment: copied, committed, mailed. So it holds the API key only when
    asked (``with_key``), and is then readable by this user only, as the key files in .l2c/ are."""
    names.check_stack_name(name)
    folder = Path(model_dir) if model_dir is not None else Path("models") / name
    config, found = stack_page(session, name, [folder], with_key)
    html = render(config)
    path = Path(path) if path is not None else PAGES_DIR / f"{name}.html"
    if config.api_key:
        write_private(path, html)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    return WrittenPage(
        path=path, invoke_url=config.invoke_url, card_source=found.source, holds_key=bool(config.api_key)
    )
