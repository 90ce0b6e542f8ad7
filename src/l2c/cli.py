"""The `l2c` command: a thin layer over the package's functions (the notebooks call the same)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="Take an XGBoost model from this laptop to a SageMaker prediction API, or to the embedded local cloud.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """One clear line on stderr and a non-zero exit: never a stack trace for a user's mistake."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# --------------------------------------------------------------------------- train / check


@app.command()
def train(
    dataset: Optional[str] = typer.Argument(
        None, help="iris, house-price or all (omit with --csv)."
    ),
    csv: Optional[Path] = typer.Option(None, help="Train on your own CSV (with a header row)."),
    target: Optional[str] = typer.Option(None, help="With --csv: the target column."),
    task: Optional[str] = typer.Option(None, help="With --csv: classification or regression."),
    name: Optional[str] = typer.Option(None, help="With --csv: the model's name (default: file name)."),
    models_dir: Path = typer.Option(Path("models"), help="Where model folders are written."),
    tutorial_params: bool = typer.Option(
        False, "--tutorial-params", help="Use the tutorial's hyperparameters (10 trees, depth 5, lr 0.2)."
    ),
) -> None:
    """Train, evaluate, save and check a model (joblib dump, model.tar.gz, model card, sample CSV)."""
    from l2c import datasets, training

    try:
        sources = _training_sources(dataset, csv, target, task, name)
        for source in sources:
            data = source() if callable(source) else source
            params = training.TUTORIAL_PARAMS if tutorial_params else None
            model_dir = _train_with_progress(data, models_dir, params)
            _print_card(model_dir)
    except (datasets.DataError, ValueError) as err:
        fail(str(err))


def _training_sources(dataset, csv, target, task, name) -> list:
    from l2c import datasets

    if csv is not None:
        if dataset:
            raise datasets.DataError("give either a data set name or --csv, not both")
        if not target or not task:
            raise datasets.DataError("--csv needs --target COLUMN and --task classification|regression")
        return [datasets.load_csv(csv, target=target, task=task, name=name)]
    if dataset == "all":
        return list(datasets.BUILT_IN.values())
    if dataset in datasets.BUILT_IN:
        return [datasets.BUILT_IN[dataset]]
    raise datasets.DataError(
        f"unknown data set {dataset!r}; use iris, house-price, all, or --csv FILE"
        if dataset
        else "name a data set (iris, house-price, all) or give --csv FILE"
    )


def _train_with_progress(data, models_dir: Path, params) -> Path:
    from l2c import training

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        job = progress.add_task(f"training {data.name} (cross-validation folds)", total=training.cv_fold_count())
        return training.train_and_save(
            data, models_dir=models_dir, params=params, on_fold=lambda: progress.advance(job)
        )


def _print_card(model_dir: Path) -> None:
    card = json.loads((model_dir / "model_card.json").read_text())
    metrics = card["metrics"]
    table = Table(title=f"{card['name']} ({card['task']}, {card['objective']})")
    table.add_column("metric")
    table.add_column("test split", justify="right")
    table.add_column(f"CV ({metrics['cv_scheme']})", justify="right")
    for metric, value in metrics["test_split"].items():
        cv = metrics["cross_validation"][metric]
        table.add_row(metric, f"{value:.4f}", f"{cv['mean']:.4f} ± {cv['std']:.4f}")
    console.print(table)
    predictions = card["sample_predictions"][:3]
    labels = card["class_labels"]
    for row, prediction in zip(card["sample_rows"], predictions):
        shown = (
            f"{labels[max(range(len(prediction)), key=prediction.__getitem__)]} "
            f"(p={max(prediction):.3f})"
            if labels and isinstance(prediction, list)
            else f"{prediction:.3f}"
        )
        console.print(f"  {','.join(f'{v:g}' for v in row)} -> {shown}", highlight=False)
    console.print(f"[green]saved and checked[/] {model_dir}/", highlight=False)


@app.command()
def check(model_dir: Path = typer.Argument(..., help="A model folder, e.g. models/iris.")) -> None:
    """Check an artifact as the SageMaker container will load it, and that it predicts as trained."""
    from l2c.artifact import ArtifactError
    from l2c.checks import check_model_dir

    try:
        report = check_model_dir(model_dir)
    except (ArtifactError, OSError, ValueError) as err:
        fail(str(err))
    for line in report.lines():
        console.print(line, highlight=False)
    console.print("[green]ok[/]: the container will load this artifact")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
