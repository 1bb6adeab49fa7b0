"""Checks of a spec against the files and the machine, that need no server: run by
`trbench validate`, by `trbench run` before Prefect starts, and by the flow's load step.

The spec's own fields are checked by its pydantic models (trbench/config/spec.py); what they cannot see
is here: the prompt and agent files, enough ports or URLs for the instances, models the embedded
engine has, and an output folder that can be written. Each problem is a SpecError with one line
in the spec's style: `spec <path>: field '<field>': <what is wrong>; fix: <the fix>`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from trbench.config.agents import AgentSuiteError, load_agents
from trbench.config.paths import output_root, resolve_path
from trbench.engines.bundled import BUNDLED_MODELS
from trbench.config.prompts import PromptSuiteError, load_prompts
from trbench.config.servers import EmbeddedServer, ExternalServer
from trbench.config.spec import MatrixSpec, SpecError
from trbench.data import remote
from trbench.prose import count


def check_spec(spec: MatrixSpec, source: str, models: bool = True) -> list[str]:
    """Raise SpecError on the first problem; return the warnings (one line each) of a spec that
    may run. `models=False` leaves the embedded models to preflight, which names instance and check."""
    check_prompts(spec, source)
    check_agents(spec, source)
    check_suites(spec, source)
    check_embedding_texts(spec, source)
    check_dialogues(spec, source)
    check_instances(spec, source)
    if models:
        check_models(spec, source)
    check_output_dir(spec, source)
    check_harness(spec, source)
    check_api_key(spec, source)
    return warnings(spec, source)


def _error(source: str, field: str, what: str, fix: str) -> SpecError:
    return SpecError(f"{source}: field '{field}': {what}; fix: {fix}")


def _problem_of(message: str) -> tuple[str, str]:
    """(what, fix) of a loader's one-line message, without the loader's own 'spec field' prefix."""
    what, _, fix = message.partition("; fix: ")
    return _FIELD_PREFIX.sub("", what, count=1), fix or "see the shipped files under datasets/"


_FIELD_PREFIX = re.compile(r"^spec field '[^']*': ")


def _check_file(source: str, field: str, shown: str, example: str, load: Callable[[Path], object],
                errors: type[Exception] | tuple[type[Exception], ...], missing_field: str | None = None,
                missing_what: str = "") -> None:
    """A file the spec names (`shown`, as written) exists and its loader takes it; else one line that
    names the field (missing_field where the file's absence is another field's doing)."""
    path = resolve_path(shown)
    if not path.is_file():
        raise _error(source, missing_field or field, f"{missing_what}file {shown} not found"
                     + (" (a folder)" if path.is_dir() else ""), f"point it at {example}")
    try:
        load(path)
    except errors as err:
        raise _error(source, field, *_problem_of(str(err))) from None
    except (OSError, UnicodeDecodeError) as err:  # the digest file beside a suite
        raise _error(source, field, f"{path}: it or its digest file cannot be read as UTF-8 text ({err})",
                     "ship UTF-8 files") from None


def check_prompts(spec: MatrixSpec, source: str) -> None:
    _check_file(source, "prompts", spec.prompts, "a prompt suite, e.g. datasets/prompts/single_agent.yaml",
                load_prompts, PromptSuiteError)


def check_embedding_texts(spec: MatrixSpec, source: str) -> None:
    """The texts file of the load section's embeddings workload exists and parses."""
    emb = spec.load.embeddings if spec.load else None
    if emb is None:
        return
    from trbench.config.embeddings_section import EmbeddingTextsError, load_texts

    _check_file(source, "load.embeddings.texts", emb.texts,
                "a texts file, e.g. datasets/embeddings/passages_v1.yaml", load_texts, EmbeddingTextsError)


def check_dialogues(spec: MatrixSpec, source: str) -> None:
    """The dialogues file of the multi-turn workload exists, parses, and holds `turns` user turns per dialogue."""
    mt = spec.multi_turn
    if mt is None or mt.source != "dataset":
        return
    from trbench.config.multi_turn_section import DEFAULT_DIALOGUES, DialoguesError, load_dialogues

    _check_file(source, "multi_turn.dialogues", mt.dialogues, f"a dialogues file, e.g. {DEFAULT_DIALOGUES}",
                load_dialogues, DialoguesError)
    try:
        load_dialogues(resolve_path(mt.dialogues), mt.turns)
    except DialoguesError as err:
        raise _error(source, "multi_turn.turns", *_problem_of(str(err))) from None


def check_agents(spec: MatrixSpec, source: str) -> None:
    if spec.multi_agent is not None:
        _check_file(source, "multi_agent.agents", spec.multi_agent.agents,
                    "an agent suite, e.g. datasets/agents/tr_agents.yaml", load_agents, AgentSuiteError)


def check_suites(spec: MatrixSpec, source: str) -> None:
    """Every selected suite file exists and loads (its own one-line error, named by the spec field)."""
    su = spec.suites
    if su is None:
        return
    from trbench.suites.qa import QASuiteError, load_qa
    from trbench.suites.scenarios import ScenarioSuiteError, load_scenario

    for name in su.scenarios:
        _check_file(source, "suites.scenarios", su.scenario_path(name),
                    "a folder of <name>.yaml suites, e.g. datasets/scenarios", load_scenario, ScenarioSuiteError,
                    missing_field="suites.scenario_dir", missing_what=f"no scenario suite {name!r}: ")
    if su.qa:
        _check_file(source, "suites.qa_suite", su.qa_suite, "a QA suite, e.g. datasets/qa/qa.yaml", load_qa,
                    QASuiteError)


def _why_instances(spec: MatrixSpec) -> str:
    if spec.multi_agent is not None and spec.instance_count == 2:
        return "the multi-agent runs need two"
    return f"execution.mode parallel runs {spec.instance_count} models at once"


def _or_need_fewer(spec: MatrixSpec) -> str:
    """The other fix for too few servers: drop what needs more of them (one server measures the rest)."""
    if spec.multi_agent is not None and spec.instance_count == 2:
        return ", or remove multi_agent (the single-agent matrix needs one server)"
    return ", or set execution.mode: serial (one model at a time, one server)"


def check_instances(spec: MatrixSpec, source: str) -> None:
    """One port (or URL) per instance, as create_instances will need them."""
    need = spec.instance_count
    if spec.provider == "external":
        urls = spec.server.urls if isinstance(spec.server, ExternalServer) else []
        if len(urls) < need:
            raise _error(source, spec.field_name("urls"), f"{count(len(urls), 'URL')} for {need} instances ({_why_instances(spec)})",
                         f"list {need} urls of running servers{_or_need_fewer(spec)}")
        return
    have = len(spec.instance_ports)
    if have < need:
        raise _error(source, spec.field_name("ports"), f"{count(have, 'port')} for {need} instances ({_why_instances(spec)})",
                     f"list {need} ports, or remove ports to use the defaults{_or_need_fewer(spec)}")


def check_models(spec: MatrixSpec, source: str) -> None:
    if spec.provider != "embedded":
        return  # an Ollama or external server's models are known only to the server: preflight asks it
    unknown = [m for m in spec.models if m not in BUNDLED_MODELS]
    if unknown:
        raise _error(source, "models", f"{', '.join(map(repr, unknown))} not bundled with the embedded engine",
                     f"use {' or '.join(sorted(BUNDLED_MODELS))}, or a provider that serves it (ollama-process, "
                     "ollama-docker, external)")


def check_harness(spec: MatrixSpec, source: str) -> None:
    """An external runner must be built before anything starts (the Python harness needs nothing)."""
    from trbench.backends.external_runner import missing_runner

    for harness in spec.harness:
        if (why := missing_runner(harness)) is not None:
            what, _, fix = why.partition("; fix: ")
            raise _error(source, "harness", what, fix)


def check_api_key(spec: MatrixSpec, source: str) -> None:
    """The variable that holds the servers' key (server.api_key_env) is set: a run that cannot send it
    would have every request refused. Its value is never read into a message."""
    from trbench.backends.auth import missing_key

    if (why := missing_key(spec.api_key_env)) is not None:
        what, _, fix = why.partition("; fix: ")
        raise _error(source, spec.field_name("api_key_env"), what, fix)


def check_output_dir(spec: MatrixSpec, source: str) -> None:
    """output_dir is a folder this process can write, or can be created; its tr_id folder too. A URL of object
    storage: its bucket can be seen with the credentials at hand."""
    if remote.is_url(spec.output_dir) and (problem := remote.reach_problem(spec.output_dir)) is not None:
        what, _, fix = problem.partition("; fix: ")
        raise _error(source, "output_dir", what, fix)
    out = output_root(spec.output_dir)
    if remote.url_of(out) is not None:
        return  # a working copy of object storage: nothing local to check
    if out.exists() and not out.is_dir():
        raise _error(source, "output_dir", f"{spec.output_dir} is a file, not a folder",
                     "give a folder (it is created when missing)")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise _error(source, "output_dir", f"{spec.output_dir} cannot be created: {existing} is a file",
                     "give a folder path whose parents are folders")
    if not _writable(existing):
        what = f"{spec.output_dir} is not writable" if existing == out else \
            f"{spec.output_dir} cannot be created: {existing} is not writable"
        raise _error(source, "output_dir", what, "give a folder you can write, e.g. outputs")
    tr_root = out / spec.tr_id
    if tr_root.exists() and not tr_root.is_dir():
        raise _error(source, "tr_id", f"{tr_root} is a file, where the TR run's folder goes",
                     "choose another tr_id or move the file")


def _writable(folder: Path) -> bool:
    # a real file, not os.access: access() says yes to root on a read-only file system
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def warnings(spec: MatrixSpec, source: str) -> list[str]:
    """What the spec may do but should not do unnoticed."""
    if spec.remote_bind and isinstance(spec.server, EmbeddedServer):  # remote_bind: the embedded engine's
        return [f"{source}: field '{spec.field_name('host')}': the embedded servers listen on {spec.server.host}, "
                "reachable from the network "
                "(allow_remote_bind: true); anyone who can reach this machine can use them"]
    return []
