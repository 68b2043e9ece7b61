"""Runs and comparisons printed for people: ``agenttrace show`` and ``agenttrace diff``.

Colours with rich on a terminal; plain text when piped (rich's own detection; ``NO_COLOR`` and
``FORCE_COLOR`` honoured). Lines are never wrapped when piped, so they stay greppable, and are
cut to the width on a terminal. Long runs of look-alike events fold into one line unless
``show_all``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from ._cost import RunTotals
from ._diff import Comparison, Pair, RunFacts
from ._genai import Usage
from ._outline import EventLine, Outline, StepNode, summarize

# A run of this many similar consecutive calls (same kind, endpoint, status) is folded.
FOLD_CALLS_AT = 6
_KEEP_HEAD, _KEEP_TAIL = 2, 1

_STATUS_STYLES = {"ok": "green", "error": "bold red", "killed": "bold red", "terminated": "yellow"}


def make_console(file: IO[str] | None = None) -> Console:
    return Console(file=file or sys.stdout, highlight=False, emoji=False, markup=False)


def _emit(console: Console, line: Text) -> None:
    if console.is_terminal:
        console.print(line, no_wrap=True, overflow="ellipsis", crop=True)
    else:
        console.print(line, soft_wrap=True)


# -- formatting -----------------------------------------------------------------------------------


def duration(ms: float | None) -> str:
    if ms is None:
        return "?"
    if ms < 1000:
        return f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)}m {seconds % 60:04.1f}s"


def usd(value: float | None) -> str:
    if value is None:
        return "?"
    if value >= 1:
        return f"${value:,.2f}"
    if value >= 0.01:
        return f"${value:.4f}"
    return f"${value:.6f}"


def tokens(usage: Usage) -> str:
    text = f"{usage.input_tokens or 0:,} in"
    extras = [
        f"{n:,} {name}"
        for n, name in ((usage.cache_read_tokens, "cached"), (usage.cache_write_tokens, "to cache"))
        if n
    ]
    if extras:
        text += f" ({', '.join(extras)})"
    text += f" / {usage.output_tokens or 0:,} out"
    if usage.reasoning_tokens:
        text += f" ({usage.reasoning_tokens:,} reasoning)"
    return text


def _status_style(status: str | None) -> str:
    return _STATUS_STYLES.get(status or "", "yellow")


# -- show -----------------------------------------------------------------------------------------


def print_outline(outline: Outline, console: Console, *, show_all: bool = False) -> None:
    with console:  # one write at the end, not one per line (thousands for a big run)
        _print_outline(outline, console, show_all)


def _print_outline(outline: Outline, console: Console, show_all: bool) -> None:
    run = outline.run
    header = Text.assemble(
        (str(run.get("name") or "(unnamed run)"), "bold"),
        "  ",
        (str(run.get("status")), _status_style(run.get("status"))),
        f"  trace {outline.trace_id or '?'}",
        f"  {run.get('started_at') or '?'}",
        (f"  ({run['mode']})" if run.get("mode") else "", "dim"),
    )
    _emit(console, header)
    width = len(str(max((e.seq for e in outline.events), default=0)))
    folded = 0
    for prefix, item in _tree_lines(outline.root, "", show_all):
        if isinstance(item, Fold):
            folded += item.count
        line = Text()
        line.append(prefix, style="dim")
        line.append_text(_item_text(item, width))
        _emit(console, line)
    _emit(console, _totals_text(outline.totals, run.get("wall_ms"), outline.events))
    for model in outline.totals.unpriced_models if outline.totals.pricing else ():
        model_totals = outline.totals.by_model[model]
        _emit(
            console,
            Text(f"  no price for {model}: {tokens(model_totals.usage)} tokens", style="dim"),
        )
    if run.get("error") or run.get("status") not in ("ok", "unset", None):
        message = run.get("error") or f"the run ended {run.get('status')}"
        _emit(console, Text.assemble(("error: ", "bold red"), str(message)))
    if folded:
        _emit(console, Text(f"({folded} events folded; --all shows every one)", style="dim"))


@dataclass
class Fold:
    """Events folded into one line (of ``show``, and of the web viewer's waterfall)."""

    lines: list[EventLine]
    facts: bool

    @property
    def count(self) -> int:
        return len(self.lines)


def _tree_lines(node: StepNode, prefix: str, show_all: bool) -> Iterator[tuple[str, Any]]:
    items = node.children if show_all else folded(node.children)
    for index, item in enumerate(items):
        last = index == len(items) - 1
        yield prefix + ("└─ " if last else "├─ "), item
        if isinstance(item, StepNode):
            yield from _tree_lines(item, prefix + ("   " if last else "│  "), show_all)


def _similar(line: EventLine) -> tuple[str, str, str | None]:
    return line.kind, line.label.split("?", 1)[0], line.status


def folded(children: Sequence[StepNode | EventLine]) -> list[Any]:
    """Consecutive facts (two or more) become one line; so do the middle of a long run of
    similar calls (a polling loop), keeping its first and last calls in view."""
    out: list[Any] = []
    index = 0
    while index < len(children):
        child = children[index]
        end = index + 1
        if isinstance(child, EventLine) and not child.is_call:
            while end < len(children) and _is_fact(children[end]):
                end += 1
            run = list(children[index:end])
            out += [Fold(run, facts=True)] if len(run) > 1 else run
        elif isinstance(child, EventLine):
            while (
                end < len(children)
                and isinstance(children[end], EventLine)
                and children[end].is_call
                and _similar(children[end]) == _similar(child)
            ):
                end += 1
            run = list(children[index:end])
            if len(run) >= FOLD_CALLS_AT:
                middle = run[_KEEP_HEAD:-_KEEP_TAIL]
                out += [*run[:_KEEP_HEAD], Fold(middle, facts=False), *run[-_KEEP_TAIL:]]
            else:
                out += run
        else:
            out.append(child)
        index = end
    return out


def _is_fact(item: Any) -> bool:
    return isinstance(item, EventLine) and not item.is_call


def _item_text(item: Any, width: int) -> Text:
    if isinstance(item, StepNode):
        return _step_text(item)
    if isinstance(item, Fold):
        return _fold_text(item, width)
    return event_text(item, width)


def _step_text(step: StepNode) -> Text:
    text = Text.assemble((step.name, "bold"))
    if step.step_type:
        text.append(f" [{step.step_type}]", style="dim")
    if step.duration_ms is not None:
        text.append(f"  {duration(step.duration_ms)}", style="dim")
    if not step.ended:
        text.append("  (never ended)", style="yellow")
    if step.status == "error":
        text.append(f"  error: {step.error or 'failed'}", style="bold red")
    return text


def event_text(line: EventLine, width: int = 0) -> Text:
    text = Text.assemble((f"#{line.seq}".rjust(width + 1), "dim"), "  ", (line.kind, "cyan"))
    text.append(f"  {line.label}")
    facts = (
        (line.status, line.status, "green" if line.ok else "bold red"),
        (line.duration_ms, duration(line.duration_ms), "dim"),
        (line.chunks, f"{line.chunks} chunks", "dim"),
        (line.detail, line.detail, "dim"),
        (line.llm, line.llm, "magenta"),
        (line.usage, f"tokens {tokens(line.usage)}" if line.usage else "", "yellow"),
        (line.cost_usd, usd(line.cost_usd), "green"),
        (line.redactions or None, f"{line.redactions} redacted", "yellow"),
        (line.error, line.error, "red"),
    )
    for present, shown, style in facts:
        if present is not None and present != "":
            text.append(f"  {shown}", style=style)
    return text


def _fold_text(fold: Fold, width: int) -> Text:
    first, last = fold.lines[0].seq, fold.lines[-1].seq
    span = f"#{first}–#{last}".rjust(width + 1)
    if fold.facts:
        kinds: dict[str, int] = {}
        for line in fold.lines:
            kinds[line.kind] = kinds.get(line.kind, 0) + 1
        counted = ", ".join(f"{kind} ×{n}" for kind, n in kinds.items())
        return Text.assemble((span, "dim"), "  ", (counted, "cyan"))
    like = fold.lines[0]
    spent = sum(line.duration_ms or 0.0 for line in fold.lines)
    text = Text.assemble(
        (span, "dim"),
        "  ",
        (f"… {fold.count} more {like.kind}", "cyan"),
        f"  {like.label.split('?', 1)[0]}",
        (f"  {like.status}", "green" if like.ok else "bold red"),
        (f"  {duration(spent)} in all", "dim"),
    )
    usage = sum_usage(fold.lines)
    if usage.reported():
        text.append(f"  {tokens(usage)}", style="yellow")
    return text


def sum_usage(lines: Sequence[EventLine]) -> Usage:
    total = Usage()
    for line in lines:
        if line.usage is not None:
            total = total + line.usage
    return total


def _totals_text(totals: RunTotals, wall_ms: float | None, events: Sequence[EventLine]) -> Text:
    text = Text.assemble(("calls ", "bold"), f"{totals.calls} ({totals.llm_calls} LLM)")
    if totals.usage.reported():
        text.append("  tokens ", style="bold")
        text.append(tokens(totals.usage), style="yellow")
    if totals.llm_calls:
        text.append("  cost ", style="bold")
        if totals.pricing is None:
            text.append("unknown (no price table: pip install 'agenttrace[cost]')", style="dim")
        elif totals.cost_usd is None:
            text.append("unknown (no price for these models)", style="dim")
        else:
            text.append(usd(totals.cost_usd), style="green")
            if totals.unpriced_models:
                text.append(" (priced calls only)", style="dim")
    redactions = sum(line.redactions for line in events)
    if redactions:
        text.append(f"  {redactions} redactions", style="yellow")
    text.append("  wall ", style="bold")
    text.append(duration(wall_ms))
    return text


# -- diff -----------------------------------------------------------------------------------------


def print_comparison(comparison: Comparison, console: Console) -> None:
    with console:
        _print_comparison(comparison, console)


def _print_comparison(comparison: Comparison, console: Console) -> None:
    for tag, facts in (("A", comparison.a), ("B", comparison.b)):
        _emit(console, _run_line(tag, facts))
    first = comparison.first_divergence
    if first is not None:
        _emit(console, Text("first divergence:", style="bold"))
        for line in _pair_lines(first, detail=True):
            _emit(console, line)
    elif comparison.status_differs:
        _emit(console, Text("every call is the same; the runs ended differently", style="bold"))
    if comparison.status_differs:
        _emit(
            console,
            Text.assemble(
                ("run status: ", "bold"),
                _run_status(comparison.a),
                " → ",
                _run_status(comparison.b),
            ),
        )
    rest = [p for p in comparison.pairs if p.op != "equal" and p is not first]
    if rest:
        _emit(console, Text("other differences:", style="bold"))
        for pair in rest:
            for line in _pair_lines(pair, detail=False):
                _emit(console, line)
    counts = comparison.counts()
    _emit(
        console,
        Text.assemble(
            ("calls: ", "bold"),
            f"{counts['equal']} equal, {counts['changed']} changed, "
            f"{counts['added']} added, {counts['removed']} removed",
        ),
    )
    _emit(console, _deltas_line(comparison.a, comparison.b))
    verdict = (
        Text("equivalent", style="bold green")
        if comparison.equivalent
        else Text("not equivalent", style="bold red")
    )
    _emit(console, verdict)


def _run_line(tag: str, facts: RunFacts) -> Text:
    return Text.assemble(
        (f"{tag}: ", "bold"),
        facts.label,
        f"  {facts.name or '(unnamed run)'}  ",
        _run_status(facts),
        f"  {facts.calls} calls",
    )


def _run_status(facts: RunFacts) -> Text:
    text = Text(facts.status, style=_status_style(facts.status))
    if facts.error:
        text.append(f" ({facts.error})")
    return text


_OP_MARKS = {"changed": ("~", "yellow"), "added": ("+", "green"), "removed": ("-", "red")}


def _pair_lines(pair: Pair, detail: bool) -> Iterator[Text]:
    mark, style = _OP_MARKS[pair.op]
    a = summarize(pair.a) if pair.a is not None else None
    b = summarize(pair.b) if pair.b is not None else None
    where = " / ".join(
        f"{side} #{line.seq}" for side, line in (("A", a), ("B", b)) if line is not None
    )
    shown = b or a
    assert shown is not None
    head = Text.assemble(
        (f"  {mark} {pair.op} ", style), (where, "dim"), "  ", (shown.kind, "cyan")
    )
    head.append(f"  {shown.label}")
    if shown.step:
        head.append(f"  in step {shown.step!r}", style="dim")
    if pair.op == "changed" and not detail:
        parts = [
            name for name, diffs in (("request", pair.request), ("answer", pair.answer)) if diffs
        ]
        head.append(f"  ({' and '.join(parts)} differ)", style="dim")
    yield head
    if detail:
        for difference in [*pair.request, *pair.answer]:
            yield Text(f"      {difference}")
        if pair.more:
            yield Text(f"      … and {pair.more} more differences (--json lists them)", style="dim")


def _deltas_line(a: RunFacts, b: RunFacts) -> Text:
    text = Text()
    a_tokens = (a.usage.input_tokens or 0) + (a.usage.output_tokens or 0)
    b_tokens = (b.usage.input_tokens or 0) + (b.usage.output_tokens or 0)
    if a.usage.reported() or b.usage.reported():
        text.append("tokens: ", style="bold")
        text.append(f"{a_tokens:,} → {b_tokens:,} ({b_tokens - a_tokens:+,})  ")
    if a.cost_usd is not None or b.cost_usd is not None:
        text.append("cost: ", style="bold")
        text.append(f"{usd(a.cost_usd)} → {usd(b.cost_usd)}  ")
    text.append("time in calls: ", style="bold")
    text.append(f"{duration(a.call_ms)} → {duration(b.call_ms)}")
    text.append(f" ({b.call_ms - a.call_ms:+.1f} ms)  ")
    text.append("wall: ", style="bold")
    text.append(f"{duration(a.wall_ms)} → {duration(b.wall_ms)}")
    return text
