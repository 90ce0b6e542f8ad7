"""The IAM documents of a deploy, rendered from the JSON templates in the package's ``iam/``.

``src/l2c/iam/`` is the single source: the deploy code renders these files and a person in the
console pastes the same ones (see src/l2c/iam/README.md). The folder ships inside the package
(``l2c.config.IAM_DIR``), so an installed wheel carries it as an editable install does; if it is
missing all the same (a broken install), the error says so.

Placeholders look like ``${Region}``. IAM's own policy variables (``${aws:username}``) contain a
colon and are left alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from l2c.config import IAM_DIR
from l2c.errors import L2CError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")
# SageMaker lower-cases the names inside its ARNs; IAM compares ARNs case-sensitively, so a
# policy naming "arn:...:endpoint/My-Endpoint" would never match the endpoint it is meant for.
SAGEMAKER_ARN_PREFIX = "arn:${Partition}:sagemaker:"


class PolicyTemplateError(L2CError, ValueError):
    """A template is missing, or a value for it is missing or would widen the policy."""


def template_names() -> list[str]:
    """The templates in src/l2c/iam/, without the .json suffix."""
    return sorted(path.stem for path in _iam_dir().glob("*.json"))


def load_template(template_name: str) -> dict[str, Any]:
    name = template_name.removesuffix(".json")
    path = _iam_dir() / f"{name}.json"
    if not path.is_file():
        raise PolicyTemplateError(f"no IAM template {name!r}; there are: {', '.join(template_names())}")
    return json.loads(path.read_text())


def placeholders(template_name: str) -> set[str]:
    """The names a template needs values for."""
    return set(PLACEHOLDER.findall(json.dumps(load_template(template_name))))


def render_policy(template_name: str, **values: str) -> dict[str, Any]:
    """The template with every ``${Name}`` replaced; extra values are ignored.

    A missing value raises PolicyTemplateError naming every missing one; so does a value
    holding a wildcard, which would quietly turn a one-resource grant into a many-resource one.
    ``Partition`` is never guessed from the region's name: a guess misses every partition the
    table does not know (aws-eusc, aws-iso-e, aws-iso-f, ...), and the bucket policy already
    uses the session's own (``CloudSession.partition``, from botocore's endpoint data).
    """
    values = {name: str(value) for name, value in values.items()}
    needed = placeholders(template_name)
    missing = sorted(needed - values.keys())
    if missing:
        raise PolicyTemplateError(f"IAM template {template_name!r} needs values for: {', '.join(missing)}")
    for name in sorted(needed):
        _check_value(name, values[name])
    return _substitute(load_template(template_name), values)


def image_account(image_uri: str) -> str:
    """The registry account of an ECR image URI such as ``683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0``."""
    account = image_uri.split(".", 1)[0]
    if not re.fullmatch(r"\d{12}", account):
        raise PolicyTemplateError(f"{image_uri!r} is not an ECR image URI")
    return account


def _iam_dir() -> Path:
    if not IAM_DIR.is_dir():
        raise PolicyTemplateError(
            f"the iam/ templates are not at {IAM_DIR}: this l2c install is incomplete; reinstall it from its repository (pip install .)"
        )
    return IAM_DIR


def _check_value(name: str, value: str) -> None:
    if not value.strip():
        raise PolicyTemplateError(f"the value for {name} is empty")
    if any(char in value for char in '*?$"') or any(char.isspace() for char in value):
        raise PolicyTemplateError(f"the value for {name} must not hold wildcards, quotes, '$' or spaces: {value!r}")


def _substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _substitute(child, values) for key, child in node.items()}
    if isinstance(node, list):
        return [_substitute(child, values) for child in node]
    if isinstance(node, str):
        lower = node.startswith(SAGEMAKER_ARN_PREFIX)
        return PLACEHOLDER.sub(lambda match: _value(match.group(1), values, lower), node)
    return node


def _value(name: str, values: dict[str, str], lower: bool) -> str:
    value = values[name]
    return value.lower() if lower else value
