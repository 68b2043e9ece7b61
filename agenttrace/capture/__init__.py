"""The capture layer: what every interception point shares, knowing nothing of modes.

- :class:`HttpCall` (a client's request in neutral form) and :class:`Answer` (a recorded
  response to serve), in ``calls``;
- :class:`Exchange`, one intercepted call as its client reports it, in ``exchange``;
- the error codec (``errors``) and the HTTP/1.1 wire codec (``wire``);
- stream tees (``streams``);
- the :class:`Mode` protocol and :func:`begin`, where an instrumentor hands over a call
  (``mode``); entropy and DNS interception points (``entropy``).

A new client is a module in ``agenttrace.instrumentors`` that turns its request into an
``HttpCall``, calls :func:`begin`, and either serves ``exchange.answer`` or goes live inside
``exchange.sending()`` and reports the response and body.
"""

from .calls import Answer, HttpCall
from .errors import error_record, rebuild_error
from .exchange import Exchange, ExchangeOwner, ServedExchange
from .mode import Mode, begin, intercepting, internal_errors, when_intercepting
from .streams import atee, tee

__all__ = [
    "Answer",
    "Exchange",
    "ExchangeOwner",
    "HttpCall",
    "Mode",
    "ServedExchange",
    "atee",
    "begin",
    "error_record",
    "intercepting",
    "internal_errors",
    "rebuild_error",
    "tee",
    "when_intercepting",
]
