"""What a TR run is asked to do: the matrix spec (spec; its sections in sections, each provider's
`server:` section in servers), reading it (spec_file) and its one-line errors (errors), what a
relative path in it means (paths), the sections of load mode and the quality suites
(load_section, embeddings_section, suites_section), the prompt and agent suites it sends, read
as data (suite_files), and the commented first spec `trbench init` writes (scaffold, templates/). It is the lowest layer
but data: the checks of a spec against files and the machine need the engines' bundled models and
live in trbench.run (spec_checks)."""

from trbench import lazy_exports

_WHERE = {
    "MatrixSpec": "spec", "Cell": "spec", "OptionSet": "sections", "SpecError": "errors", "TelemetrySpec": "sections",
    "MultiAgentSpec": "sections", "parse_spec": "spec",
    "load_spec": "spec", "ServerSettings": "servers", "EmbeddedServer": "servers", "ExternalServer": "servers",
    "OllamaDockerServer": "servers", "OllamaProcessServer": "servers", "PromptSuite": "prompts",
    "PromptSuiteError": "prompts", "load_prompts": "prompts", "AgentSuite": "agents", "AgentSuiteError": "agents",
    "load_agents": "agents", "ROLES": "agents",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
