"""What a file may hold: the limits reading checks before (and while) it does the work.

A file that exceeds one is refused with one plain sentence that says which limit and what to do
(:class:`core.errors.InputError`), so that no file, however it was made, can make reading take
unbounded time or memory. They are stated in the README (section "Reading files: limits").

- :data:`MAX_ROWS` × :data:`MAX_COLUMNS`: Excel's own sheet size, 1,048,576 rows (header
  included) × 16,384 columns (A … XFD), for CSV files too.
- :data:`MAX_CELLS`: the table's rows × columns: for a sheet, from its first row with a value to
  its last, and from column A to the last column with a value (a stray value far away counts its
  whole rectangle; the sheet's stored size, ``<dimension>``, is not trusted); for a CSV, its lines
  × the fields of its widest line.
- :data:`MAX_CELL_CHARS`: characters in one cell (Excel's own limit).
- :data:`MAX_FILE_BYTES`: the size of a file given by path (the dashboard's upload limit,
  ``server.maxUploadSize`` in ``.streamlit/config.toml``, is the same).
- :data:`MAX_UNPACKED_BYTES`: what the parts of an .xlsx workbook that are read (the sheet,
  shared strings, styles, workbook) unpack to, as the ZIP directory declares it; a part that
  unpacks to more than it declares is refused as damaged while it is read.
- :data:`MAX_ZIP_DIRECTORY_BYTES`: the size of an .xlsx file's ZIP directory (a workbook has a
  few dozen parts; a directory of millions of entries would cost memory before any check).
- A FHIR bundle (:mod:`core.intake.fhir`): :data:`MAX_FILE_BYTES` as any file;
  :data:`MAX_FHIR_RESOURCES` resources; :data:`MAX_FHIR_OBJECTS` JSON objects and
  :data:`MAX_FHIR_VALUES` values in all (counted in the bytes before anything is parsed, so that
  parsing a bundle of a million tiny objects never starts); :data:`MAX_FHIR_DEPTH` levels of
  nesting within one resource (deeper resources are listed as unusable, never recursed into).
- :data:`MAX_SHEETS`: the sheets a workbook lists (LibreOffice's own limit), and
  :data:`MAX_SHEET_NAME_CHARS` characters in a sheet's name, so that the sheet choice never
  gets millions of names (a 13 MB workbook can list 2.5 million); counted while the workbook's
  list is read.
- :data:`MAX_SHARED_STRINGS` and :data:`MAX_SHARED_STRING_CHARS`: the texts of a workbook's
  shared-string table (``sharedStrings.xml``) and their characters in all, counted while it is read.
- :data:`MAX_TEXT_CHARS`: the characters of all the cells read from one sheet (a short text used
  by millions of cells counts each time): about as much text as the largest CSV file read.

The rows, cells and file-size limits of a CSV file can be raised for one read (:class:`Limits`):
the command line does so for a file given by path by someone who can run commands on the machine
(a records system's export of a whole programme), never the Upload page: by default to what this
computer's free memory can hold (:meth:`Limits.for_memory`), or to ``--max-rows N``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from core.i18n import _

MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
MAX_CELLS = 10_000_000
MAX_CELL_CHARS = 32_767
MAX_FILE_BYTES = 200 * 2 ** 20
MAX_UNPACKED_BYTES = 128 * 2 ** 20
MAX_ZIP_DIRECTORY_BYTES = 4 * 2 ** 20
#: FHIR bundles: resources (entries, or NDJSON lines), JSON objects and values (``{`` and ``,`` in
#: the bytes: upper bounds, counted before parsing), nesting levels within one resource. About
#: 30 µs of validation per object (a page's worth of objects per resource: 14 in an exported
#: Observation, about 100 in an OQ-45 QuestionnaireResponse): a bundle at the limits is read in
#: about 15 s on the 2-CPU development machine, under a minute when it is busy (bench/bench_fhir.py).
MAX_FHIR_RESOURCES = 50_000
MAX_FHIR_OBJECTS = 500_000
MAX_FHIR_VALUES = 10_000_000
MAX_FHIR_DEPTH = 32
MAX_SHEETS = 10_000
MAX_SHEET_NAME_CHARS = 255
MAX_SHARED_STRINGS = 2_000_000
MAX_SHARED_STRING_CHARS = 64_000_000
MAX_TEXT_CHARS = 200_000_000


@dataclass(frozen=True)
class Limits:
    """The rows, cells and file-size limits of one read of a CSV file (the defaults: the module's)."""

    rows: int = MAX_ROWS
    cells: int = MAX_CELLS
    file_bytes: int = MAX_FILE_BYTES
    #: Raised for this read (``--max-rows``): messages then name that flag.
    raised: bool = False
    #: Raised to what the free memory holds (the command line's default): the bytes it counted on.
    memory_bytes: int | None = None

    @classmethod
    def for_rows(cls, rows: int) -> "Limits":
        """Limits for a CSV of up to ``rows`` rows (``--max-rows``): cells and file size grow in
        proportion, the same per row as the defaults (about 9.5 cells and 200 bytes a row); never
        below the defaults.

        >>> Limits.for_rows(20_000_000).rows, Limits.for_rows(100).rows
        (20000000, 1048576)
        """
        scale = max(1.0, rows / MAX_ROWS)
        return cls(rows=max(int(rows), MAX_ROWS), cells=int(MAX_CELLS * scale),
                   file_bytes=int(MAX_FILE_BYTES * scale), raised=True)


    @classmethod
    def for_memory(cls, available: int | None = None) -> "Limits":
        """Limits for a CSV read on the command line without ``--max-rows``: the rows and cells that
        three quarters of the free memory (``available`` bytes; default :func:`available_memory`)
        hold at :data:`PEAK_BYTES_PER_ROW` and :data:`PEAK_BYTES_PER_CELL`, and a file of 200 bytes a
        row; never below the defaults.

        >>> big = Limits.for_memory(24 * 2 ** 30)
        >>> big.rows, big.cells, big.file_bytes // 2 ** 20
        (42949672, 257698037, 8191)
        >>> Limits.for_memory(2 ** 28) == Limits(memory_bytes=2 ** 28, raised=True)  # little memory: the defaults
        True
        """
        available = available_memory() if available is None else int(available)
        usable = 0.75 * max(available, 0)
        rows = max(MAX_ROWS, int(usable / PEAK_BYTES_PER_ROW))
        return cls(rows=rows, cells=max(MAX_CELLS, int(usable / PEAK_BYTES_PER_CELL)),
                   file_bytes=max(MAX_FILE_BYTES, int(MAX_FILE_BYTES * rows / MAX_ROWS)),
                   raised=True, memory_bytes=available)


#: Peak resident memory per row and per cell of a long CSV through ``python -m core analyze``
#: (reading, validation, the six models of the ladder): 9.8 M rows of 6 columns took 3.7–4.2 GB
#: (bench/bench_national.py), about 400 bytes a row and 70 a cell; 450 and 75 leave some room.
PEAK_BYTES_PER_ROW = 450
PEAK_BYTES_PER_CELL = 75


def available_memory() -> int:
    """Bytes of memory this process can still take: the least of Linux's ``MemAvailable``, a
    container's cgroup limit and the process's own address-space limit (``ulimit -v``) less what it
    already maps; else the physical memory; else 4 GiB."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(cgroup, encoding="ascii") as f:
                text = f.read().strip()
            if text.isdigit() and int(text) < 2 ** 60:
                found.append(int(text))
        except OSError:
            pass
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found.append(max(0, soft - _mapped_bytes()))
    except (ImportError, OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            found.append(4 * 2 ** 30)
    return min(found)


def _mapped_bytes() -> int:
    """The address space this process maps now (``VmSize``), 0 where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


DEFAULT = Limits()


def column_letters(n: int) -> str:
    """Excel's name of the ``n``-th column (1-based): 1 → ``A``, 28 → ``AB``, 16384 → ``XFD``."""
    s = ""
    while n > 0:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def too_large(source: str, n_rows: int, n_columns: int, where: str = "", *, at_least: bool = False,
              limits: Limits | None = None) -> str:
    """The sentence for a table over :data:`MAX_CELLS` or over Excel's rows or columns
    (``at_least``: reading stopped there, the file has more rows); ``limits``: raised limits of
    this read (``--max-rows``)."""
    if at_least:
        size = _("{rows:,} rows or more × {columns:,} columns").format(rows=n_rows, columns=n_columns)
        cells = _("{cells:,} cells or more").format(cells=n_rows * n_columns)
    else:
        size = _("{rows:,} rows × {columns:,} columns").format(rows=n_rows, columns=n_columns)
        cells = _("{cells:,} cells").format(cells=n_rows * n_columns)
    if limits is not None and limits.memory_bytes is not None and n_columns <= MAX_COLUMNS:
        return _("{source} is too large for this computer's free memory: {size}{where} is {cells}, and "
                 "{gb:,.1f} GB of free memory hold about {rows:,} rows and {max_cells:,} cells. Close other "
                 "programs or use a computer with more memory, split the file, or give --max-rows N to "
                 "read more anyway.").format(
            source=source, size=size, where=where, cells=cells, gb=limits.memory_bytes / 2 ** 30,
            rows=limits.rows, max_cells=limits.cells)
    if limits is not None and limits.raised and n_columns <= MAX_COLUMNS:
        return _("{source} is too large to read: {size}{where} is {cells}, and --max-rows {rows:,} reads at "
                 "most {rows:,} rows and {max_cells:,} cells. Give a larger --max-rows, or split the file.").format(
            source=source, size=size, where=where, cells=cells, rows=limits.rows, max_cells=limits.cells)
    if n_rows > MAX_ROWS or n_columns > MAX_COLUMNS:
        return _("{source} is larger than a spreadsheet can be: {size}{where}, and Excel's limit is "
                 "{max_rows:,} rows × {max_columns:,} columns. Split the file, or remove what lies "
                 "outside the table, and upload again.").format(
            source=source, size=size, where=where, max_rows=MAX_ROWS, max_columns=MAX_COLUMNS)
    return _("{source} is too large to read: {size}{where} is {cells}, and at most {max_cells:,} cells "
             "are read. Remove unused rows and columns (or values outside the table), or split the file, "
             "and upload again.").format(source=source, size=size, where=where, cells=cells, max_cells=MAX_CELLS)


def cell_too_long(source: str, where: str, n_chars: int) -> str:
    """The sentence for a cell over :data:`MAX_CELL_CHARS`."""
    return _("{source}: {where} holds {n:,} characters or more; a cell may hold at most {max:,} "
             "(Excel's limit). Shorten or remove that cell and upload again.").format(
        source=source, where=where, n=n_chars, max=MAX_CELL_CHARS)
