"""Tables on stdout, drawn by rich: aligned columns, a bold header on a terminal, plain text
(no colour, no box, never wrapped) when stdout is a pipe or a file, so scripts and tests can
split lines on whitespace. No cell is ever cut short (a key id must stay copyable): a table wider
than the terminal is drawn at its own width and the terminal wraps it, as plain `print` did.
rich is imported here, on the first table, never at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: Width when stdout is not a terminal: wide enough that no column is ever cut or wrapped.
PIPE_WIDTH = 10_000


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    right: Iterable[str] = (),
    show_header: bool = True,
) -> None:
    """Print `rows` under `headers`; columns named in `right` are right-aligned (numbers)."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=PIPE_WIDTH, color_system=None)
    aligned = set(right)
    table = Table(
        box=box.SIMPLE_HEAD if console.is_terminal else None,
        show_header=show_header,
        show_edge=False,
        pad_edge=False,
        header_style="bold" if console.is_terminal else "",
    )
    for header in headers:
        table.add_column(header, justify="right" if header in aligned else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    needed = Measurement.get(console, console.options.update_width(PIPE_WIDTH), table).maximum
    if console.is_terminal and needed > console.width:  # never cut an id: let the line wrap
        console = Console(highlight=False, width=needed)
    console.print(table)
