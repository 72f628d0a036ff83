"""Memory budgets for uploads: per browser session and for the whole server.

An upload costs memory three times: the file's bytes (kept by Streamlit's uploaded-file manager
until the session ends), the table as read, and the validated table. Before, the Upload page kept
each stage in ``st.cache_data``, which holds a pickled copy of every result for *all* sessions, long
after their tabs closed, and gives each caller a fresh unpickled copy: one 161 MB CSV peaked at
2.6 GB, and four uploads from tabs then closed left the server at 7.35 GB. Now:

- each session keeps only its current upload's stages (:class:`UploadMemory`, in its
  ``st.session_state``), one copy each, released when the file changes or the session ends;
- every stage is first **reserved** in a whole-server :class:`Budget` (an estimate, then the size
  measured), with a per-session limit; a stage that does not fit is refused with one sentence
  (:class:`BudgetExceeded`) instead of being computed;
- Streamlit's upload endpoint is guarded (:func:`guard_upload`, called by :mod:`ui.server`): a file
  larger than the session may upload, or one that would take the server past its budget, is
  refused before its bytes are read; signed-out visitors (and any session but a supervisor's) may
  upload only small files (:data:`SMALL_FILE_MB`);
- sessions whose tab closed are shut down once Streamlit's reconnect window
  (``server.disconnectedSessionTTL``) has passed (:func:`reap_closed_sessions`): Streamlit 1.67 drops
  them from its session storage without shutting them down, so their uploaded files stayed in
  memory for good.

The whole-server budget is ``ALLIANCE_MEMORY_BUDGET_MB`` (default :data:`DEFAULT_SERVER_MB`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
import zipfile
from dataclasses import dataclass
from io import BytesIO

from ui.asgi import header, refuse

LOG = logging.getLogger(__name__)
MB = 1024 * 1024
#: Streamlit's upload endpoint: ``PUT /_stcore/upload_file/<session id>/<file id>``.
UPLOAD_PREFIX = "/_stcore/upload_file/"
#: The whole server's budget for uploads and what is computed from them (MB).
DEFAULT_SERVER_MB = 1024
BUDGET_ENV = "ALLIANCE_MEMORY_BUDGET_MB"
#: Largest file (MB) a session that is not a supervisor's may upload (a signed-out visitor's).
SMALL_FILE_MB = 20
#: Per session (MB): what a signed-out visitor's session may hold; what a supervisor's may hold.
SMALL_SESSION_MB = 100
LARGE_SESSION_MB = 900
#: How many times a file's size reading it may take (a table of text, then the validated table).
READ_FACTOR = 3
MULTIPART_OVERHEAD = 64 * 1024
#: Where a session keeps its :class:`UploadMemory` (``st.session_state``).
UPLOAD_MEMORY_KEY = "_upload_memory"


class BudgetExceeded(Exception):
    """A stage that does not fit the session's or the server's budget (its message is the sentence)."""


def server_limit() -> int:
    """The whole server's budget in bytes (``ALLIANCE_MEMORY_BUDGET_MB``, default 1,024 MB)."""
    try:
        mb = float(os.environ.get(BUDGET_ENV, "") or DEFAULT_SERVER_MB)
    except ValueError:
        mb = DEFAULT_SERVER_MB
    return int(max(mb, 1) * MB)


class Hold:
    """Memory reserved by one session; released by :meth:`release` or when the hold is collected
    (the session's state is dropped when the session ends)."""

    __slots__ = ("owner", "nbytes", "__weakref__")

    def __init__(self, owner: str, nbytes: int) -> None:
        self.owner, self.nbytes = owner, int(nbytes)

    def release(self) -> None:
        self.nbytes = 0


class Budget:
    """A whole-server budget of bytes with per-owner (per-session) limits.

    ``uploads`` tells the bytes of uploaded files held per owner (Streamlit's uploaded-file manager;
    counted, not reserved here); ``in_flight`` are uploads being received.

    >>> b = Budget(100, uploads=lambda: {"a": 10})
    >>> h = b.reserve("a", 50, session_limit=80)
    >>> b.in_use(), b.in_use("a"), b.reserve("b", 45, session_limit=80) is None
    (60, 60, True)
    >>> h.release(); b.in_use()
    10
    """

    def __init__(self, limit: int, uploads=lambda: {}) -> None:
        self.limit = int(limit)
        self._uploads = uploads
        self._holds: weakref.WeakSet[Hold] = weakref.WeakSet()
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def _used(self, owner: str | None) -> int:
        uploads = self._uploads()
        held = sum(h.nbytes for h in list(self._holds) if owner is None or h.owner == owner)
        if owner is None:
            return held + sum(uploads.values()) + sum(self._in_flight.values())
        return held + uploads.get(owner, 0) + self._in_flight.get(owner, 0)

    def in_use(self, owner: str | None = None) -> int:
        """Bytes in use: by one owner, or by everyone."""
        with self._lock:
            return self._used(owner)

    def reserve(self, owner: str, nbytes: int, session_limit: int) -> Hold | None:
        """A hold of ``nbytes`` for ``owner`` when it fits both the owner's limit and the server's;
        else ``None`` (nothing reserved)."""
        with self._lock:
            if self._used(owner) + nbytes > session_limit or self._used(None) + nbytes > self.limit:
                return None
            hold = Hold(owner, nbytes)
            self._holds.add(hold)
            return hold

    def resize(self, hold: Hold, nbytes: int) -> None:
        """Set a hold to what its stage measured (it may exceed the estimate: it is in memory)."""
        with self._lock:
            hold.nbytes = int(nbytes)

    def start_upload(self, owner: str, nbytes: int, session_limit: int, headroom: int = 0) -> bool:
        """Count an upload being received, when it fits with ``headroom`` more (what reading it will
        take), so that a burst of uploads cannot fill the budget with files nobody can then read."""
        with self._lock:
            need = nbytes + headroom
            if self._used(owner) + need > session_limit or self._used(None) + need > self.limit:
                return False
            self._in_flight[owner] = self._in_flight.get(owner, 0) + nbytes
            return True

    def end_upload(self, owner: str, nbytes: int) -> None:
        with self._lock:
            left = self._in_flight.get(owner, 0) - nbytes
            if left > 0:
                self._in_flight[owner] = left
            else:
                self._in_flight.pop(owner, None)


# ---------------------------------------------------------------- the server's budget and sessions
def _runtime():
    from streamlit.runtime import Runtime

    return Runtime.instance() if Runtime.exists() else None


def uploaded_bytes() -> dict[str, int]:
    """Bytes of uploaded files Streamlit holds, per session (its uploaded-file manager's
    ``file_storage``: session id → file id → record)."""
    runtime = _runtime()
    storage = getattr(getattr(runtime, "uploaded_file_mgr", None), "file_storage", None) if runtime else None
    if not storage:
        return {}
    return {sid: sum(len(rec.data) for rec in list(files.values())) for sid, files in list(storage.items())}


SERVER = Budget(server_limit(), uploads=uploaded_bytes)


class _Privilege:
    """Marks (weakly, in ``st.session_state``) a session that may upload large files."""

    __slots__ = ("__weakref__",)


_LARGE_UPLOADS: weakref.WeakValueDictionary[str, _Privilege] = weakref.WeakValueDictionary()
PRIVILEGE_KEY = "_upload_privilege"


def mark_session(session_id: str | None, large: bool, state) -> None:
    """Record whether this session may upload large files (a supervisor's); ``state`` is its
    ``st.session_state``, which keeps the mark alive exactly as long as the session."""
    if not session_id:
        return
    if large:
        mark = state.get(PRIVILEGE_KEY)
        if not isinstance(mark, _Privilege):
            mark = _Privilege()
            state[PRIVILEGE_KEY] = mark
        _LARGE_UPLOADS[session_id] = mark
    else:
        state.pop(PRIVILEGE_KEY, None) if hasattr(state, "pop") else None
        _LARGE_UPLOADS.pop(session_id, None)


def may_upload_large(session_id: str) -> bool:
    return session_id in _LARGE_UPLOADS


def file_limit_mb(large: bool) -> int:
    """The largest file (MB) a session may upload: ``server.maxUploadSize`` for a supervisor,
    :data:`SMALL_FILE_MB` otherwise."""
    from streamlit import config

    full = int(config.get_option("server.maxUploadSize") or 200)
    return full if large else min(SMALL_FILE_MB, full)


def session_limit(large: bool) -> int:
    return (LARGE_SESSION_MB if large else SMALL_SESSION_MB) * MB


# ---------------------------------------------------------------- the upload endpoint
SENTENCE_TOO_LARGE = "too_large"
SENTENCE_BUSY = "busy"
_REFUSALS: dict[str, str] = {}


def take_refusal(session_id: str | None) -> str | None:
    """Why this session's last upload was refused before the page saw it (once), else ``None``."""
    return _REFUSALS.pop(session_id, None) if session_id else None


async def guard_upload(app, scope, receive, send) -> None:
    """Streamlit's ``PUT /_stcore/upload_file/<session>/<file>`` within the budgets: the file's
    declared size (``Content-Length``, required) must fit the session's file limit and, with what
    the session and the server already hold, their budgets; otherwise 413 (too large) or 503
    (the server is full), the page is rerun to say so in one sentence, and nothing is read."""
    reap_closed_sessions()
    parts = scope.get("path", "")[len(UPLOAD_PREFIX):].split("/")
    session_id = parts[0] if parts else ""
    try:
        length = int(header(scope, b"content-length") or "")
    except ValueError:
        await refuse(scope, receive, send, 411, "An upload must say its length.")
        return
    large = may_upload_large(session_id)
    if length < 0 or length > file_limit_mb(large) * MB + MULTIPART_OVERHEAD:
        _tell(session_id, SENTENCE_TOO_LARGE)
        await refuse(scope, receive, send, 413, "This file is larger than this session may upload.")
        return
    if not SERVER.start_upload(session_id, length, session_limit(large), headroom=READ_FACTOR * length):
        _tell(session_id, SENTENCE_BUSY)
        await refuse(scope, receive, send, 503, "The dashboard is holding as much uploaded data as it can; "
                      "try again later.", headers={"Retry-After": "120"})
        return
    try:
        await app(scope, receive, send)
    finally:
        SERVER.end_upload(session_id, length)


def _tell(session_id: str, why: str) -> None:
    """Remember why an upload was refused and rerun the session's page (with the browser's last state:
    the same page, the same widgets) so that it says so."""
    _REFUSALS[session_id] = why
    runtime = _runtime()
    try:
        info = runtime._session_mgr.get_active_session_info(session_id) if runtime else None
        state = getattr(info.session, "_client_state", None) if info is not None else None
        if state is not None:  # never None: a rerun without it would open the main page
            info.session.request_rerun(state)
    except Exception:  # noqa: BLE001 - the sentence then shows on the next rerun
        LOG.debug("could not rerun session %s", session_id, exc_info=True)


def reap_closed_sessions() -> int:
    """Shut down the sessions whose tab closed longer ago than ``server.disconnectedSessionTTL``
    (Streamlit's session storage forgets them without shutting them down, which would release
    their uploaded files), and drop uploaded files of sessions that no longer exist. Runs on the
    server's event loop. Returns how many sessions were shut down."""
    runtime = _runtime()
    if runtime is None:
        return 0
    manager = getattr(runtime, "_session_mgr", None)
    storage = getattr(manager, "_session_storage", None)
    cache = getattr(storage, "_cache", None)
    closed = 0
    if cache is not None and hasattr(cache, "expire"):
        for _sid, info in cache.expire():
            try:
                info.session.shutdown()
                _forget_state(info.session)
                closed += 1
            except Exception:  # noqa: BLE001 - one broken session must not stop the others
                LOG.warning("could not shut down a closed session", exc_info=True)
    files = getattr(runtime.uploaded_file_mgr, "file_storage", None)
    if files is not None and manager is not None:
        for sid in list(files):
            if not runtime.is_active_session(sid) and manager.get_session_info(sid) is None:
                runtime.uploaded_file_mgr.remove_session_files(sid)
                closed += 1
    if closed:
        _TRIMS_DUE[0] = 2  # now, and once more: a shut-down session's memory is freed when its thread ends
    if _TRIMS_DUE[0] > 0:
        _TRIMS_DUE[0] -= 1
        return_free_memory()
    return closed


_TRIMS_DUE = [0]


def _forget_state(session) -> None:
    """Release a shut-down session's upload and empty its state: Streamlit's runtime loop may keep
    the last session it handled referenced for a while, and with it everything its state holds."""
    state = getattr(session, "_session_state", None)
    if state is None:
        return
    memory = state[UPLOAD_MEMORY_KEY] if UPLOAD_MEMORY_KEY in state else None
    if isinstance(memory, UploadMemory):
        memory.release()
    state.clear()


def return_free_memory() -> None:
    """Give memory freed by closed sessions back to the system: Python's cycles collected, Arrow's
    pool (pandas' text columns) and the C allocator trimmed. Without it the process keeps its peak
    size for good, though the budget counts the memory as free."""
    import gc

    gc.collect()
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - no Arrow, or a pool without it
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


_REAPER: list[asyncio.Task] = []


def start_reaper(interval: float = 30.0) -> None:
    """Reap closed sessions every ``interval`` seconds on the running event loop (once)."""
    if _REAPER and not _REAPER[0].done():
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                reap_closed_sessions()
            except Exception:  # noqa: BLE001
                LOG.warning("reaping closed sessions failed", exc_info=True)

    _REAPER[:] = [asyncio.get_running_loop().create_task(loop(), name="alliance-reaper")]


# ---------------------------------------------------------------- one session's upload
def frame_bytes(*objects) -> int:
    """Memory of the DataFrames in ``objects`` (a DataFrame, or an object whose attributes hold some:
    a read table, a validated table), values included."""
    import pandas as pd

    total = 0
    for obj in objects:
        frames = [obj] if isinstance(obj, pd.DataFrame) else \
            [v for v in vars(obj).values() if isinstance(v, pd.DataFrame)] if hasattr(obj, "__dict__") else []
        total += sum(int(f.memory_usage(deep=True, index=True).sum()) for f in frames)
    return total


def read_estimate(data: bytes, name: str) -> int:
    """What reading a file may take: :data:`READ_FACTOR` × its size; for a workbook at least the size
    its ZIP directory declares for its parts (the table read is smaller than its XML), unless that is
    over the 128 MB the reader unpacks — such a workbook is refused before anything is unpacked."""
    estimate = READ_FACTOR * len(data)
    if name.lower().endswith((".xlsx", ".xlsm")):
        try:
            with zipfile.ZipFile(BytesIO(data)) as archive:
                declared = sum(i.file_size for i in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            declared = 0
        if declared <= 128 * MB:
            estimate = max(estimate, declared)
    return estimate


@dataclass
class _Stage:
    key: object
    value: object
    hold: Hold


class UploadMemory:
    """One session's current upload: each stage (read, scored, validated) computed once and kept
    once, under the budget. A new file releases everything of the previous one."""

    def __init__(self, owner: str, large: bool, budget: Budget | None = None) -> None:
        self.owner, self.large = owner, large
        self.budget = budget or SERVER
        self.file_id: str | None = None
        self._stages: dict[str, _Stage] = {}

    def use_file(self, file_id: str) -> None:
        if file_id != self.file_id:
            self.release()
            self.file_id = file_id

    def release(self) -> None:
        for stage in self._stages.values():
            stage.hold.release()
        self._stages.clear()

    def get(self, stage: str, key, compute, estimate: int):
        """The stage's value for ``key``: kept, or computed within a reservation of ``estimate``
        bytes (the stage's previous value is released first); :class:`BudgetExceeded` when it does
        not fit."""
        kept = self._stages.get(stage)
        if kept is not None and kept.key == key:
            return kept.value
        if kept is not None:
            kept.hold.release()
            del self._stages[stage]
        hold = self.budget.reserve(self.owner, estimate, session_limit(self.large))
        if hold is None:
            raise BudgetExceeded(SENTENCE_BUSY if self.budget.in_use() + estimate > self.budget.limit
                                 else SENTENCE_TOO_LARGE)
        try:
            value = compute()
        except BaseException:
            hold.release()
            raise
        self.budget.resize(hold, frame_bytes(value if not isinstance(value, tuple) else value[0]))
        self._stages[stage] = _Stage(key, value, hold)
        return value
