"""Files the dashboard writes for itself (the data folder's databases and settings, backups):
private to the account that runs it, and never written through a symbolic link.

- :func:`private_folder`: the folder, created ``0700`` when it does not exist.
- :func:`create_private_file`: a new, empty file ``0600``, created with ``O_CREAT | O_EXCL |
  O_NOFOLLOW`` (refused when anything, a symbolic link included, already has that name).
- :func:`write_private_file`: the whole content written to a fresh temporary file in the same
  folder (``mkstemp``: ``O_EXCL``, ``0600``, a random name, so a planted ``*.tmp`` link is never
  opened), flushed to disk, then renamed over the target (a rename replaces a link, never
  writes through it).
- :func:`refuse_links`: a path that is a symbolic link is refused with one sentence.

The modes hold whatever the process's umask is.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from core.errors import InputError
from core.i18n import _

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def refuse_links(*paths: str | os.PathLike) -> None:
    """:class:`InputError` when one of ``paths`` is a symbolic link (existing or dangling)."""
    for path in paths:
        if os.path.islink(path):
            raise InputError(_("{path} is a symbolic link; the dashboard does not write through links. "
                               "Remove the link, or give the real path.").format(path=path))


def private_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder: created (with its parents) ``0700`` when missing. A folder that exists is
    left as it is (the administrator's choice, also when it is a link to a folder)."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_FOLDER)  # mkdir's mode is reduced by the umask
    return path


def create_private_file(path: str | os.PathLike) -> bool:
    """Create ``path`` empty, ``0600``, unless something has that name: ``False`` when a regular
    file is already there (left as it is), ``True`` when created; a link is refused."""
    path = Path(path)
    refuse_links(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        refuse_links(path)  # a link made meanwhile
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)  # whatever the umask
    finally:
        os.close(fd)
    return True


@contextmanager
def private_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write ``path`` through a fresh temporary file in its folder (``0600``, random name), renamed
    over ``path`` when the block ends without an error; on an error the temporary file is removed
    and ``path`` is left as it was."""
    path = Path(path)
    refuse_links(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_private_file(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace ``path``'s content with ``data`` (text as UTF-8), as :func:`private_writer` does."""
    with private_writer(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)
