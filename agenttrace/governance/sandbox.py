"""Facts about the machine, gathered before the sandbox closes: not agent I/O.

SDKs describe the machine in request headers (the OpenAI and Anthropic SDKs call
``platform.processor()``, which runs ``uname -p`` once per process): the same fact in record and
replay, so it must not count as a sandbox escape. (``uuid.getnode()``, which may run ``ip link``,
is served from the recording by the Player.)
"""

from __future__ import annotations

import platform


def warm_platform_caches() -> None:
    """Fill the platform module's caches before the sandbox closes."""
    for probe in (platform.uname, platform.processor, platform.platform, platform.machine):
        try:
            probe()
        except Exception:
            pass
