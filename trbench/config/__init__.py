"""What a TR run is asked to do: the matrix spec (spec; its sections in sections, each provider's
`server:` section in servers), reading it (spec_file) and its one-line errors (errors), its checks,
and the prompt and agent suites it sends. Checks against files and the machine
(spec_checks) are a module of their own: they need the engines' bundled models."""

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
