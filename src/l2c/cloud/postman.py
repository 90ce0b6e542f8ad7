"""The Postman environment of a deployment: the committed one (src/l2c/postman/) filled
with the deployment's invoke URL and API key, written where only this user can read it."""

from __future__ import annotations

import json
from pathlib import Path

from l2c.cloud.session import CloudSession, state_dir, write_private
from l2c.config import POSTMAN_DIR


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
