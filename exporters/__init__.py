"""Where spans go: one module per destination, each a plug-in with the SDK's own interfaces.

- ``local``: the local trace store (no API key; also every replayed run);
- ``backend``: OTLP/HTTP to the AgentTrace backend, batching, retrying, never blocking;
- ``spool``: the disk spool the backend exporter keeps what it could not deliver in;
- ``collector``: the user's own OpenTelemetry Collector (``OTEL_EXPORTER_OTLP_*``);
- ``journal``: each recording run's journal, written as its calls complete (crash-proof);
- ``recovery``: turning the journal of a run whose process died into a trace.

All of them sit behind the session's one scrubbing processor (``agenttrace._scrub_spans``).
"""

__all__ = ["backend", "collector", "journal", "local", "recovery", "spool"]
