"""The trbench command line: `trbench init [PATH]`, `trbench run SPEC [--smoke]`, `trbench report TR_ID
[--baseline OTHER]`, `trbench validate SPEC`, `trbench score TRUTH.csv PREDICTIONS.csv`, `trbench ensemble TR_ID
--models a,b,c`, `trbench export TR_ID --format csv|jsonl [--table runs]`, `trbench compare TR_A TR_B [more]`."""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trbench.run import progress as events
from trbench.run import stopping
from trbench.config.spec import MatrixSpec, SpecError, load_spec
from trbench.prose import count

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Technical-Report benchmarks of local LLM servers.")
console = Console(stderr=True)
_T = TypeVar("_T")


def _die(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _stop_on_signals() -> None:
    """SIGTERM unwinds like Ctrl-C, so every started server is stopped on the way out. Once
    stopping, further signals are ignored: a second Ctrl-C must not cut short stopping the
    servers and reporting to Prefect (both bounded, seconds)."""

    def handler(signum, _frame):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stopping.request()  # noticed by the flow's waits even if this raise is held off or swallowed
        raise KeyboardInterrupt(f"signal {signum}")

    stopping.clear()
    stopping.own_signals()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _command_line() -> str:
    """The command as it was typed (`python -m trbench.cli` when run as a module)."""
    head = [sys.argv[0]] if not sys.argv[0].endswith(".py") else [sys.executable, "-m", "trbench.cli"]
    return shlex.join(head + sys.argv[1:])


def _exit(code: int) -> None:
    """Exit; without Prefect's drain at interpreter exit when its server did not take everything
    (it would retry each event against a server that is gone, for minutes). After a TR run in this
    process without Prefect, without the interpreter's teardown of the modules it imported either
    (half a second of finalisers that keep nothing): its exit hooks still run (servers stopped, logs
    flushed)."""
    if not _prefect_drained or _ran_without_prefect:
        if _prefect_drained:
            atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


_prefect_drained = True
_ran_without_prefect = False


def _progress_bar() -> tuple[Progress, Callable[[events.ProgressEvent], None]]:
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console, transient=False)
    task_id = bar.add_task("runs", total=None, detail="preflight")

    def on_event(e: events.ProgressEvent) -> None:
        if e.kind == "planned":  # adds up: load steps are planned after the matrix's runs
            bar.update(task_id, total=(bar.tasks[0].total or 0) + e.total_runs, detail=e.message)
        elif e.kind == "run_skipped":
            bar.advance(task_id)
        elif e.kind == "run_started":
            bar.update(task_id, detail=e.run_id)
        elif e.kind == "request_done":
            of = f"/{e.requests}" if e.requests else ""  # a run bounded by time does not know its count
            bar.update(task_id, detail=f"{e.run_id} request {e.request}{of}")
        elif e.kind == "pull":
            bar.update(task_id, detail=events.describe_pull(e))
        elif e.kind == "run_finished":
            bar.advance(task_id)
            if not e.valid:
                bar.console.print(f"[yellow]run {e.run_id} invalid[/]")

    return bar, on_event


def _print_version(asked: bool) -> None:
    """`trbench --version`: the installed package's version (its metadata, the one pyproject.toml sets)."""
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("trbench")
        except PackageNotFoundError:  # run from a checkout that was never installed
            found = "unknown (not installed; fix: pip install -e .)"
        print(f"trbench {found}")
        raise typer.Exit(0)


@app.callback()
def _no_telemetry(
    _version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                  help="print trbench's version and exit"),
) -> None:
    """Before any command, so before Prefect is imported (its SDK telemetry and notice are decided
    at import): trbench sends nothing anywhere but the servers under test, whatever the user's
    environment says."""
    from trbench.cli_prefect import NO_TELEMETRY

    os.environ.update(NO_TELEMETRY)


def _quiet_prefect(verbose: bool) -> None:
    if not verbose:  # the temporary server's own log (its file, logs/prefect-server.log): its warnings only
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")


# Prefect's words for a run cut short by the stop (the flow's and the tasks' crashed states), and
# trbench's exception for a run the closed gate did not let finish
# Prefect's event and log workers say "Still processing items" while they drain at the end of a run on a busy
# machine: the drain is bounded and its outcome said once, so the progress of it is log-file detail
_STOP_MARKS = ("Execution was aborted by an interrupt signal", "Execution was aborted by a termination signal",
               "RunCancelled: ", "RunCancelled(", "Still processing items: ")


class _NoStopNoise(logging.Filter):
    """On the console, a stop is said in one line (what was kept, the command that resumes), not
    as Prefect's errors about it: the runs cut short by the closed gate (RunCancelled) and the
    flow run "crashed" by the interrupt; nor the progress of Prefect's final drain. The UI, the
    log file and --verbose keep them."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import TerminationSignal

        from trbench.run.single import RunCancelled

        if record.exc_info and isinstance(record.exc_info[1], (RunCancelled, KeyboardInterrupt, TerminationSignal)):
            return False
        message = record.getMessage()
        return not any(mark in message for mark in _STOP_MARKS)


def _explained_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is the whole story: what failed and the fix."""
    from trbench.config.agents import AgentSuiteError
    from trbench.engines.gguf import GGUFError
    from trbench.engines import InstanceError
    from trbench.run.preflight import PreflightError
    from trbench.config.prompts import PromptSuiteError

    return SpecError, PreflightError, InstanceError, AgentSuiteError, PromptSuiteError, GGUFError


def _plain_lines() -> events.PlainLines | None:
    """Plain progress lines on stdout when it is not a terminal (`make run | tee log`, CI logs),
    where the progress bar shows nothing until the end."""
    return None if sys.stdout.isatty() else events.PlainLines(sys.stdout)


def _run_flow(flow, params: dict, root: Path, verbose: bool = False, prefect=None) -> State:
    """Run a flow under the progress bar, against the temporary Prefect server when no
    PREFECT_API_URL is set, with Prefect's log in the run's log file (on the terminal too with
    --verbose). Ctrl-C, SIGTERM or a cancel in the UI stop it with every server; one line then
    says what was kept under root and the command that resumes."""
    global _prefect_drained
    from prefect.exceptions import TerminationSignal

    from trbench.data import store
    from trbench.cli_prefect import CancelWatch, RunLog, TemporaryServer, server_log_path

    _stop_on_signals()
    bar, on_event = _progress_bar()
    plain = _plain_lines()
    unsubscribe = [events.subscribe(on_event)] + ([events.subscribe(plain)] if plain else [])
    prefect = prefect or TemporaryServer(None if verbose else server_log_path(root))
    watch, log = CancelWatch(), RunLog(root, verbose)
    stop_noise = _NoStopNoise()
    terminal = [] if verbose else list(logging.getLogger().handlers)
    for handler in terminal:
        handler.addFilter(stop_noise)
    try:
        with log, prefect, bar, watch:
            state = flow.with_options(on_running=[watch.hook])(**params, return_state=True)
    except (KeyboardInterrupt, TerminationSignal):
        _prefect_drained = prefect.drained  # _exit below decides on it before the finally clause runs
        kept = sum(len(store.finished_run_ids(root, kind)) for kind in store.TABLES)  # runs and load steps
        how = "cancelled in Prefect" if watch.cancelled else "interrupted"
        if plain:
            plain.write_summary(how)
        console.print(f"{how}: {count(kept, 'finished run')} kept in {where(root)}; resume with: {_command_line()}",
                      style="yellow", markup=False, highlight=False, soft_wrap=True)
        _exit(130)
    except Exception as err:  # noqa: BLE001 - not the flow's failure (its state says that): Prefect's own
        _prefect_drained = prefect.drained
        with log:
            logging.getLogger("trbench.cli").error("the flow did not run to its end", exc_info=err)
        console.print(f"[red]error:[/] {_failure_line(err, log.path)}", highlight=False, soft_wrap=True)
        _exit(1)
    finally:
        _prefect_drained = prefect.drained
        stopping.clear()  # this run's stop only: a later flow in the same process starts unstopped
        for stop in unsubscribe:
            stop()
        for handler in terminal:
            handler.removeFilter(stop_noise)
    if plain:  # a failure's cause is the last line, once: the summary only counts
        plain.write_summary(f"{state.name}: {state.message}" if state.is_completed() else state.name)
    return state


def _failure_line(err: BaseException, log: Path) -> str:
    """One line for an error: its own message where that names what failed and the fix, else its
    type and message and where its traceback is."""
    if isinstance(err, _explained_errors()):
        return str(err)
    return f"{type(err).__name__}: {err} (traceback in {log})"


def _checked(spec: MatrixSpec, source: str) -> MatrixSpec:
    """The checks against files and machine (trbench/run/spec_checks.py); warnings printed, errors end here."""
    from trbench.run.spec_checks import check_spec

    try:
        warnings = check_spec(spec, source)
    except SpecError as err:
        _die(str(err))
    for line in warnings:
        console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    return spec


def _finish(state, root: Path) -> None:
    """The last line: the final state and its message; for a failure, its first cause (the
    exception a flow raised, or the first words of the state it returned) and nothing after it."""
    from trbench.cli_prefect import log_path

    if state.is_completed():
        console.print(f"[green]{state.name}[/]: {state.message}", highlight=False, soft_wrap=True)
        _exit(0)
    try:  # a Prefect state may hold what the flow raised; a run without Prefect raised it to the CLI already
        raised = state.result(raise_on_failure=False) if hasattr(state, "result") else None
    except Exception:  # noqa: BLE001 - a result that cannot be read: the state's message says it
        raised = None
    line = _failure_line(raised, log_path(root)) if isinstance(raised, BaseException) else state.message
    console.print(f"log:    {where(log_path(root))}", highlight=False, soft_wrap=True)
    console.print(f"[red]{state.name}[/]: {line}", highlight=False, soft_wrap=True)
    _exit(1)


@app.command()
def run(
    spec_path: Path = typer.Argument(..., help="TR matrix spec (YAML), e.g. deployments/quickstart.yaml"),
    tr_id: str | None = typer.Option(None, help="override the spec's tr_id (same id again resumes)"),
    models: str | None = typer.Option(None, help="comma-separated models, overriding the spec"),
    runs: int | None = typer.Option(None, min=1, help="runs per cell, overriding the spec"),
    output_dir: str | None = typer.Option(None, help="where results go (default: the spec's, 'outputs')"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show every log record (Prefect's too)"),
    smoke: bool = typer.Option(False, "--smoke", help="check the setup first: every model, scenario and suite, 1 run "
                               "of 2 requests each, under the tr_id <tr_id>-smoke (printed); its report says pass or "
                               "fail and names no winner"),
    prefect: bool = typer.Option(False, "--prefect", help="record the run in Prefect (flow and task runs, artifacts) "
                                 "even where no Prefect API is configured: a temporary local server; with "
                                 "PREFECT_API_URL set (or a profile's), every run is recorded there"),
) -> None:
    """Run a TR: preflight, servers, every workload the spec names, Parquet, checks, report."""
    global _ran_without_prefect
    try:
        spec = load_spec(spec_path)
        spec = spec.with_overrides(tr_id=tr_id, models=models.split(",") if models else None, runs=runs, output_dir=output_dir)
        if smoke:
            from trbench.config.smoke import smoke_spec

            spec = smoke_spec(spec)
    except SpecError as err:
        _die(str(err))
    _checked(spec, f"spec {spec_path}")  # everything that needs no server, before Prefect starts
    if smoke:  # the id it writes under is not the one in the spec: say so before and after
        console.print(f"smoke: a setup check under tr_id {spec.tr_id!r} (the full TR's data is untouched)",
                      highlight=False, soft_wrap=True)
    if spec.single_agent or spec.multi_agent is not None:
        from trbench.validation.worker import ValidationProcess

        ValidationProcess.start_early()  # its seconds of import pass beside this process's, not after the runs
    from trbench.cli_prefect import TemporaryServer, api_configured, server_log_path
    from trbench.data import store
    from trbench.config.paths import output_root

    root = store.tr_dir(output_root(spec.output_dir), spec.tr_id)
    if not (prefect or api_configured()):  # nobody would see a Prefect record: the same TR, without Prefect
        _ran_without_prefect = True
        _report_where(_run_direct(spec, root, verbose), spec, root, smoke)
        return
    _quiet_prefect(verbose)
    # the temporary Prefect server boots in its own process while this one imports what the run needs
    server = TemporaryServer(None if verbose else server_log_path(root))
    try:
        server.spawn()
        from flows.tr import tr  # Prefect imports take seconds: only when needed
    except KeyboardInterrupt:
        server.discard()
        console.print("interrupted before anything ran", style="yellow", highlight=False)
        _exit(130)
    params = {"spec_path": str(spec_path), "tr_id": spec.tr_id, "models": spec.models, "runs": spec.runs,
              "output_dir": spec.output_dir}
    if smoke:  # the cut spec itself: the file says the long run
        params["spec"] = spec.model_dump(mode="json")
    state = _run_flow(tr, params, root, verbose, server)
    _report_where(state, spec, root, smoke)


def _report_where(state, spec: MatrixSpec, root: Path, smoke: bool) -> None:
    """Where the data and the report are, then the last line."""
    from trbench.data import store

    if store.finished_run_ids(root, "load"):
        console.print(f"load:   {where(root)}/{{load_requests,load_steps}}  (Parquet)", soft_wrap=True)
    if store.finished_run_ids(root) or store.finished_run_ids(root, "multi"):
        console.print(f"data:   {where(root)}/{{requests,runs,ma_requests,ma_runs}}  (Parquet, hive-partitioned by model_slug)",
                      soft_wrap=True)
    from trbench.report.outline import appendix_file, report_file

    report = root / "report" / report_file(spec.tr_id)
    if report.is_file():
        console.print(f"report: {where(report)}", soft_wrap=True)
    appendix = report.with_name(appendix_file(spec.tr_id))
    if appendix.is_file():  # every detail table and definition, beside the report
        console.print(f"appendix: {where(appendix)}", soft_wrap=True)
    if smoke:
        console.print(f"tr_id:  {spec.tr_id}  (`trbench report {spec.tr_id}` renders it again)", highlight=False,
                      soft_wrap=True)
    _finish(state, root)


def _run_direct(spec: MatrixSpec, root: Path, verbose: bool):
    """The TR run in this process with no Prefect (trbench.tr.run_tr, each step a plain call), under
    the progress bar, its log in the run's log file. Ctrl-C or SIGTERM stop it with every server;
    one line then says what was kept under root and the command that resumes."""
    from trbench.cli_prefect import RunLog
    from trbench.config.agents import load_agents
    from trbench.config.paths import resolve_path
    from trbench.config.prompts import load_prompts
    from trbench.data import store
    from trbench.tr.runner import run_tr
    from trbench.workloads.steps import DirectSteps

    _stop_on_signals()
    bar, on_event = _progress_bar()
    plain = _plain_lines()
    unsubscribe = [events.subscribe(on_event)] + ([events.subscribe(plain)] if plain else [])
    log = RunLog(root, verbose, plain=True)
    try:
        with log, bar:
            prompts = load_prompts(resolve_path(spec.prompts))
            agents = load_agents(resolve_path(spec.multi_agent.agents)) if spec.multi_agent else None
            outcome = run_tr(spec, prompts, agents, DirectSteps(logging.getLogger("trbench.tr")))
    except KeyboardInterrupt:
        kept = sum(len(store.finished_run_ids(root, kind)) for kind in store.TABLES)  # runs and load steps
        if plain:
            plain.write_summary("interrupted")
        console.print(f"interrupted: {count(kept, 'finished run')} kept in {where(root)}; resume with: {_command_line()}",
                      style="yellow", markup=False, highlight=False, soft_wrap=True)
        _exit(130)
    except Exception as err:  # noqa: BLE001 - one line here, the traceback in the run's log
        with log:
            logging.getLogger("trbench.cli").error("the TR run did not run to its end", exc_info=err)
        console.print(f"[red]error:[/] {_failure_line(err, log.path)}", highlight=False, soft_wrap=True)
        _exit(1)
    finally:
        stopping.clear()  # this run's stop only
        for stop in unsubscribe:
            stop()
    if plain:  # a failure's cause is the last line, once: the summary only counts
        plain.write_summary(f"Completed: {outcome.message}" if outcome.completed else "Failed")
    return outcome


@app.command()
def rerun(
    tr_id: str = typer.Argument(..., help="the TR run whose flagged configs run again"),
    output_dir: str = typer.Option("outputs", help="where the TR run's data is"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs"),
) -> None:
    """Run the configs flagged as outliers again (new attempt), re-validate, re-flag, re-report."""
    manifest = _open_tr(output_dir, tr_id) / "manifest.json"
    if not manifest.is_file():  # before Prefect starts: seconds saved on a typo
        _die(f"no TR run {tr_id!r} under {where(manifest.parent)} (manifest.json missing); fix: check the tr_id and --output-dir")
    _quiet_prefect(verbose)
    from flows.rerun_flagged import rerun_flagged

    _finish(_run_flow(rerun_flagged, {"tr_id": tr_id, "output_dir": output_dir}, manifest.parent, verbose),
            manifest.parent)


@app.command()
def validate(spec_path: Path = typer.Argument(..., help="TR matrix spec (YAML)")) -> None:
    """Check a spec without starting anything: its fields, its prompt and agent files, ports or
    URLs for every instance, the embedded models, the output folder."""
    try:
        spec = load_spec(spec_path)
    except SpecError as err:
        _die(str(err))
    _checked(spec, f"spec {spec_path}")
    per_run = f"{spec.duration_s:g} s" if spec.duration_s is not None else count(spec.requests_per_run, "request")
    runs = (f"{count(len(spec.cells()) * spec.runs, 'run')} of {per_run}" if spec.single_agent
            else "no single-agent runs")
    load = (f", load steps {', '.join(s.label for s in spec.load.fixed_steps())} per cell of "
            f"{', '.join(spec.load_models)}" if spec.load else "")
    suites = (f", suites {', '.join(spec.suites.names)} on {', '.join(spec.suite_models)}"
              if spec.suites and spec.suite_models else "")  # suite_models: none without suites
    console.print(f"ok: {spec.tr_id}: {count(len(spec.models), 'model')}, {count(len(spec.cells()), 'cell')}, {runs}{load}{suites}")


def _asking(yes: bool) -> bool:
    """Whether `trbench init` asks for what its flags leave out: at a terminal, unless --yes."""
    return not yes and sys.stdin.isatty()


def _ask(question: str, default: str, parse: Callable[[str], _T]) -> _T:
    """typer's prompt until parse takes the answer (its one-line error is shown before asking again)."""
    from trbench.config.scaffold import ScaffoldError

    while True:
        answer = typer.prompt(question, default=default, show_default=bool(default))
        try:
            return parse(answer)
        except ScaffoldError as err:
            console.print(str(err), style="red", markup=False, highlight=False, soft_wrap=True)


@app.command()
def init(
    path: Path | None = typer.Argument(None, help="where to write the spec (default: <tr_id>.yaml here)"),
    provider: str | None = typer.Option(None, "--provider", help="ollama: an Ollama server you run; external: an "
                                        "OpenAI-compatible server you run; embedded: llama.cpp servers trbench "
                                        "starts with the bundled models (default: ollama)"),
    url: list[str] | None = typer.Option(None, "--url", help="the server's base URL; twice for two servers (the "
                                         "multi-agent runs need two)"),
    models: str | None = typer.Option(None, "--models", help="comma-separated names (or numbers) of models the "
                                      "server lists, or 'all'; default: all of them, or the first 3"),
    tr_id: str | None = typer.Option(None, "--tr-id", help="the TR run's name (default: <provider>-tr)"),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="for a server that asks for an API key: "
                                           "the environment variable holding it (its name, never the key)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="ask nothing: the flags, else the defaults"),
    force: bool = typer.Option(False, "--force", help="overwrite PATH if it exists"),
) -> None:
    """Start your own TR: list the models your server has, choose, and write a commented spec that
    `trbench validate` accepts. Asks for what the flags leave out when run at a terminal. Exit codes:
    0 written, 2 bad input or a server that does not answer."""
    from trbench.config import scaffold
    from trbench.engines.served_models import ServerUnreachable, available_models

    ask = _asking(yes)
    try:
        if path is not None:
            scaffold.check_target(path, force)  # before any question or server
        kinds = ", ".join(scaffold.SERVER_KINDS)
        kind = (scaffold.kind_of(provider) if provider else _ask(f"provider ({kinds})", "ollama", scaffold.kind_of)
                if ask else scaffold.kind_of("ollama"))
        urls = list(url or [])
        if kind.default_url is not None and not urls:
            urls = [typer.prompt(f"URL of {kind.what}", default=kind.default_url) if ask else kind.default_url]
            second = typer.prompt("a second server's URL, for the multi-agent runs (empty: none)", default="",
                                  show_default=False) if ask else ""
            urls += [second.strip()] if second.strip() else []
        urls = scaffold.check_server(kind, urls, api_key_env)
        listed = available_models(kind, urls, api_key_env)
        where = f"the server at {urls[0]}" if urls else "the embedded engine"
        if models:
            chosen = scaffold.choose_models(listed, models, where)
        elif ask:
            for i, name in enumerate(listed, 1):
                console.print(f"  {i:>2}. {name}", highlight=False)
            default = "all" if len(listed) <= scaffold.DEFAULT_MODEL_COUNT else ",".join(
                str(i) for i in range(1, scaffold.DEFAULT_MODEL_COUNT + 1))
            chosen = _ask("models (numbers or names, comma-separated, or all)", default,
                          lambda answer: scaffold.choose_models(listed, answer, where))
        else:
            chosen = scaffold.default_models(listed)
        default_id = scaffold.default_tr_id(kind)
        tr = (scaffold.check_tr_id(tr_id) if tr_id else _ask("tr_id", default_id, scaffold.check_tr_id)
              if ask else default_id)
        target = path or Path(f"{tr}.yaml")
        scaffold.check_target(target, force)
        answers = scaffold.InitAnswers(kind=kind, urls=urls, models=chosen, tr_id=tr, api_key_env=api_key_env)
        text = scaffold.render_spec(answers, str(target))
        spec = scaffold.spec_of(text, f"spec {target}")
    except (scaffold.ScaffoldError, ServerUnreachable, SpecError) as err:
        _die(str(err))
    _checked(spec, f"spec {target}")  # what `trbench validate` will check, before the file is there
    try:
        scaffold.write_new(target, text, force)
    except scaffold.ScaffoldError as err:
        _die(str(err))
    servers = " and ".join(urls) if urls else "the embedded engine"
    console.print(f"wrote {target}: tr_id {spec.tr_id}, {count(len(spec.models), 'model')} ({', '.join(spec.models)}) on "
                  f"{servers}" + (", with the multi-agent runs" if spec.multi_agent else ""), highlight=False,
                  soft_wrap=True)
    console.print(f"next:  trbench validate {target}   then   trbench run {target}", highlight=False, soft_wrap=True)


def _has_data(root: Path) -> bool:
    from trbench.data.store import TABLES

    return any((root / runs).is_dir() for _, runs, _, _ in TABLES.values())  # every kind's ledger table


def _open_tr(output_dir: str, tr_id: str) -> Path:
    """The local folder of a stored TR run (for a URL output_dir, its working copy, fetched); exit 2 naming the fix
    when output_dir is a URL trbench cannot read."""
    from trbench.data import store
    from trbench.data.remote import OutputDirError

    try:
        return store.open_tr(output_dir, tr_id)
    except OutputDirError as err:
        _die(str(err))
        raise  # _die exits


def where(path: Path) -> str:
    """A path as a person should see it: its URL when it is in the working copy of an object-storage output_dir."""
    from trbench.data.remote import where as _where

    return _where(path)


def _tr_root(output_dir: str, tr_id: str) -> Path:
    """The folder of a stored TR run; exit 2 naming the fix when it holds no data."""
    root = _open_tr(output_dir, tr_id)
    if not _has_data(root):
        from trbench.config.smoke import SUFFIX

        smoke_root = _open_tr(output_dir, tr_id + SUFFIX)
        hint = f" (a setup check of it is stored as {smoke_root.name!r})" if _has_data(smoke_root) else ""
        _die(f"no data for tr_id {tr_id!r} under {where(root)}{hint}; fix: check --output-dir and the tr_id")
    return root


@app.command()
def report(
    tr_id: str = typer.Argument(..., help="the TR run to report on"),
    output_dir: str = typer.Option("outputs", help="where the TR run's data is"),
    baseline: str | None = typer.Option(None, "--baseline", help="a baseline TR run (same --output-dir) to check "
                                        "for regressions against; exit code 3 when there are any, 4 when no cell "
                                        "of the two matches (nothing compared: the differing settings are named)"),
    threshold: float = typer.Option(10.0, "--threshold", min=0.0, help="regression threshold in % (a matched cell "
                                    "worse by more than this is a regression)"),
    html: bool = typer.Option(True, "--html/--no-html", help="also write the self-contained HTML report"),
) -> None:
    """Render the report of a TR run again from its Parquet data (Markdown, HTML, plots).

    Exit codes: 0 done (with --baseline: at least one cell compared, no regressions), 2 bad input,
    3 regressions against --baseline, 4 nothing compared against --baseline (no cell in common; the
    settings that differ are named)."""
    from trbench.report.regression import EXIT_NOTHING_COMPARED, EXIT_REGRESSION, describe, summary_message
    from trbench.report import publish
    root = _tr_root(output_dir, tr_id)
    baseline_root = None
    if baseline is not None:
        baseline_root = _open_tr(output_dir, baseline)
        if not _has_data(baseline_root):
            _die(f"no data for baseline tr_id {baseline!r} under {where(baseline_root)}; fix: check --baseline and "
                 "--output-dir")
    files = publish(root, baseline_root=baseline_root, threshold_pct=threshold, html=html)
    console.print(f"report: {where(files.markdown)}")
    if files.html:
        console.print(f"html:   {where(files.html)}")
    if files.appendix_markdown:  # every detail table and definition, beside the report
        console.print(f"appendix: {where(files.appendix_markdown)}"
                      + (f", {where(files.appendix_html)}" if files.appendix_html else ""))
    if files.plots:
        console.print(f"plots:  {where(files.plots[0].parent)}/ ({len(files.plots)})")
    if files.summary_json and files.summary_csv:
        console.print(f"data:   {where(files.summary_json)}, {where(files.summary_csv)} (docs/summary.md)")
    result = files.data.regression
    if result is None:
        return
    for c in result.regressions:
        console.print(f"[red]regression[/]: {describe(c)}", highlight=False, soft_wrap=True)
    for c in result.improvements:
        console.print(f"[green]improvement[/]: {describe(c)}", highlight=False, soft_wrap=True)
    colour = "red" if result.has_regressions or result.nothing_compared else "green"
    console.print(f"[{colour}]{summary_message(result)}[/]", highlight=False, soft_wrap=True)
    if result.has_regressions:
        raise typer.Exit(EXIT_REGRESSION)
    if result.nothing_compared:
        raise typer.Exit(EXIT_NOTHING_COMPARED)


def _tr_folder(output_dir: str, tr: str) -> Path:
    """A TR given by tr_id under output_dir, or by the path or URL of its folder."""
    from trbench.data.remote import is_url

    if is_url(tr) and tr.rstrip("/").count("/") > 2:  # scheme://bucket/.../tr_id
        parent, _, name = tr.rstrip("/").rpartition("/")
        return _tr_root(parent, name)
    path = Path(tr)
    return path if _has_data(path) else _tr_root(output_dir, tr)


@app.command()
def compare(
    trs: list[str] = typer.Argument(..., help="two or more TR runs: tr_ids under --output-dir or TR folders; the "
                                    "first is what the others are compared against"),
    output_dir: str = typer.Option("outputs", help="where the TR runs' data is"),
    fmt: str = typer.Option("md", "--format", help="md (tables for people) or json (every field)"),
) -> None:
    """Compare TR runs cell by cell (docs/compare.md): cells matched on workload, model and config
    values, whatever the provider or server; per matched cell the headline figures of each TR, the
    change against the first and whether the 95 % intervals show a difference; the settings that
    differ; the cells only some TRs have. Exit codes: 0 compared, 1 no cell in every TR (one line
    says why), 2 bad input."""
    if fmt not in ("md", "json"):
        _die(f"--format {fmt!r}: not a format; fix: give md or json")
    if len(trs) < 2:
        _die("compare needs at least two TR runs; fix: give TR_A TR_B [more]")
    from trbench.report.comparison import compare_trs, load_side, markdown

    result = compare_trs([load_side(_tr_folder(output_dir, tr)) for tr in trs])
    if result.why_nothing_matched is not None:
        console.print(f"[red]nothing compared:[/] {result.why_nothing_matched}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    print(result.model_dump_json(indent=2) if fmt == "json" else markdown(result), end="\n" if fmt == "json" else "")


@app.command()
def score(
    truth_path: Path = typer.Argument(..., help="WattBot-style truth CSV: id, answer_value, answer_unit, ref_id"),
    predictions_path: Path = typer.Argument(..., help="predictions CSV with the same columns (and ids)"),
    out: Path | None = typer.Option(None, "--out", help="per-question scores CSV (default: beside the predictions, "
                                    "PREDICTIONS.scores.csv)"),
    lenient: bool = typer.Option(False, "--lenient", help="trbench's own, more forgiving reading of the cells "
                                 "(docs/qa-scoring.md lists each difference) instead of the public WattBot scorer's"),
) -> None:
    """Score QA predictions as the public WattBot scorer does (docs/qa-scoring.md): overall and each
    component, and one row per question. Exit codes: 0 scored, 2 bad input."""
    from trbench.suites import qa_csv
    from trbench.suites.qa_score import WEIGHTS, Reading, score_answers

    reading = Reading.LENIENT if lenient else Reading.PUBLIC
    target = out or predictions_path.with_name(f"{predictions_path.stem}.scores.csv")
    try:
        truth = qa_csv.read_answers(truth_path, "truth", reading)
        predictions = qa_csv.read_answers(predictions_path, "predictions", reading)
        ids = qa_csv.check_ids(truth, predictions, predictions_path, reading)
    except qa_csv.ScoreInputError as err:
        _die(str(err))
    if not truth:
        _die(f"truth {truth_path}: no question (a header row only); fix: give at least one question")
    result, rows = score_answers(truth, predictions, reading)
    try:
        qa_csv.write_question_scores(rows, target)
    except OSError as err:
        _die(f"--out {target}: cannot write the per-question scores ({err.strerror or err}); fix: give a writable path")
    print(f"reading         {reading.value} ("
          + ("trbench's own; without --lenient: the public WattBot scorer's)" if lenient
             else "the public WattBot scorer's; --lenient: trbench's own)"))
    print(f"overall         {result.overall:.4f}")
    print(f"value_accuracy  {result.value_accuracy:.4f}  (x {WEIGHTS['value']})")
    print(f"ref_overlap     {result.ref_overlap:.4f}  (x {WEIGHTS['ref']})")
    print(f"na_recall       {result.na_recall:.4f}  (x {WEIGHTS['na']}; {count(result.n_na, 'unanswerable question')})")
    print(f"unit_match      {result.unit_match:.4f}  (x 0: reported, not weighed)")
    print(f"questions       {result.n}  (failed: {result.failed}; unreadable cells, scored 0: {result.unreadable})")
    bad = [f"{r.id} {c}" for r in rows for c in r.unreadable]
    if bad:
        _warn(f"{count(len(bad), 'cell')} could not be read, scored 0: {_first(bad)}")
    if ids.missing:
        fate = "scored 0" if lenient else "left out, as the public scorer does (--lenient scores them 0)"
        _warn(f"{count(len(ids.missing), 'question')} without a prediction, {fate}: {_first(ids.missing)}")
    if ids.unknown:
        _warn(f"{count(len(ids.unknown), 'predicted id')} not in the truth file, left out: {_first(ids.unknown)}")
    console.print(f"per-question scores: {target}", highlight=False, soft_wrap=True)


def _warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (" ..." if len(items) > n else "")


@app.command()
def ensemble(
    tr_id: str = typer.Argument(..., help="a stored TR run whose models answered the QA suite"),
    models: str = typer.Option(..., "--models", help="comma-separated models; their order breaks ties"),
    output_dir: str = typer.Option("outputs", help="where the TR run's data is"),
) -> None:
    """Majority vote over a stored TR's QA answers (docs/qa-scoring.md, "Ensemble vote"), scored
    like a model and added to the TR's results matrix (`trbench report` shows it). Exit codes: 0
    done, 2 bad input."""
    from trbench.suites.results import EnsembleError, add_ensemble

    names = [m.strip() for m in models.split(",") if m.strip()]
    root = _open_tr(output_dir, tr_id)
    try:
        row = add_ensemble(root, names)
    except EnsembleError as err:
        _die(str(err))
    print(f"{row.model}: overall {row.qa.overall:.4f}  value {row.qa.value_accuracy:.4f}  ref {row.qa.ref_overlap:.4f}  "
          f"NA {row.qa.na_recall:.4f}  ({count(row.qa.n, 'question')}, {row.qa.failed} without a vote)")
    console.print(f"results matrix: {where(root)}/suites/results_matrix.parquet", highlight=False,
                  soft_wrap=True)


@app.command()
def export(
    tr_id: str = typer.Argument(..., help="the TR run whose table to export"),
    fmt: str = typer.Option("csv", "--format", help="csv (list columns as JSON text) or jsonl (one JSON object a row)"),
    table: str = typer.Option("runs", "--table", help="the stored table: runs, requests, ma_runs, ma_requests, "
                              "load_steps, load_requests, emb_steps, emb_requests, telemetry, suite_requests"),
    output: str | None = typer.Option(None, "--output", help="the file to write ('-': standard output; default "
                                      "<output-dir>/<tr_id>/exports/<table>.<format>)"),
    output_dir: str = typer.Option("outputs", help="where the TR run's data is"),
) -> None:
    """Write one stored table of a TR run as CSV or JSON Lines, for a spreadsheet or a notebook (the
    report's statistics are in report/summary.json and summary.csv: docs/summary.md). Exit codes: 0
    written, 2 bad input."""
    from trbench.data.export import ExportError, export_table

    root = _tr_root(output_dir, tr_id)
    try:
        path, data = export_table(root, table, fmt, Path(output) if output is not None else None)
    except ExportError as err:
        _die(str(err))
    if path is not None:
        console.print(f"{table}: {count(data.num_rows, 'row')}, {count(data.num_columns, 'column')} -> {where(path)}", highlight=False,
                      soft_wrap=True)


if __name__ == "__main__":
    sys.exit(app())
