r"""The capture layer: what every interception point shares, knowing nothing of modes.

- :class:`HttpCall` (a client's request in neutral form) and :class:`Answer` (a recorded
  response to serve), in ``calls``;
- :class:`Exchange`, one intercepted call as its client reports it, in ``exchange``;
- the error codec (``errors``) and the HTTP/1.1 wire codec (``wire``);
- stream tees (``streams``);
- :class:`MessageSession` (a websocket or MCP session, ``messages``) and :class:`ToolRun` (a call
  of an ``agenttrace.tool``, ``tools``), both :class:`Capture`\ s like an exchange (``base``);
  the value codec of tool arguments and results (``values``);
- the :class:`Mode` protocol and :func:`begin` / :func:`begin_session` / :func:`begin_tool`,
  where an instrumentor hands over a call (``mode``); entropy, clock and DNS interception points
  (``entropy``, ``clock``).

A new client is a module in ``agenttrace.instrumentors`` that turns its request into an
``HttpCall``, calls :func:`begin`, and either serves ``exchange.answer`` or goes live inside
``exchange.sending()`` and reports the response and body.
"""

from .base import Capture, CaptureOwner
from .calls import Answer, HttpCall
from .errors import error_record, rebuild_error
from .exchange import Exchange, ExchangeOwner, ServedExchange
from .messages import MessageSession, ServedSession, SessionCall
from .mode import (
    Mode,
    begin,
    begin_session,
    begin_tool,
    intercepting,
    internal_errors,
    when_intercepting,
)
from .streams import atee, tee
from .tools import ServedTool, ToolCall, ToolRun

__all__ = [
    "Answer",
    "Capture",
    "CaptureOwner",
    "MessageSession",
    "ServedSession",
    "ServedTool",
    "SessionCall",
    "ToolCall",
    "ToolRun",
    "begin_session",
    "begin_tool",
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
