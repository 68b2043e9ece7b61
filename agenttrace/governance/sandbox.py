"""Facts about the machine, gathered before the sandbox closes: not agent I/O.

SDKs describe the machine in request headers (the OpenAI and Anthropic SDKs call
``platform.processor()``, which runs ``uname -p`` once per process); ``uuid.getnode()`` (behind
``uuid1``) may run ``ip link`` / ``ifconfig`` to find a MAC address. Those are the same facts in
record and replay, so they must not count as sandbox escapes.
"""

from __future__ import annotations

import platform
import uuid
from collections.abc import Callable

from .._patches import Patches
from .gate import Governance


def warm_platform_caches() -> None:
    """Fill the platform module's caches before the sandbox closes."""
    for probe in (platform.uname, platform.processor, platform.platform, platform.machine):
        try:
            probe()
        except Exception:
            pass


def exempt_machine_probes(gate: Governance, patches: Patches) -> None:
    """``uuid.getnode`` runs outside the sandbox, on demand (warming it would cost every replay a
    subprocess)."""
    original: Callable[[], int] = uuid.getnode

    def getnode() -> int:
        with gate.exempt():
            return original()

    patches.replace(uuid, "getnode", getnode)


def close(gate: Governance, patches: Patches) -> None:
    """Close the sandbox for a governed (or relaxed) replay."""
    warm_platform_caches()
    exempt_machine_probes(gate, patches)
