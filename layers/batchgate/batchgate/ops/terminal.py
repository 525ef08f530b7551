"""What reaches a terminal from data: a value that comes from a message, ECS, a log or the job table is
shown, never obeyed. C0 and C1 control characters and DEL are written visibly escaped (`\\x1b`, `\\x9b`,
`\\x7f`), so an ESC sequence in a batch name, a reason or a log line (OSC 52 writing the clipboard, a
window title change, a colour) is text on the screen; a lone surrogate, which no terminal encoding
takes, is U+FFFD.

Single-line values (table cells, a job's facts) escape newline and tab too (`\\n`, `\\t`): a value
never breaks the layout it sits in. Multi-line text (log lines, the local stack's function output, a
console's whole output) keeps newline and tab, the only controls that lay text out and cannot rewrite
what was printed; carriage return is escaped there too, since it can overwrite a line.

Standard library only: the local stack's Lambda runtime loads it too. The CLI's renderers go through it
(`plain()` in cli.render.text, and cli.render.terminal.TerminalConsole, the console of every command).
`--json` output is exact: JSON escapes control characters itself.
"""

from __future__ import annotations

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
