"""The TR session: what every part of one TR run shares, made once and closed on every way out.

A TR run measures the workloads its spec names (single-agent matrix, quality suites, multi-agent
runs, load steps, embeddings) against one set of servers: they are started once, every workload
uses them, and they are stopped once at the end, whatever happened. The session holds that set
with the rest of what the workloads share: the spec and its inputs, where the results go, the
failure log of the servers, the gate an interrupt closes, and the manifest the runs are stamped
with (known once the servers answer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from trbench.config.agents import AgentSuite
from trbench.config.prompts import PromptSuite
from trbench.config.spec import MatrixSpec
from trbench.data import remote, store
from trbench.data.environment import Manifest
from trbench.data.failures import InstanceFaults
from trbench.data.model_facts import ModelFacts
from trbench.engines import Instance, create_instances
from trbench.run.multi import MultiRunPlan
from trbench.run.single import Gate, RunPlan
from trbench.workloads.steps import DirectSteps, Steps

log = logging.getLogger(__name__)


class Selection:
    """Which planned runs this TR run measures: resuming, every run without a finished run file."""

    rerun = False  # a rerun of flagged configs (a new attempt) measures runs only: no suites, no load

    def single(self, plans: list[RunPlan], root: Path) -> list[RunPlan]:
        done = store.done_run_ids(root)  # the run files are the ledger, less the runs a down server kept from running
        return [p for p in plans if p.run_id not in done]

    def multi(self, plans: list[MultiRunPlan], root: Path) -> list[MultiRunPlan]:
        done = store.done_run_ids(root, "multi")
        return [p for p in plans if p.run_id not in done]


@dataclass
class TRSession:
    """One TR run's shared state. `manifest` and `digest` are set once the servers answer
    (record_manifest); before that they are empty."""

    spec: MatrixSpec
    prompts: PromptSuite
    agents: AgentSuite | None
    root: Path
    instances: list[Instance]
    faults: InstanceFaults
    gate: Gate = field(default_factory=Gate)
    steps: Steps = field(default_factory=DirectSteps)
    selection: Selection = field(default_factory=Selection)
    facts: dict[str, ModelFacts] = field(default_factory=dict)
    manifest: Manifest = field(default_factory=Manifest)
    digest: str = ""
    _closed: bool = False

    @property
    def live(self) -> list[Instance]:
        """The instances not marked unusable."""
        return [inst for inst in self.instances if not self.faults.down(inst.name)]

    def close(self) -> None:
        """Close the gate first (a run cut short by it is not written), then stop every server.
        Safe to call again: a later call stops them once more (also what an interrupt left
        half-stopped) and records nothing twice."""
        self.gate.close()
        first, self._closed = not self._closed, True
        for inst in self.instances:
            try:
                inst.stop()
            except Exception as err:  # noqa: BLE001 - recorded; the other servers are stopped all the same
                if first:
                    log.error(self.faults.record("stop", inst.name, err))
        if first:  # the servers' logs are whole once they stopped: for a URL output_dir, now they go up
            try:
                remote.push_tree(self.root / "logs")
            except Exception as err:  # noqa: BLE001 - a log that did not go up loses no measurement
                log.warning("the servers' logs were not uploaded: %s: %s", type(err).__name__, err)


def open_session(spec: MatrixSpec, prompts: PromptSuite, agents: AgentSuite | None, output_dir: Path,
                 steps: Steps | None = None, selection: Selection | None = None,
                 server_logs: str | None = None) -> TRSession:
    """The session of one TR run: its folder under output_dir and its servers, made but not started. The
    servers' logs go to logs/, or to logs/<server_logs>/ where several hosts write one TR (each its own)."""
    root = store.open_tr(output_dir, spec.tr_id)  # for a URL, resuming sees what the store holds
    log_dir = root / "logs" / server_logs if server_logs else root / "logs"
    instances = create_instances(spec.server, log_dir, spec.instance_count, load_timeout_s=spec.load_timeout_s,
                                 backend=spec.backend)
    return TRSession(spec=spec, prompts=prompts, agents=agents, root=root, instances=instances,
                     faults=InstanceFaults(root, spec.tr_id), steps=steps or DirectSteps(),
                     selection=selection or Selection())
