"""The workloads of a TR run behind one protocol (base.Workload), registered once, in the order a
TR run measures them: single-agent matrix, quality suites, multi-agent runs, load steps, multi-turn
conversations, embeddings, synthetic lengths.
A new workload is one module and one `register(...)` call."""

from trbench.workloads.protocol import Measured, Planned, ReportPart, Workload
from trbench.workloads.embedding_load import EmbeddingLoad
from trbench.workloads.load_mode import LoadMode
from trbench.workloads.multi_agent_runs import MultiAgent
from trbench.workloads.multi_turn import MultiTurn
from trbench.workloads.quality_suites import QualitySuites
from trbench.workloads.registration import WORKLOADS, active, register, unregister
from trbench.workloads.single_agent import SingleAgent
from trbench.workloads.synthetic import Synthetic

for _builtin in (SingleAgent(), QualitySuites(), MultiAgent(), LoadMode(), MultiTurn(), EmbeddingLoad(), Synthetic()):
    register(_builtin)

__all__ = ["WORKLOADS", "Measured", "Planned", "ReportPart", "Workload", "active", "register", "unregister"]
