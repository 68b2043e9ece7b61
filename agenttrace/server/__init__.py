"""The self-hostable AgentTrace backend (`agenttrace serve`; needs the `agenttrace[server]` extra).

- ``otlp``: OTLP/HTTP payloads to span records
- ``store``: SQLite storage, one project per API key
- ``app``: the ASGI app (ingest + trace API)
- ``serve``: API keys on disk and the uvicorn process
"""
