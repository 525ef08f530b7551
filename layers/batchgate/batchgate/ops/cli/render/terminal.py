"""The console every command prints with: rich, with control characters from data escaped
(batchgate.ops.terminal)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

from batchgate.ops.terminal import terminal_text


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
