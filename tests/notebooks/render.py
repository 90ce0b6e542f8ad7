"""Run the notebooks and keep their outputs: ``make notebooks`` (or ``python tests/notebooks/render.py``).

A reader on GitHub sees what each cell printed and drew, so the committed notebooks carry their
outputs. Each notebook is executed top to bottom in a fresh kernel (from notebooks/, as Jupyter
would); the deployment notebook on a fresh local cloud of this process, on free ports. The
outputs are then made the same on every machine and every run:

- the local cloud's ports are written as `l2c up`'s defaults (4566, 4567, 4568);
- the repository's, the home and the temporary folders are written as `..`, `~` and `{tmp}`;
- what differs on every run is masked: the seconds a wait took, a transform job's time and
  random suffix, the REST API's random id (braces, not angle brackets: the outputs render as HTML);
- rich's empty live displays, and its warning that Jupyter lacks ipywidgets, are left out;
- the notebook's metadata is the committed one (no kernel path, no Python build), and cells keep
  no execution timestamps.

What must never be kept (FORBIDDEN, and images above MAX_IMAGE_BYTES) then fails the run; the
same rules are asserted on the committed files by tests/notebooks/test_outputs.py.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO / "notebooks"
# In reading order: the models are trained before they are deployed.
NOTEBOOKS = ("iris-model-creation.ipynb", "house-price-model-creation.ipynb", "model-deployment-aws.ipynb")
NEEDS_CLOUD = {"model-deployment-aws.ipynb"}
CELL_TIMEOUT_S = 900
MAX_IMAGE_BYTES = 60_000  # per PNG: a notebook stays small enough to diff and to render on GitHub
# The account id the local cloud answers is AWS's documentation placeholder
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html uses 123456789012).
PLACEHOLDER_ACCOUNT = "123456789012"
FORBIDDEN = {
    "a temporary folder": re.compile(r"/tmp/"),
    "a home folder": re.compile(r"/home/|/root/|/Users/"),
    "a machine path": re.compile(r"/work/"),
    "an account id": re.compile(rf"(?<!\d)(?!{PLACEHOLDER_ACCOUNT}(?!\d))\d{{12}}(?!\d)"),
    "a timestamp": re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d|(?<!\d)20\d{12}(?!\d)"),
}
TEXT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
# What changes on every run, and what it is shown as.
MASKS = (
    (re.compile(r" \(\d+ s\)(?=\n|$)", re.MULTILINE), ""),  # l2c.cloud.progress: "... InService (4 s)"
    (re.compile(r"\b(l2c-[a-z0-9-]+?-)20\d{12}-[0-9a-f]{6}\b"), r"\1{time}-{id}"),  # l2c.cloud.batch.new_job_name
    (re.compile(r"(?<=\bl2c \()[a-z0-9]{10}(?=\))"), "{api-id}"),  # the REST API l2c, by its id
)
# rich.live warns once per kernel when a spinner starts without ipywidgets (l2c.cloud.progress).
KERNEL_WARNINGS = 'ignore:install "ipywidgets":UserWarning'


def main() -> int:
    sys.path.insert(0, str(REPO))
    from tests.offline_aws import pin_offline

    pin_offline()  # whatever the shell holds, no notebook reaches an AWS account from here
    for name in NOTEBOOKS:
        path = NOTEBOOKS_DIR / name
        print(f"running {name} ...", flush=True)
        notebook = run(path, with_cloud=name in NEEDS_CLOUD)
        problems = problems_in(notebook)
        if problems:
            print(f"{name}: not written, its outputs hold\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        nbformat.write(notebook, path)
        print(f"wrote {name}: {image_sizes_text(notebook)}")
    return 0


def run(path: Path, with_cloud: bool):
    notebook = nbformat.read(path, as_version=4)
    metadata = published_metadata(notebook.metadata)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    if with_cloud:
        with fresh_local_cloud() as (env, ports):
            execute(notebook, env)
    else:
        ports = {}
        execute(notebook, dict(os.environ))
    notebook.metadata = metadata
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [sanitised(output, ports) for output in cell.outputs if not blank(output)]
    return notebook


def published_metadata(metadata) -> dict:
    """The kernel's name and language only: a run adds the Python build it ran on, Jupyter more."""
    kernelspec = metadata.get("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    return nbformat.from_dict({"kernelspec": copy.deepcopy(kernelspec), "language_info": {"name": "python"}})


def execute(notebook, env: dict[str, str]) -> None:
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute(env={**env, "PYTHONWARNINGS": KERNEL_WARNINGS})


class fresh_local_cloud:
    """A local cloud of this process on free ports, with a scratch folder for its state (API keys,
    Postman environments), as the kernel's environment and {free port: `l2c up`'s port}."""

    def __enter__(self):
        from l2c.local.cloud import LocalCloud, Ports

        self.saved = dict(os.environ)
        self.scratch = tempfile.TemporaryDirectory(prefix="l2c-notebooks-")
        self.cloud = LocalCloud(Ports.free(), models_dir=REPO / "models").start()
        defaults = Ports()
        ports = {
            self.cloud.ports.control_plane: defaults.control_plane,
            self.cloud.ports.runtime: defaults.runtime,
            self.cloud.ports.api: defaults.api,
        }
        env = {**os.environ, **self.cloud.env, "L2C_STATE_DIR": str(Path(self.scratch.name) / "state")}
        return env, ports

    def __exit__(self, *exc_info) -> None:
        self.cloud.stop()
        self.scratch.cleanup()
        os.environ.clear()
        os.environ.update(self.saved)


def blank(output) -> bool:
    """rich's live display, once it has finished: an empty text and an empty <pre>."""
    data = output.get("data", {})
    return output.output_type == "display_data" and "text/plain" in data and not data["text/plain"].strip()


def sanitised(output, ports: dict[int, int]):
    if "text" in output:
        output.text = stable_text(output.text, ports)
    for kind in TEXT_TYPES:
        if isinstance(output.get("data", {}).get(kind), str):
            output.data[kind] = stable_text(output.data[kind], ports)
    return output


def stable_text(text: str, ports: dict[int, int]) -> str:
    for free, default in ports.items():
        text = re.sub(rf"(?<=127\.0\.0\.1:){free}(?!\d)|(?<=localhost:){free}(?!\d)", str(default), text)
    for folder, shown in machine_folders():
        text = folder.sub(shown, text)
    for pattern, shown in MASKS:
        text = pattern.sub(shown, text)
    return text


def machine_folders() -> list[tuple[re.Pattern, str]]:
    """Longest first, so the notebooks' folder wins over the repository's and the home's; a
    temporary folder goes with its random name."""
    temporary = [
        rf"{re.escape(str(folder))}/[^/\s'\"]+" for folder in {Path(tempfile.gettempdir()).resolve(), Path("/tmp")}
    ]
    folders = [(str(NOTEBOOKS_DIR), "."), (str(REPO), ".."), (str(Path.home()), "~")]
    folders = [(rf"{re.escape(folder)}(?![\w.-])", shown) for folder, shown in folders]
    folders += [(pattern, "{tmp}") for pattern in temporary]
    ordered = sorted(folders, key=lambda pair: len(pair[0]), reverse=True)
    return [(re.compile(pattern), shown) for pattern, shown in ordered]


def problems_in(notebook) -> list[str]:
    """What test_outputs.py would refuse in the notebook's outputs."""
    problems = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if output.output_type == "error":
                problems.append(f"cell {number}: an error ({output.ename})")
            for what, pattern in FORBIDDEN.items():
                found = pattern.search(output_text(output))
                if found:
                    problems.append(f"cell {number}: {what} ({found.group(0)!r})")
            for size in png_sizes(output):
                if size > MAX_IMAGE_BYTES:
                    problems.append(f"cell {number}: a {size:,}-byte PNG (at most {MAX_IMAGE_BYTES:,}: lower its dpi)")
    return problems


def output_text(output) -> str:
    """Every text an output shows (images left out: base64 can spell anything)."""
    parts = [output.get("text", ""), output.get("ename", ""), output.get("evalue", "")]
    parts += output.get("traceback", [])
    parts += [value for kind, value in output.get("data", {}).items() if kind in TEXT_TYPES and isinstance(value, str)]
    return "\n".join(parts)


def png_sizes(output) -> list[int]:
    png = output.get("data", {}).get("image/png")
    return [len(base64.b64decode(png))] if png else []


def image_sizes_text(notebook) -> str:
    sizes = [size for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs for size in png_sizes(o)]
    return ", ".join(f"{size / 1000:.1f} KB" for size in sizes) + " of PNG" if sizes else "no image"


if __name__ == "__main__":
    sys.exit(main())
