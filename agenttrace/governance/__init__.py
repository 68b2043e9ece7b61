"""Governance: the one gate a replay's violations go through, and the sandbox around it.

- ``gate``: :class:`Governance` — relaxed warns, governance raises; the sticky record; the exit
  report;
- ``events``: the one list of watched audit events and how each is described;
- ``hook``: the audit hook (installed once, deciding from a closure agent code cannot reach),
  sealing, the distro's pre-start guard; :func:`active_layers`;
- ``sandbox``: closing the sandbox: machine facts first, then every layer, then the gate;
- ``native`` (``_posixsubprocess.fork_exec``), ``exit`` (every way out goes through the
  verdict), ``record`` (violations shared with children and the kernel layer), ``seccomp`` and
  its ``_supervisor`` (the kernel layer), ``sockets`` (the fallback where there is no seccomp).
"""

from .gate import Governance, stderr
from .hook import active_layers

__all__ = ["Governance", "active_layers", "stderr"]
