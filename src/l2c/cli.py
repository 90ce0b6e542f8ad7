"""The `l2c` command: a thin layer over the package's functions (the notebooks call the same)."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand


class _OneErrorLine(TyperCommand):
    """A command that runs inside `error_boundary`, with its own --profile for the SSO hint."""

    def invoke(self, ctx):
        with error_boundary(ctx.params.get("profile")):
            return super().invoke(ctx)


class _App(typer.Typer):
    """Every command of the app is a `_OneErrorLine`: the CLI has one place that turns errors into a line."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or _OneErrorLine, **kwargs)


app = _App(
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


def fail_cloud(err: Exception, profile: str | None = None) -> None:
    """A cloud error as one line; an expired SSO session (even half-way) says how to sign in."""
    from l2c.cloud.session import sso_login_hint

    fail(sso_login_hint(err, profile) or str(err))


@contextmanager
def error_boundary(profile: str | None = None):
    """The one place errors meant for the user become one `error:` line and exit code 1.

    Those are l2c's own (`L2CError`), botocore's (an AWS answer or an SSO session to renew) and
    files that cannot be read or written (OSError). Anything else is a bug: its traceback stays.
    """
    from l2c.errors import L2CError

    try:
        yield
    except L2CError as err:
        fail(str(err))
    except OSError as err:
        fail(str(err))
    except Exception as err:
        if not _from_botocore(err):
            raise
        fail_cloud(err, profile)


def _from_botocore(err: Exception) -> bool:
    # Only a command that talked to AWS has botocore loaded; `l2c train` need not import it to tell.
    found = sys.modules.get("botocore.exceptions")
    return found is not None and isinstance(err, (found.ClientError, found.BotoCoreError))


INTERRUPTED = 130  # the shell's exit status after Ctrl-C


def fail_interrupted(name: str | None, destroying: bool, aws: bool, region: str | None, profile: str | None) -> None:
    """Ctrl-C half-way: what may be running up the bill, and the command that removes it."""
    from l2c.cloud import sagemaker

    flags = (
        (" --aws" if aws else "")
        + (f" --region {region}" if region else "")
        + (f" --profile {profile}" if profile else "")
    )
    endpoint = f"endpoint {sagemaker.endpoint_name(name)}" if name else "endpoints of the stacks"
    billing = "bill by the hour" if aws else "would bill by the hour on AWS"
    destroy = f"`l2c destroy {name or '--all'}{flags}`"
    if destroying:
        what, then = f"destroying {name or 'every stack'}", f"Run {destroy} again to finish"
    else:
        what, then = f"deploying {name}", f"Remove everything with {destroy}, or finish with `l2c deploy {name}{flags}`"
    fail(
        f"interrupted while {what}: what exists so far stays, and the {endpoint} {billing} from the moment "
        f"they are created (Creating included) until deleted. {then}; `l2c status{flags}` shows what is left.",
        code=INTERRUPTED,
    )


# --------------------------------------------------------------------------- train / check


@app.command()
def train(
    dataset: str | None = typer.Argument(None, help="iris, house-price or all (omit with --csv)."),
    csv: Path | None = typer.Option(None, help="Train on your own CSV (with a header row)."),
    target: str | None = typer.Option(None, help="With --csv: the target column."),
    task: str | None = typer.Option(None, help="With --csv: classification or regression."),
    name: str | None = typer.Option(None, help="With --csv: the model's name (default: file name)."),
    models_dir: Path = typer.Option(Path("models"), help="Where model folders are written."),
    tutorial_params: bool = typer.Option(
        False, "--tutorial-params", help="Use the tutorial's hyperparameters (10 trees, depth 5, lr 0.2)."
    ),
) -> None:
    """Train, evaluate, save and check a model (joblib dump, model.tar.gz, model card, sample CSV)."""
    from l2c import training

    for source in _training_sources(dataset, csv, target, task, name):
        data = source() if callable(source) else source
        params = training.TUTORIAL_PARAMS if tutorial_params else None
        model_dir = _train_with_progress(data, models_dir, params)
        _print_card(model_dir)


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
            f"{labels[max(range(len(prediction)), key=prediction.__getitem__)]} (p={max(prediction):.3f})"
            if labels and isinstance(prediction, list)
            else f"{prediction:.3f}"
        )
        console.print(f"  {','.join(f'{v:g}' for v in row)} -> {shown}", highlight=False)
    console.print(f"[green]saved and checked[/] {model_dir}/", highlight=False)


@app.command()
def check(model_dir: Path = typer.Argument(..., help="A model folder, e.g. models/iris.")) -> None:
    """Check an artifact as the SageMaker container will load it, and that it predicts as trained."""
    from l2c.checks import check_model_dir

    report = check_model_dir(model_dir)
    for line in report.lines():
        console.print(line, highlight=False)
    console.print("[green]ok[/]: the container will load this artifact")


@app.command("import")
def import_(
    file: Path = typer.Argument(
        ..., help="A joblib/pickle dump of an XGBoost estimator, a native .json/.ubj booster, or a model.tar.gz."
    ),
    name: str = typer.Option(..., "--name", help="The model's name: its folder models/NAME and its stack."),
    trust_pickle: bool = typer.Option(
        False,
        "--trust-pickle",
        help="Load a joblib/pickle file: unpickling runs any code it holds, only for files you trust.",
    ),
    feature_names: str | None = typer.Option(None, metavar="A,B,C", help="The features' names, in column order."),
    class_labels: str | None = typer.Option(None, metavar="X,Y,Z", help="The classes' names, in class-index order."),
    task: str | None = typer.Option(None, help="classification or regression (default: from the booster's objective)."),
    sample_csv: Path | None = typer.Option(None, help="Rows to check predictions on and to fill the sample file."),
    models_dir: Path = typer.Option(Path("models"), help="Where model folders are written."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace models/NAME if it already holds a model."),
) -> None:
    """Bring your own model: write models/NAME (one native booster, model card, samples) and check it (docs/import.md)."""
    from l2c.checks import check_model_dir
    from l2c.model_import import import_model

    def note(line: str) -> None:
        if line.startswith("warning:"):
            errors.print(f"[bold yellow]warning:[/]{line.removeprefix('warning:')}", highlight=False, soft_wrap=True)
        else:
            console.print(line, highlight=False, soft_wrap=True)

    def listed(text: str | None) -> list[str] | None:
        return [item.strip() for item in text.split(",")] if text is not None else None

    model_dir = import_model(
        file,
        name,
        models_dir,
        trust_pickle=trust_pickle,
        feature_names=listed(feature_names),
        class_labels=listed(class_labels),
        task=task,
        sample_csv=sample_csv,
        overwrite=overwrite,
        on_note=note,
    )
    report = check_model_dir(model_dir)
    for line in report.lines():
        console.print(line, highlight=False)
    deploy_hint = f"l2c deploy {name}" + ("" if models_dir == Path("models") else f" --model-dir {model_dir}")
    console.print(f"[green]imported and checked[/] {model_dir}/: deploy it with `{deploy_hint}`", highlight=False)


@app.command()
def serve(
    model: Path = typer.Argument(..., help="A model folder (e.g. models/iris), a model.tar.gz or a booster file."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; nothing authenticates callers, keep loopback."),
    port: int = typer.Option(8080, help="Port (8080, as the container)."),
    workers: int | None = typer.Option(None, help="Worker processes (default: one per CPU, as the container)."),
) -> None:
    """Serve a model like SageMaker's XGBoost container: GET /ping, POST /invocations (docs/serving.md)."""
    from l2c.serving.server import serve_container

    serve_container(
        model, host=host, port=port, workers=workers, on_ready=lambda line: console.print(line, highlight=False)
    )


# --------------------------------------------------------------------------- deploy / destroy / status / invoke / up / demo


def _connect(aws: bool, region: str | None, profile: str | None):
    from l2c.cloud.session import AWS, LOCAL, connect

    return connect(AWS if aws else LOCAL, region=region, profile=profile)


def _deploy_options(given: dict):
    """The DeployOptions of `l2c deploy`'s command line (``given``: its parameters by name, ctx.params)."""
    from l2c.cloud.apigateway import Limits
    from l2c.cloud.plan import DeployOptions
    from l2c.cloud.sagemaker import Hosting

    hosting = Hosting(
        instance_type=given["instance_type"],
        instance_count=given["instance_count"],
        serverless_memory_mb=given["memory_mb"] if given["serverless"] else None,
        serverless_max_concurrency=given["max_concurrency"],
    )
    scale = None
    if autoscale := given["autoscale"]:
        low, _, high = autoscale.partition(":")
        if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high)):
            fail(f"--autoscale takes MIN:MAX, e.g. 1:4 (got {autoscale!r})")
        scale = (int(low), int(high))
    return DeployOptions(
        hosting=hosting,
        public=given["public"],
        role_arn=given["role_arn"],
        lambda_role_arn=given["lambda_role_arn"],
        autoscale=scale,
        limits=Limits(rate_limit=given["rate_limit"], burst_limit=given["burst_limit"], quota_limit=given["quota"]),
        bucket=given["bucket"],
        cors_origin=given["cors_origin"],
    )


AWS_OPTION = typer.Option(False, "--aws", help="Real AWS (default: the local cloud started by `l2c up`).")
YES_OPTION = typer.Option(False, "--yes", "-y", help="With --aws: do not ask for confirmation.")
REGION_OPTION = typer.Option(None, help="AWS region (default: your AWS configuration).")
PROFILE_OPTION = typer.Option(None, help="AWS profile (default: your AWS configuration).")
BUCKET_OPTION = typer.Option(
    None,
    "--bucket",
    metavar="NAME",
    help="Artifact bucket of this account to use (default: l2c's own, l2c-<account>-<region>-an).",
)


@app.command()
def deploy(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model to deploy, from models/NAME (iris, house-price)."),
    model_dir: Path | None = typer.Option(None, help="Deploy this model folder instead of models/NAME."),
    aws: bool = AWS_OPTION,
    yes: bool = YES_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
    instance_type: str = typer.Option("ml.m5.large", help="Endpoint instance type."),
    instance_count: int = typer.Option(1, min=1, help="Endpoint instance count."),
    serverless: bool = typer.Option(
        False, "--serverless", help="Serverless endpoint (billed per request) instead of instances."
    ),
    memory_mb: int = typer.Option(2048, help="With --serverless: memory in MB (1024 to 6144, in steps of 1024)."),
    max_concurrency: int = typer.Option(5, help="With --serverless: concurrent requests (1 to 200)."),
    autoscale: str | None = typer.Option(
        None, metavar="MIN:MAX", help="Scale instances between MIN and MAX on traffic."
    ),
    public: bool = typer.Option(
        False, "--public", help="No API key: anyone with the URL can call the API and run up the bill."
    ),
    role_arn: str | None = typer.Option(None, help="Use this SageMaker execution role instead of creating one."),
    lambda_role_arn: str | None = typer.Option(
        None, help="Use this role for the Lambda function instead of creating one."
    ),
    rate_limit: float = typer.Option(20.0, help="Usage plan: steady requests per second."),
    burst_limit: int = typer.Option(40, help="Usage plan: burst of requests."),
    quota: int = typer.Option(10_000, help="Usage plan: requests per day."),
    bucket: str | None = BUCKET_OPTION,
    cors_origin: str | None = typer.Option(
        None,
        "--cors-origin",
        metavar="ORIGIN",
        help="The one origin whose pages may call the API from a browser, e.g. https://example.com ('none': no CORS; "
        "'*': any site). Default: the local cloud's own pages (its edge URL) locally, none on AWS.",
    ),
    show_key: bool = typer.Option(
        False, "--show-key", help="Print the API key itself (default: masked, abcd…wxyz; the full key is in .l2c/)."
    ),
) -> None:
    """Deploy a model as an HTTPS prediction API: S3, IAM, SageMaker endpoint, Lambda, API Gateway."""
    from l2c.cloud import plan, stack
    from l2c.cloud.display import print_deployment
    from l2c.cloud.progress import ConsoleReporter

    options = _deploy_options(ctx.params)
    try:
        plan.check_options(options)  # a wrong option is one line before any AWS call
        session = _connect(aws, region, profile)
        if aws:
            console.print(
                f"[bold]l2c deploy {name}[/] will create, in AWS account {session.account} ({session.region}):"
            )
            for line in plan.plan(name, session, options):
                console.print(f"  - {line}", highlight=False)
            if not yes and not typer.confirm("Go ahead?", default=False):
                fail("nothing was created", code=1)
        if public:
            errors.print("[bold yellow]warning:[/] --public: the API takes requests from anyone who has the URL")
        deployment = stack.deploy(name, model_dir, session=session, options=options, reporter=ConsoleReporter(console))
    except KeyboardInterrupt:
        fail_interrupted(name, False, aws, region, profile)
    print_deployment(deployment, console, show_key=show_key)


@app.command()
def destroy(
    name: str | None = typer.Argument(None, help="The stack (model name) to delete."),
    all_stacks: bool = typer.Option(False, "--all", help="Delete every l2c stack in the account and region."),
    aws: bool = AWS_OPTION,
    yes: bool = YES_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
    bucket: str | None = BUCKET_OPTION,
) -> None:
    """Delete a stack (or --all) in reverse order, then verify by listing every service that nothing is left."""
    from l2c.cloud import teardown
    from l2c.cloud.progress import ConsoleReporter

    if (name is None) == (not all_stacks):
        fail("name one stack to destroy, or pass --all")
    try:
        session = _connect(aws, region, profile)
        what = "every l2c stack" if all_stacks else f"stack {name}"
        if aws and not yes and not typer.confirm(f"Delete {what} in {session.region}?", default=False):
            fail("nothing was deleted")
        report = teardown.destroy(
            name, everything=all_stacks, session=session, reporter=ConsoleReporter(console), bucket=bucket
        )
    except KeyboardInterrupt:
        fail_interrupted(name, True, aws, region, profile)
    console.print(
        f"[green]destroyed[/] {', '.join(report.stacks) or 'nothing (no stack found)'}; nothing of it is left"
    )


@app.command()
def status(
    aws: bool = AWS_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
) -> None:
    """List every l2c resource per stack, and the endpoints that bill by the hour."""
    from l2c.cloud import inventory
    from l2c.cloud.display import print_status

    current = inventory.status(_connect(aws, region, profile))
    print_status(current, console)


@app.command()
def invoke(
    name: str = typer.Argument(..., help="The stack (model name) to call."),
    rows: str = typer.Argument(..., help="CSV rows, ';' between rows, e.g. '5.1,3.5,1.4,0.2'."),
    api: bool = typer.Option(
        False, "--api", help="Go through the public API with its key, not straight to the endpoint."
    ),
    aws: bool = AWS_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
) -> None:
    """Get predictions for rows from a deployed stack, straight from the endpoint or through the API."""
    from l2c.cloud import calling

    lines = "\n".join(row.strip() for row in rows.split(";") if row.strip())
    session = _connect(aws, region, profile)
    if api:
        code, answer = calling.call_api(name, {"data": lines}, session=session)
        console.print(f"HTTP {code}", highlight=False)
    else:
        answer = calling.invoke(name, lines, session=session)
    console.print_json(json.dumps(answer))


@app.command()
def batch(
    name: str = typer.Argument(..., help="The deployed stack (model name) whose model predicts."),
    input_csv: Path = typer.Argument(..., help="CSV of feature rows (a header row is kept out of the job)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write the predictions (default: INPUT.out.csv)."
    ),
    instance_type: str = typer.Option("ml.m5.large", "--instance-type", help="Transform instance type."),
    instance_count: int = typer.Option(1, "--instance-count", help="Transform instances."),
    max_payload_mb: int = typer.Option(
        6, "--max-payload-mb", help="Largest mini-batch SageMaker sends the container (1-100 MB)."
    ),
    join: bool = typer.Option(False, "--join", help="Write the input's columns, then the prediction columns."),
    clean: bool = typer.Option(False, "--clean", help="Delete the job's input and output objects from S3 afterwards."),
    aws: bool = AWS_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
) -> None:
    """Predict a whole CSV with a SageMaker batch transform job on the stack's model (no 6 MB request limit)."""
    from l2c.cloud.batch import run_batch
    from l2c.cloud.progress import ConsoleReporter

    result = run_batch(
        name,
        input_csv,
        output,
        session=_connect(aws, region, profile),
        instance_type=instance_type,
        instance_count=instance_count,
        max_payload_mb=max_payload_mb,
        join=join,
        clean=clean,
        reporter=ConsoleReporter(console),
    )
    console.print(f"[green]done[/] {result.rows} row(s) in {result.seconds:.1f} s -> {result.output}", highlight=False)


@app.command()
def page(
    name: str = typer.Argument(..., help="The stack (model name) whose API the page calls."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the page here (default: pages/NAME.html)."),
    model_dir: Path | None = typer.Option(
        None, help="The model folder whose card labels the form (default: models/NAME)."
    ),
    with_key: bool = typer.Option(
        False,
        "--with-key",
        help="Put the API key into the file (default: the page asks for it; the file holds no key).",
    ),
    aws: bool = AWS_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
) -> None:
    """Write a prediction page (one HTML file) for a deployed stack's API: a form from the model card (docs/page.md)."""
    from l2c.page.deployed import write_page

    session = _connect(aws, region, profile)
    written = write_page(session, name, output, model_dir, with_key)
    console.print(
        f"[green]wrote[/] {written.path}: a page that calls {written.invoke_url}", highlight=False, soft_wrap=True
    )
    console.print(f"  form labelled from {written.card_source}", highlight=False, soft_wrap=True)
    if written.holds_key:
        errors.print(
            f"[bold yellow]warning:[/] {written.path} holds the API key (readable by you only): do not share or commit it"
        )
    else:
        console.print("  the file holds no API key: the page asks for it (--with-key puts it in)", highlight=False)
    # Opened as a file its origin is "null", which no API should allow: it must be served.
    console.print(
        "  serve it from the origin the API allows (`l2c deploy --cors-origin`), e.g. "
        f"`python -m http.server -d {written.path.parent}`",
        highlight=False,
        soft_wrap=True,
    )
    if session.is_local:
        from l2c.page.served import page_url

        console.print(
            f"  the local cloud serves it too: {page_url(session.endpoints['*'], name)}",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def logs(
    name: str = typer.Argument(..., help="The stack (model name) whose logs to show."),
    since: str = typer.Option("10m", help="How far back: 30s, 10m, 2h, 1d, 1h30m."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until Ctrl-C."),
    aws: bool = AWS_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
) -> None:
    """Show the stack's logs (its Lambda function's and its endpoint's CloudWatch groups), by time."""
    from l2c.cloud.logs import show_logs

    try:
        show_logs(
            name,
            _connect(aws, region, profile),
            lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
            since=since,
            follow=follow,
        )
    except KeyboardInterrupt:
        return


@app.command()
def up(
    control_plane_port: int = typer.Option(
        4566, help="Port of the edge, AWS_ENDPOINT_URL: every AWS API (control plane and data planes)."
    ),
    runtime_port: int = typer.Option(4567, help="Port of the SageMaker runtime (invoke_endpoint)."),
    api_port: int = typer.Option(4568, help="Port of the API Gateway stage URLs."),
    no_deploy: bool = typer.Option(
        False, "--no-deploy", help="Start the cloud empty, without deploying the two models."
    ),
    models_dir: Path = typer.Option(Path("models"), help="Where the models are (trained there if missing)."),
    pace: float = typer.Option(
        None,
        help="How fast AWS's delays pass, as a fraction of AWS's own (0.01: an endpoint is Creating for ~3 s; "
        "0: no delays). Default: $L2C_PACE or 0.01.",
    ),
) -> None:
    """Start the embedded local cloud on 127.0.0.1, deploy both models into it, serve until Ctrl-C."""
    from l2c.local.cloud import Ports
    from l2c.local.up import up as run_up

    run_up(Ports(control_plane_port, runtime_port, api_port), not no_deploy, models_dir, console, pace=pace)


@app.command()
def demo(
    models_dir: Path = typer.Option(Path("models"), help="Where the models are (trained there if missing)."),
) -> None:
    """Train if needed, start the local cloud, deploy both models, call them over HTTP, destroy, stop."""
    from l2c.local.demo import run_demo

    run_demo(models_dir, console)


@app.command(hidden=True)
def cloud(
    control_plane_port: int = typer.Option(4566, help="Port of the edge, AWS_ENDPOINT_URL: every AWS API."),
    runtime_port: int = typer.Option(4567, help="Port of the SageMaker runtime (invoke_endpoint)."),
    api_port: int = typer.Option(4568, help="Port of the API Gateway stage URLs."),
    state_file: Path | None = typer.Option(None, help="Written once every server listens."),
    pace: float = typer.Option(None, help="Fraction of AWS's durations (default: $L2C_PACE or 0.01)."),
) -> None:
    """The local cloud alone, in the foreground, nothing deployed (`python -m l2c.local`; the test session starts it)."""
    import logging

    from l2c.local.cloud import LocalCloud, Ports, run_until_stopped

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    local = LocalCloud(Ports(control_plane_port, runtime_port, api_port), pace=pace)
    run_until_stopped(
        local, state_file, on_ready=lambda c: print("local cloud ready:", *c.exports(), sep="\n", flush=True)
    )


@app.command()
def rules(
    write: Path | None = typer.Option(
        None, "--write", metavar="FILE", help="Put the table between FILE's rules markers."
    ),
) -> None:
    """The AWS rules the local cloud enforces, as a markdown table (docs/aws-rules.md)."""
    from l2c.local.rules import load_all
    from l2c.local.rules.table import markdown_table, with_table

    table = markdown_table(load_all())
    if write is None:
        sys.stdout.write(table)
        return
    write.write_text(with_table(write.read_text(), table))
    print(f"wrote the table of {table.count(chr(10)) - 2} rules into {write}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
