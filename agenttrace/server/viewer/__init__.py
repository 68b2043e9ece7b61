"""The web viewer: runs, a run's waterfall and event details, and side-by-side diffs, as HTML.

The same pages serve the backend (``agenttrace serve``: sign in with a project's API key) and
the local store (``agenttrace view``: 127.0.0.1, no key). They read runs through one small
interface, ``sources.RunSource`` (a page of runs, a document by id), and lay them out with the
modules that ``agenttrace show`` and ``diff`` print from (``_outline``, ``_diff``, ``_cost``).

- ``sources``: ``RunSource`` and its two implementations, ``StoreRuns`` and ``LocalRuns``
- ``access``: who may read which source (sign-in with a key and its cookie, or open access)
- ``waterfall``: a run's steps and events placed in time
- ``detail``: one event's pane (pretty-printed bodies, streams assembled, redactions marked)
- ``routes``: the Starlette endpoints, templates and security headers
- ``local``: ``agenttrace view`` (the app over a local directory or file, and its server)

Everything a page shows comes from a trace, which is untrusted input: templates autoescape,
and a strict Content-Security-Policy allows only the package's own script and stylesheet.
"""
