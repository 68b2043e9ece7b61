"""Record mode: the :class:`Recorder` goes live and turns each intercepted I/O into an event."""

from .recorder import Recorder

__all__ = ["Recorder"]
