"""The self-hostable AgentTrace backend (`agenttrace serve`; needs the `agenttrace[server]` extra).

- ``app``: the ASGI app (ingest + trace API + web viewer), blocking work on worker threads
- ``viewer``: the web viewer's pages (also ``agenttrace view`` over the local store)
- ``intake``: reading an ingest body (size cap, body timeout, large-ingest slots)
- ``inflate``: gzip/deflate decoded as it arrives, bounded and linear-time
- ``otlp``: OTLP/HTTP payloads to span records (depth limits)
- ``store``: the storage contract and what both databases share, one project per API key
- ``sqlite_store`` / ``postgres_store``: the embedded default / several replicas on one database
- ``retention``: deleting old traces in batches (``--retain-days``, ``agenttrace prune``)
- ``connections``: header timeout and per-client connection cap (uvicorn's h11 protocol)
- ``limits``: every bound on a client, declared once (the ``serve`` flags come from it)
- ``serve``: API keys on disk and the uvicorn process
"""
