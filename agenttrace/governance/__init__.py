"""Governance: the one gate a replay's violations go through, and the sandbox around it.

- ``gate``: :class:`Governance` — relaxed warns, governance raises; the sticky record; the exit
  report;
- ``events``: the one list of watched audit events and how each is described;
- ``hook``: the audit hook (installed once) and the distro's pre-start guard;
- ``sandbox``: machine facts gathered before the sandbox closes.
"""

from .gate import Governance, stderr

__all__ = ["Governance", "stderr"]
