"""What reaches a terminal from data: a value that comes from a message, ECS, a log or the job table is
shown, never obeyed. C0 and C1 control characters and DEL are written visibly escaped (`\\x1b`, `\\x9b`,
`\\x7f`), so an ESC sequence in a batch name, a reason or a log line (OSC 52 writing the clipboard, a
window title change, a colour) is text on the screen; a lone surrogate, which no terminal encoding
takes, is U+FFFD.

Single-line values (table cells, a job's facts) escape newline and tab too (`\\n`, `\\t`): a value
never breaks the layout it sits in. Multi-line text (log lines, the local stack's function output, a
console's whole output) keeps newline and tab, the only controls that lay text out and cannot rewrite
what was printed; carriage return is escaped there too, since it can overwrite a line.

Every human-readable output goes through here: `plain()` (render.text) escapes each value, and
`TerminalConsole`, the console of every command, escapes whatever else its renderables hold. `--json`
output is exact: JSON escapes control characters itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
_SURROGATES = {code: "\ufffd" for code in range(0xD800, 0xE000)}
_ONE_LINE = str.maketrans({code: _NAMED.get(code, f"\\x{code:02x}") for code in _CONTROLS} | _SURROGATES)
_LINES = str.maketrans(
    {code: _NAMED.get(code, f"\\x{code:02x}") for code in _CONTROLS if code not in (0x09, 0x0A)} | _SURROGATES
)


def terminal_text(value: str, *, lines: bool = False) -> str:
    """`value` safe to write to a terminal: controls visibly escaped (newline and tab kept with
    `lines`)."""
    return value.translate(_LINES if lines else _ONE_LINE)


class TerminalConsole(Console):
    """A rich console that escapes control characters in the text of what it renders (rich's own
    control segments, cursor moves for a live display, and its styles stay as they are: the styles
    are applied after rendering). The renderers escape each value already, for widths measured on
    what is shown; this is what keeps anything else from reaching the terminal raw."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control:
                yield segment
                continue
            shown = terminal_text(segment.text, lines=True)
            yield segment if shown == segment.text else Segment(shown, segment.style)
