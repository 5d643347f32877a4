"""The ``layerscope`` command line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

# torch, pandas and the estimators are imported inside the commands that use them, so that
# `layerscope --help` and argument errors answer at once (importing torch takes seconds).

app = typer.Typer(help="Geometry of neural network representations.", no_args_is_help=True, add_completion=False)
console = Console(soft_wrap=True)  # paths in messages stay whole


def id_estimators() -> list[str]:
    """Estimators whose value is an intrinsic dimension (all but the power-law exponent)."""
    from .estimators import ESTIMATORS

    return [name for name, cls in ESTIMATORS.items() if cls.is_dimension]


def _fail(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _interrupted(err: KeyboardInterrupt, kept: str, again: str) -> None:
    """Ctrl-C (exit 130) or SIGTERM (exit 143): say what is kept and how to go on."""
    from .runner import Terminated

    console.print(f"[yellow]interrupted.[/] {kept}; go on with: {again}", highlight=False)
    raise typer.Exit(143 if isinstance(err, Terminated) else 130) from None


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """Warnings as one plain line each, not Python's source-line format."""
    Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {message}", highlight=False)


def _estimate_all(X: object, names: list[str], device: str | None) -> list:
    from .estimators import ESTIMATORS, NeighborEstimator

    results = []
    for name in names:
        cls = ESTIMATORS[name]
        params = {"device": device} if device and issubclass(cls, NeighborEstimator) else {}
        results.append(cls(**params).fit(X).estimate_)
    return results


def _print_table(results: list, title: str) -> None:
    table = Table(title=title)
    table.add_column("estimator")
    table.add_column("dimension", justify="right")
    table.add_column("error", justify="right")
    table.add_column("points", justify="right")
    for r in results:
        table.add_row(r.estimator, f"{r.value:.3f}", "-" if r.error is None else f"{r.error:.3f}", str(r.n_points))
    console.print(table)


@app.command("id")
def id_command(
    path: Annotated[Path, typer.Argument(help="Point cloud: .npy, .npz, .csv or .parquet, one row per point.")],
    estimator: Annotated[
        list[str] | None,
        typer.Option(
            "--estimator",
            "-e",
            help="Estimator(s) to run: twonn, mle, gride, pc_id, participation_ratio (default: all).",
        ),
    ] = None,
    key: Annotated[str | None, typer.Option(help="Array name inside an .npz file.")] = None,
    device: Annotated[str | None, typer.Option(help="Device for neighbour searches (cpu, cuda).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: a list of {estimator, dimension, error}.")
    ] = False,
) -> None:
    """Estimate the intrinsic dimension of a point cloud stored in a file."""
    from .data.files import load_points

    known = id_estimators()
    names = estimator or known
    unknown = [n for n in names if n not in known]
    if unknown:
        _fail(f"unknown estimator {unknown[0]!r}; choose from {', '.join(known)}")
    try:
        X = load_points(path, key=key)
        results = _estimate_all(X, names, device)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    if as_json:
        print(json.dumps([{"estimator": r.estimator, "dimension": r.value, "error": r.error} for r in results]))
    else:
        _print_table(results, f"{path.name} ({X.shape[0]} points x {X.shape[1]} features)")


@app.command()
def demo() -> None:
    """Estimate the intrinsic dimension of a real data set bundled with scikit-learn (8x8 digits)."""
    from sklearn.datasets import load_digits

    X = load_digits().data
    results = _estimate_all(X, id_estimators(), None)
    _print_table(results, f"scikit-learn digits ({X.shape[0]} images x {X.shape[1]} pixels)")
    console.print(
        "TwoNN, MLE and GRIDE measure the local dimension of the data manifold; PC-ID (90% variance) and "
        "the participation ratio measure its linear extent, which is larger for a curved manifold."
    )


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="Run config (.toml or .yaml).")] = None,
    preset: Annotated[str | None, typer.Option(help="A built-in config instead of a file (e.g. quick).")] = None,
    out: Annotated[Path, typer.Option(help="Folder the run goes into (as OUT/NAME).")] = Path("runs"),
    resume: Annotated[Path | None, typer.Option(help="Resume the run in this folder from its last checkpoint.")] = None,
    device: Annotated[str | None, typer.Option(help="Override the config's device (cpu, cuda).")] = None,
    report: Annotated[bool, typer.Option(help="Write the HTML report when the run ends.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run of the same name first.")] = False,
) -> None:
    """Train a model and measure every chosen layer's geometry at each checkpoint."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .config import ConfigError, load_config, parse_config
    from .presets import preset as get_preset
    from .runner import execute
    from .runner import resume as resume_run
    from .store import RunLockedError

    try:
        if resume is not None:
            if config or preset:
                _fail("--resume takes the run folder only; its config is read from the run")
            cfg, run_dir = None, resume
        else:
            if (config is None) == (preset is None):
                _fail("give a config file or --preset NAME (one of the two)")
            cfg = load_config(config) if config else get_preset(preset)
            if device:
                cfg = parse_config({**cfg.model_dump(mode="json"), "device": device}, "config")
            run_dir = out / cfg.name  # the name is a plain folder name (checked by the config)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as err:
        _fail(str(err))
    warnings.showwarning = _show_warning
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("training", total=None)

            def progress(step: int, total: int) -> None:
                bar.update(task, completed=step, total=total)

            def status(text: str) -> None:
                bar.update(task, description=text)

            if cfg is None:
                resume_run(run_dir, progress=progress, status=status)
            else:
                execute(cfg, run_dir, overwrite=overwrite, progress=progress, status=status)
    except KeyboardInterrupt as err:
        _interrupted(err, "Finished checkpoints are kept", f"layerscope run --resume {run_dir}")
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, FloatingPointError, RunLockedError) as err:
        _fail(str(err))
    except OSError as err:  # a disk that fills or goes read-only during the run
        _fail(f"{err.filename}: {err.strerror}" if err.filename and err.strerror else str(err))
    console.print(f"results: {run_dir / 'results'}  (layerscope.store.load('{run_dir}'))")
    if report:
        from .report import make_report

        console.print(f"report: {make_report(run_dir)}")


@app.command("measure")
def measure_command(
    config: Annotated[
        Path | None, typer.Argument(help="Measure config (.toml or .yaml): model source, checkpoints, data.")
    ] = None,
    ansuini: Annotated[
        str | None,
        typer.Option(
            help="Instead of a config: Ansuini et al.'s layers of a pretrained torchvision net (vgg16, resnet18..152)."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="With --ansuini: the net's weights file.")] = None,
    images: Annotated[Path | None, typer.Option(help="With --ansuini: a folder of images (class subfolders).")] = None,
    n: Annotated[int, typer.Option(help="With --ansuini: how many of the images.", min=3)] = 2000,
    out: Annotated[Path, typer.Option(help="Folder the run goes into (as OUT/NAME).")] = Path("runs"),
    device: Annotated[str | None, typer.Option(help="Override the config's device (cpu, cuda).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run of the same name first.")] = False,
    parts: Annotated[
        int | None, typer.Option(help="Spread the checkpoints over this many Ray trials (needs ray).", min=1)
    ] = None,
    address: Annotated[str | None, typer.Option(help="A Ray cluster to run the parts on ('auto').")] = None,
) -> None:
    """Measure a model trained elsewhere, or each checkpoint of a training series, into one run folder."""
    from .config import ConfigError
    from .measure import CheckpointError, ansuini_pretrained, load_measure_config, measure, parse_measure_config
    from .store import RunLockedError

    try:
        if (config is None) == (ansuini is None):
            _fail("give a measure config file or --ansuini ARCH --weights FILE --images FOLDER (one of the two)")
        if ansuini is not None:
            if weights is None or images is None:
                _fail("--ansuini needs --weights (the net's weights file) and --images (a folder of images)")
            cfg = ansuini_pretrained(ansuini, weights, images, n=n)
        else:
            cfg = load_measure_config(config)
        if device:
            cfg = parse_measure_config({**cfg.model_dump(mode="json"), "device": device}, str(config))
    except (ConfigError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    warnings.showwarning = _show_warning
    try:
        if parts is not None or address is not None:
            from .sweep import measure_on_ray

            folder = measure_on_ray(cfg, out, parts=parts, address=address, overwrite=overwrite)
        else:
            folder = measure(cfg, out, overwrite=overwrite)
    except KeyboardInterrupt as err:
        again = f"layerscope measure {config}" if config else f"layerscope measure --ansuini {ansuini} ..."
        _interrupted(err, "Measured checkpoints are kept", f"{again} --out {out}")
    except (CheckpointError, ConfigError, ValueError, FileNotFoundError, FileExistsError, RunLockedError) as err:
        _fail(str(err))
    except (ImportError, RuntimeError) as err:
        _fail(str(err))
    console.print(f"results: {folder / 'results'}  (layerscope.store.load('{folder}'))")
    console.print(f"report: {folder / 'report.html'}")


@app.command("report")
def report_command(
    folder: Annotated[str, typer.Argument(help="A run folder, or a sweep's folder (OUT/NAME); a URI (s3://...) too.")],
) -> None:
    """Write the HTML report (and PNG figures) of a run, or of a sweep across its trials."""
    from .report import make_report
    from .report.sweep import make_sweep_report
    from .store.remote import local_view, location

    warnings.showwarning = _show_warning
    try:
        where = location(folder)
        with local_view(where) as local:
            path = make_sweep_report(local) if (local / "trials.parquet").is_file() else make_report(local)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    console.print(f"report: {path if where.is_local else where.join(path.name)}", highlight=False)


@app.command()
def reproduce(
    name: Annotated[str, typer.Argument(help="ansuini2019, tan2024 or humayun2024.")],
    size: Annotated[
        str,
        typer.Option(
            help=(
                "quick (minutes on a laptop CPU, offline data), medium (three seeds, under 30 minutes on 2 CPU "
                "cores, offline data) or full (the paper's setup)."
            )
        ),
    ] = "quick",
    out: Annotated[
        Path, typer.Option(help="Folder for the runs (as OUT/NAME-SIZE/RUN); a path every machine of a cluster sees.")
    ] = Path("runs"),
    address: Annotated[
        str | None, typer.Option(help="A Ray cluster's address (auto, ray://host:10001); default: a local Ray.")
    ] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Runs at once (default: one per CPU).", min=1)] = None,
    replace_changed: Annotated[
        bool,
        typer.Option(
            help=(
                "Move runs made with another config (an earlier version's) into OUT/NAME-SIZE/.replaced/ and run "
                "them again."
            )
        ),
    ] = False,
    round: Annotated[
        str,
        typer.Option(
            "--round",
            help=(
                "Medium size: exploratory (seeds 0-2) or confirmatory (fresh seeds 3-5 with the frozen configs and "
                "rules, into OUT/NAME-medium-confirmatory)."
            ),
        ),
    ] = "exploratory",
    pretrained: Annotated[
        list[str] | None,
        typer.Option(
            help=(
                "ansuini2019 --size full: a pretrained ImageNet net to measure as ARCH=WEIGHTS_FILE (vgg16, resnet18, "
                "... of torchvision; repeat for several), beside the same net untrained; needs --images."
            )
        ),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="With --pretrained: a folder of images (class subfolders), e.g. ImageNet's.")
    ] = None,
    n_images: Annotated[
        int, typer.Option(help="With --pretrained: images measured (the paper: 2,000).", min=10)
    ] = 2000,
    device: Annotated[str | None, typer.Option(help="Every run's device (cuda, cuda:1, cpu).")] = None,
    cpus_per_run: Annotated[float, typer.Option(help="CPUs one run takes of the cluster.", min=0.01)] = 1.0,
    gpus_per_run: Annotated[float, typer.Option(help="GPUs one run takes (with --device cuda).", min=0)] = 0.0,
) -> None:
    """Reproduce a paper's experiment: its runs (on Ray, as a sweep), its findings checked, a summary figure.

    Re-running continues where it stopped: finished runs are kept, interrupted ones resumed.
    """
    from .experiments.reproduce import reproduce as run_experiment
    from .sweep import Resources

    warnings.showwarning = _show_warning
    try:
        measured = _pretrained(name, size, pretrained or [], images, n_images)
        with _LiveTable(f"reproduce {name} --size {size}") as live:
            folder = run_experiment(
                name,
                size,
                out,
                address=address,
                max_concurrent=max_concurrent,
                on_progress=live,
                replace_changed=replace_changed,
                round=round,
                measured=measured,
                device=device,
                resources=Resources(cpu=cpus_per_run, gpu=gpus_per_run),
            )
    except KeyboardInterrupt as err:
        _interrupted(
            err, "Finished runs are kept", f"layerscope reproduce {name} --size {size} --round {round} --out {out}"
        )
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        _fail(str(err))
    console.print((folder / "findings.md").read_text())
    console.print(f"summary figure: {folder / 'summary.png'}; run reports: {folder}/*/report.html")


def _pretrained(name: str, size: str, given: list[str], images: Path | None, n: int) -> list:
    """The measure configs of ``--pretrained ARCH=FILE`` (ansuini2019, full size), or a ValueError saying why not."""
    if not given:
        if images is not None:
            raise ValueError("--images is for --pretrained nets")
        return []
    if (name, size) != ("ansuini2019", "full"):
        raise ValueError("--pretrained nets are measured by ansuini2019 --size full")
    if images is None:
        raise ValueError("--pretrained needs --images FOLDER (the images to measure the nets on)")
    weights = {}
    for item in given:
        arch, sep, path = item.partition("=")
        if not sep or not arch or not path:
            raise ValueError(f"--pretrained takes ARCH=WEIGHTS_FILE, got {item!r}")
        if not Path(path).is_file():
            raise ValueError(f"--pretrained {arch}: no such weights file: {path}")
        weights[arch] = path
    from .experiments.ansuini2019 import pretrained_configs

    return pretrained_configs(weights, images, n=n)


@app.command()
def partition(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder whose weights were saved (probes.save_weights = true).")
    ],
    step: Annotated[int | None, typer.Option(help="Checkpoint step (default: the last saved).")] = None,
    points: Annotated[
        list[int] | None,
        typer.Option(
            "--point", "-p", help="Three test-set indices for the plane (default: first three of different classes)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="PNG to write (default RUN/partition-STEP.png).")] = None,
) -> None:
    """Draw the exact linear regions of a saved checkpoint on a plane through three test inputs."""
    import torch

    from ._plotting import subplots
    from .config import parse_config
    from .data.datasets import first_of_each_class
    from .probes.partition2d import partition2d
    from .runner import prepare_data, prepare_model
    from .store import RunStore, load_weights

    try:
        store = RunStore(run_dir)
        cfg = parse_config(store.read_run().config, str(run_dir))
        steps = store.saved_weights()
        if not steps:
            _fail(f"{run_dir} has no saved weights; run it with probes.save_weights = true")
        chosen = max(steps) if step is None else step
        if chosen not in steps:
            _fail(f"no weights saved at step {chosen}; saved steps: {', '.join(map(str, sorted(steps)))}")
        data = prepare_data(cfg)
        model = prepare_model(cfg, data)
        model.load_state_dict(load_weights(steps[chosen]))
        if points:
            if len(points) != 3:
                _fail(f"give exactly three --point indices, got {len(points)}")
            outside = [i for i in points if not 0 <= i < len(data.y_test)]
            if outside:
                _fail(f"--point {outside[0]} is not an index of the test set (0 to {len(data.y_test) - 1})")
            if len(set(points)) != 3:
                _fail(f"give three different --point indices, got {', '.join(map(str, points))}")
            idx = list(points)
        else:
            idx = first_of_each_class(data.y_test)
        with console.status(f"partition of step {chosen}: cutting the first layer") as status:
            part = partition2d(
                model,
                data.x_test[torch.tensor(idx)],
                progress=lambda text: status.update(f"partition of step {chosen}: {text}"),
            )
            status.update(f"drawing {len(part.regions):,} regions")
            fig, ax = subplots(figsize=(6, 6))
            part.plot(
                ax,
                labels=data.y_test[torch.tensor(idx)].tolist(),
                title=f"{cfg.name}, step {chosen}: {len(part.regions)} linear regions",
            )
            fig.tight_layout()
            target = out or run_dir / f"partition-{chosen}.png"
            fig.savefig(target, dpi=120)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    console.print(f"{len(part.regions)} regions; picture: {target}")


_STATUS_STYLE = {"pending": "dim", "running": "cyan", "finished": "green", "skipped": "green", "failed": "bold red"}


_MAX_ROWS = 30  # a larger grid shows its running and failed trials, and counts the rest


def _trial_table(states: list, title: str) -> Table:
    """One line per trial: status (with retries), last checkpoint step, test accuracy there.

    Over ``_MAX_ROWS`` trials, only the running and failed ones (at most that many)
    and a line counting the others: a table of thousands of rows, drawn twice a
    second, would cost a core and show nothing.
    """
    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("trial", "left"),
        ("status", "left"),
        ("step", "right"),
        ("test acc", "right"),
        ("note", "left"),
    ):
        table.add_column(column, justify=justify)
    shown = states
    if len(states) > _MAX_ROWS:
        shown = [s for s in states if s.status in ("running", "failed")][:_MAX_ROWS]
    for s in shown:
        status = {"skipped": "finished before"}.get(s.status, s.status)
        if s.retries:
            status += f" (retried {s.retries}x)"
        step = "-" if s.step is None else (f"{s.step}/{s.total_steps}" if s.total_steps else str(s.step))
        acc = "-" if s.test_acc is None else f"{s.test_acc:.3f}"
        table.add_row(s.name, f"[{_STATUS_STYLE.get(s.status, '')}]{status}[/]", step, acc, s.error or "")
    if len(shown) < len(states):
        table.add_row(f"... {len(states) - len(shown)} more", "", "", "", _summary(states))
    return table


def _summary(states: list) -> str:
    counts = {
        status: sum(s.status == status for s in states)
        for status in ("finished", "skipped", "failed", "pending", "running")
    }
    retried = sum(s.retries > 0 for s in states)
    return (
        f"{len(states)} trials: {counts['finished']} finished now, {counts['skipped']} finished before, "
        f"{counts['failed']} failed"
        + (f", {retried} retried" if retried else "")
        + (f", {counts['pending'] + counts['running']} not done" if counts["pending"] + counts["running"] else "")
    )


class _LiveTable:
    """A live table of trials while an engine runs (a plain table at the end when the output is not a terminal)."""

    def __init__(self, title: str) -> None:
        from rich.live import Live

        self.title, self.states, self.said = title, [], {}
        self.live = Live(console=console, refresh_per_second=2, transient=False, auto_refresh=console.is_terminal)

    def __call__(self, states: list) -> None:
        self.states = states
        if console.is_terminal:
            self.live.update(_trial_table(states, self.title))
            return
        for s in states:  # a log (CI, a file): one line when a trial's status changes
            said = (s.status, s.retries)
            if self.said.get(s.name, ("pending", 0)) != said:
                self.said[s.name] = said
                extra = f" (retry {s.retries})" if s.retries else ""
                extra += (
                    f", test acc {s.test_acc:.3f}"
                    if s.status in ("finished", "skipped") and s.test_acc is not None
                    else ""
                )
                console.print(f"{s.name}: {s.status}{extra}" + (f": {s.error}" if s.error else ""), highlight=False)

    def __enter__(self) -> _LiveTable:
        if console.is_terminal:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if console.is_terminal:
            self.live.__exit__(*exc)
        elif self.states:  # nothing when the engine stopped before its first trial (a bad file, an unreachable --out)
            console.print(_trial_table(self.states, self.title))


@app.command()
def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (.toml or .yaml): base config, overrides, axes.")],
    out: Annotated[
        str,
        typer.Option(
            help="Where the sweep goes (as OUT/NAME/TRIAL): a folder, an NFS path, or a URI (s3://bucket/x, gs://..., file:///x)."
        ),
    ] = "runs",
    address: Annotated[
        str | None, typer.Option(help="A Ray cluster's address (auto, ray://host:10001); default: a local Ray.")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="Trials at once (default: as the resources allow).", min=1)
    ] = None,
    replace_changed: Annotated[
        bool,
        typer.Option(
            help=(
                "Move trials run with another config (the file was edited) into OUT/NAME/.replaced/ and run them again."
            )
        ),
    ] = False,
) -> None:
    """Run a grid of tracked runs on Ray. Running it again finishes only what is missing."""
    from .config import ConfigError
    from .sweep import run_sweep

    warnings.showwarning = _show_warning
    try:
        with _LiveTable(f"sweep {file}") as live:
            folder, states = run_sweep(
                file,
                out,
                address=address,
                max_concurrent=max_concurrent,
                on_progress=live,
                replace_changed=replace_changed,
            )
    except KeyboardInterrupt as err:
        _interrupted(err, "Finished trials are kept", f"layerscope sweep {file} --out {out}")
    except (ConfigError, ValueError, OSError, ImportError) as err:
        _fail(str(err))
    console.print(
        _summary(states) + f". Results: layerscope.store.load('{folder}'); figures: layerscope report {folder}",
        highlight=False,
    )
    if any(s.status == "failed" for s in states):
        raise typer.Exit(1)


@app.command()
def metrics() -> None:
    """List the metrics a results table can hold, with their meaning and error."""
    from .probes.registry import metrics as registered

    table = Table(title="metrics (the metric column of RUN/results/*.parquet)")
    for column in ("metric", "meaning", "error"):
        table.add_column(column)
    for m in registered().values():
        table.add_row(m.name, m.meaning, m.error)
    console.print(table)


@app.command()
def runs(folder: Annotated[Path, typer.Argument(help="Folder holding runs.")] = Path("runs")) -> None:
    """List the runs in a folder."""
    from .store import CorruptRunError, RunStore, find_runs

    warnings.showwarning = _show_warning
    found = find_runs(folder)
    if not found:
        _fail(f"no layerscope runs in {folder}")
    view = Table(title=f"runs in {folder}")
    view.add_column("run", no_wrap=True, min_width=max(len(p.name) for p in found))  # names whole, whatever the width
    for column in ("status", "checkpoints", "last step", "started", "ended"):
        view.add_column(column)
    notes = []
    for run in found:
        store = RunStore(run)
        steps = store.completed_steps()
        try:
            record = store.read_run()
        except CorruptRunError as err:
            view.add_row(run.name, "[red]unreadable[/]", str(len(steps)), str(steps[-1]) if steps else "-", "-", "-")
            notes.append(f"[yellow]warning:[/] {err}")
            continue
        last = (
            "-"
            if not steps
            else (f"{steps[-1]}/{record.total_steps}" if record.total_steps is not None else str(steps[-1]))
        )
        view.add_row(
            record.run_id, record.status, str(len(steps)), last, record.start_time[:19], (record.end_time or "-")[:19]
        )
        if record.status == "failed":
            notes.append(f"[yellow]{record.run_id} failed:[/] {record.error}")
    console.print(view)
    for note in notes:
        Console(stderr=True, soft_wrap=True).print(note, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
