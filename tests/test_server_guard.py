"""The dashboard's own HTTP layer in front of Streamlit (ui/server.py) and the upload budgets
(ui/budget.py), driven as ASGI with Streamlit's real protobufs and real upload manager (issue 25).

Each test pins a behaviour that leans on Streamlit 1.67 internals, so that an upgrade that changes
them fails here: the ``BackMsg`` kinds, the upload route's path, the uploaded-file manager's
``file_storage`` and the session storage's ``TTLCache``.
"""
from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg

from ui import budget, server
from ui.budget import MB, Budget, UploadMemory

OWN = "http://127.0.0.1:8501"


def scope(kind="http", method="GET", path="/", host="127.0.0.1:8501", origin=None, headers=(), scheme=None):
    raw = [(b"host", host.encode())]
    if origin is not None:
        raw.append((b"origin", origin.encode()))
    raw += [(k.encode(), v.encode()) for k, v in headers]
    out = {"type": kind, "path": path, "headers": raw, "scheme": scheme or ("ws" if kind == "websocket" else "http")}
    if kind == "http":
        out["method"] = method
    return out


class Downstream:
    """Streamlit's server, as the guard sees it: records what reached it."""

    def __init__(self):
        self.calls, self.received = 0, []

    async def __call__(self, scope, receive, send):
        self.calls += 1
        if scope["type"] == "websocket":
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                self.received.append(message["bytes"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run(guard_scope, frames=(), app=None):
    """Drive the guard with one request (or a WebSocket sending ``frames``); what was sent back."""
    app = app or Downstream()
    guard = server.DashboardGuard(app)
    queue = [{"type": "websocket.receive", "bytes": f} for f in frames] + [{"type": "websocket.disconnect"}] \
        if guard_scope["type"] == "websocket" else [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(guard(guard_scope, receive, send))
    return app, sent


def status(sent) -> int | str:
    start = next((m for m in sent if m["type"] in ("http.response.start", "websocket.close")), None)
    return start["status"] if start["type"] == "http.response.start" else "closed"


def back(kind: str) -> bytes:
    message = BackMsg()
    if kind == "rerun_script":
        message.rerun_script.query_string = ""
    elif kind == "install_skills":
        message.backend_operation_request.install_skills.SetInParent()
    elif kind == "deferred_file":
        message.backend_operation_request.deferred_file.file_id = "x"
    else:
        setattr(message, kind, True)
    return message.SerializeToString()


def test_origins_are_compared_exactly(monkeypatch):
    monkeypatch.delenv(server.PUBLIC_ORIGIN_ENV, raising=False)
    assert server.normalise_origin("http://127.0.0.1:80") == "http://127.0.0.1"
    assert server.normalise_origin("HTTPS://Clinic.Example:443/") == "https://clinic.example"
    for bad in (None, "", "null", "file://x", "http://a/b", "http://u:p@a", "http://a:99999", "javascript:1"):
        assert server.normalise_origin(bad) is None, bad
    assert server.origin_matches(scope(origin=OWN))
    for other in ("http://127.0.0.1:8998", "http://localhost:8501", "https://127.0.0.1:8501", None):
        assert not server.origin_matches(scope(origin=other)), other
    assert server.expected_origin(scope("websocket", scheme="wss", host="clinic.example")) == "https://clinic.example"
    monkeypatch.setenv(server.PUBLIC_ORIGIN_ENV, "https://alliance.clinic.example")
    assert server.origin_matches(scope(origin="https://alliance.clinic.example"))    # behind a proxy
    assert not server.origin_matches(scope(origin=OWN))
    monkeypatch.setenv(server.PUBLIC_ORIGIN_ENV, "alliance.clinic.example/path")
    with pytest.raises(ValueError, match="ALLIANCE_PUBLIC_ORIGIN must be an origin"):
        server.middleware()


def test_the_websocket_needs_the_exact_origin(monkeypatch):
    monkeypatch.delenv(server.PUBLIC_ORIGIN_ENV, raising=False)
    for origin in (None, "http://127.0.0.1:8998", "http://localhost:8501", "null"):
        app, sent = run(scope("websocket", path="/_stcore/stream", origin=origin))
        assert app.calls == 0 and sent == [{"type": "websocket.close", "code": 1008}], origin
    app, sent = run(scope("websocket", path="/_stcore/stream", origin=OWN), frames=[back("rerun_script")])
    assert app.calls == 1 and app.received == [back("rerun_script")]
    app, sent = run(scope("websocket", path="/_stcore/stream", host="evil.example:8501", origin="http://evil.example:8501"))
    assert app.calls == 0                                                     # the Host allow-list first


def test_clear_cache_and_developer_messages_never_reach_streamlit(monkeypatch):
    monkeypatch.delenv(server.PUBLIC_ORIGIN_ENV, raising=False)
    refused = ["clear_cache", "set_run_on_save", "load_git_info", "debug_disconnect_websocket",
               "debug_shutdown_runtime", "install_skills"]
    allowed = ["rerun_script", "stop_script", "app_heartbeat", "deferred_file"]
    frames = [back(k) for k in refused + allowed]
    app, _ = run(scope("websocket", path="/_stcore/stream", origin=OWN), frames=frames)
    assert app.received == [back(k) for k in allowed]


def test_every_backmsg_kind_of_this_streamlit_is_decided():
    """A Streamlit upgrade that adds a message kind fails here: decide whether browsers may send it."""
    kinds = {f.name for f in BackMsg.DESCRIPTOR.oneofs_by_name["type"].fields}
    decided_refused = {"clear_cache", "set_run_on_save", "load_git_info", "debug_disconnect_websocket",
                       "debug_shutdown_runtime"}
    assert kinds == set(server.ALLOWED_BACK_MESSAGES) | decided_refused
    operations = {f.name for f in
                  BackMsg.DESCRIPTOR.fields_by_name["backend_operation_request"].message_type.oneofs_by_name["payload"].fields}
    assert operations == set(server.ALLOWED_BACKEND_OPERATIONS) | {"install_skills", "dismiss_skills_nudge"}


def test_state_changing_requests_need_the_exact_origin_and_every_response_refuses_framing(monkeypatch):
    monkeypatch.delenv(server.PUBLIC_ORIGIN_ENV, raising=False)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for origin in (None, "http://127.0.0.1:8998", "http://localhost:8501"):
            app, sent = run(scope(method=method, path="/_alliance/sign-out", origin=origin))
            assert app.calls == 0 and status(sent) == 403, (method, origin)
    app, sent = run(scope(method="POST", path="/_alliance/sign-out", origin=OWN))
    assert app.calls == 1 and status(sent) == 200
    for site, mode, expected in (("same-site", "cors", 403), ("cross-site", "no-cors", 403),
                                 ("same-site", "navigate", 200), ("same-origin", "cors", 200), ("none", "navigate", 200)):
        app, sent = run(scope(path="/media/x.csv", headers=[("sec-fetch-site", site), ("sec-fetch-mode", mode)]))
        assert status(sent) == expected, (site, mode)
        headers = dict(next(m for m in sent if m["type"] == "http.response.start")["headers"])
        assert headers[b"content-security-policy"] == b"frame-ancestors 'none'"
        assert headers[b"x-frame-options"] == b"DENY"


# ------------------------------------------------------------------------------------------- budgets
def test_the_budget_reserves_within_session_and_server_limits_and_releases_with_the_session():
    uploads = {"a": 100 * MB}
    b = Budget(1000 * MB, uploads=lambda: dict(uploads))
    first = b.reserve("a", 500 * MB, session_limit=900 * MB)
    assert first is not None and b.in_use() == 600 * MB
    assert b.reserve("a", 400 * MB, session_limit=900 * MB) is None           # the session's limit
    second = b.reserve("b", 350 * MB, session_limit=900 * MB)
    assert second is not None and b.reserve("c", 100 * MB, session_limit=900 * MB) is None   # the server's
    b.resize(first, 200 * MB)                                                   # measured, smaller
    assert b.reserve("c", 100 * MB, session_limit=900 * MB) is not None
    state = {"hold": second}                                                    # a session's state ...
    del second
    state.clear()                                                               # ... dropped when it ends
    gc.collect()
    assert b.in_use("b") == 0
    assert b.start_upload("d", 150 * MB, session_limit=200 * MB) and b.in_use("d") == 150 * MB
    assert not b.start_upload("d", 100 * MB, session_limit=200 * MB)
    b.end_upload("d", 150 * MB)
    assert b.in_use("d") == 0


def test_one_sessions_upload_keeps_each_stage_once_and_refuses_what_does_not_fit():
    b = Budget(100 * MB)
    memory = UploadMemory("s1", large=False, budget=b)
    memory.use_file("file-1")
    calls = []

    def compute():
        calls.append(1)
        import pandas as pd

        return pd.DataFrame({"x": range(1000)})

    frame = memory.get("read", ("sheet", "en"), compute, estimate=30 * MB)
    assert memory.get("read", ("sheet", "en"), compute, estimate=30 * MB) is frame and len(calls) == 1
    assert 0 < b.in_use("s1") < MB                                              # measured, not the estimate
    with pytest.raises(budget.BudgetExceeded):
        memory.get("validated", "k", compute, estimate=200 * MB)                # more than a small session may
    memory.use_file("file-2")                                                   # a new file releases the old
    assert b.in_use("s1") == 0


def fake_runtime(monkeypatch, sessions=("live",)):
    from streamlit.runtime.memory_session_storage import MemorySessionStorage
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    files = MemoryUploadedFileManager("/_stcore/upload_file")
    storage = MemorySessionStorage(ttl_seconds=60)
    active = set(sessions)
    reruns = []

    class Session:
        def __init__(self, sid):
            self.id = sid
            self._client_state = "the browser's last state"
            self._session_state = {}

        def shutdown(self):
            files.remove_session_files(self.id)                  # what AppSession.shutdown does with uploads

        def request_rerun(self, state):
            assert state == "the browser's last state"          # the same page, not the main one
            reruns.append(self.id)

    manager = SimpleNamespace(
        _session_storage=storage,
        get_active_session_info=lambda sid: SimpleNamespace(session=Session(sid)) if sid in active else None,
        get_session_info=lambda sid: storage.get(sid) if sid not in active else object())
    runtime = SimpleNamespace(uploaded_file_mgr=files, _session_mgr=manager, is_active_session=lambda sid: sid in active)
    monkeypatch.setattr(budget, "_runtime", lambda: runtime)
    return SimpleNamespace(files=files, storage=storage, active=active, reruns=reruns, Session=Session,
                           add=lambda sid, n: files.add_file(sid, UploadedFileRec(f"f-{sid}", "x.csv", "text/csv", b"x" * n)))


def test_closed_sessions_are_shut_down_after_the_reconnect_window_and_their_files_released(monkeypatch):
    from streamlit.runtime.session_manager import SessionInfo

    world = fake_runtime(monkeypatch)
    world.add("live", 10)
    world.add("closed", 20)
    world.add("gone", 30)                                        # a session Streamlit no longer knows at all
    world.storage.save(SessionInfo(client=None, session=world.Session("closed"), script_run_count=1))
    assert budget.uploaded_bytes() == {"live": 10, "closed": 20, "gone": 30}
    budget.reap_closed_sessions()
    assert budget.uploaded_bytes() == {"live": 10, "closed": 20}  # within its reconnect window: kept
    world.storage._cache.expire(at_time=float("inf"))  # noqa: SLF001 - what Streamlit's TTLCache forgets ...
    closed = world.Session("closed")
    memory = UploadMemory("closed", large=False)
    memory.use_file("f")
    memory.get("read", "k", lambda: __import__("pandas").DataFrame({"x": range(10_000)}), estimate=MB)
    closed._session_state[budget.UPLOAD_MEMORY_KEY] = memory
    held = memory._stages["read"].hold
    world.storage.save(SessionInfo(client=None, session=closed, script_run_count=1))
    monkeypatch.setattr(world.storage._cache, "_timer", lambda: 1e12)  # ... once its window has passed
    assert budget.reap_closed_sessions() == 1
    assert budget.uploaded_bytes() == {"live": 10}
    assert held.nbytes == 0 and closed._session_state == {}     # its tables released, its state emptied


def test_streamlit_keeps_the_internals_the_budget_relies_on():
    """An upgrade that renames them fails here (the guard would then not rerun a refused upload's page,
    nor release closed sessions' files)."""
    import inspect

    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.memory_session_storage import MemorySessionStorage
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.runtime import Runtime

    assert "self._client_state" in inspect.getsource(AppSession.__init__)
    assert "self._session_state = SessionState()" in inspect.getsource(AppSession.__init__)
    assert "self._session_mgr" in inspect.getsource(Runtime.__init__)
    assert hasattr(MemorySessionStorage(), "_cache") and hasattr(MemorySessionStorage()._cache, "expire")
    assert hasattr(MemoryUploadedFileManager("/x"), "file_storage")
    assert "remove_session_files" in inspect.getsource(AppSession.shutdown)


def test_the_upload_endpoint_refuses_what_a_session_or_the_server_cannot_hold(monkeypatch):
    """A burst of four supervisors' 161 MB uploads into a 1,024 MB budget: a file is taken only with
    room left to read it (3 × its size), so three are received, the fourth is refused before its
    bytes are read, and then one of the three is read while the others are told to wait."""
    monkeypatch.delenv(server.PUBLIC_ORIGIN_ENV, raising=False)
    heads = ("head1", "head2", "head3", "head4")
    world = fake_runtime(monkeypatch, sessions=("visitor", *heads))
    monkeypatch.setattr(budget, "SERVER", Budget(1024 * MB, uploads=budget.uploaded_bytes))
    states = {h: {} for h in heads}
    for h in heads:
        budget.mark_session(h, True, states[h])                 # supervisors' sessions may upload large files

    def put(session, size):
        s = scope(method="PUT", path=f"/_stcore/upload_file/{session}/file", origin=OWN,
                  headers=[("content-length", str(size))])
        app, sent = run(s)
        return app.calls, status(sent)

    assert put("visitor", 25 * MB) == (0, 413)                   # signed out: small files only
    assert budget.take_refusal("visitor") == budget.SENTENCE_TOO_LARGE and world.reruns == ["visitor"]
    assert put("visitor", 5 * MB) == (1, 200)
    for h in heads[:3]:
        assert put(h, 161 * MB) == (1, 200), h
        world.add(h, 161 * MB)                                   # Streamlit keeps the received file
    assert put("head4", 161 * MB) == (0, 503)                    # no room left to read a fourth
    assert budget.take_refusal("head4") == budget.SENTENCE_BUSY and "head4" in world.reruns
    first = budget.SERVER.reserve("head1", 3 * 161 * MB, session_limit=budget.session_limit(True))
    assert first is not None                                     # one is read ...
    assert budget.SERVER.reserve("head2", 3 * 161 * MB, session_limit=budget.session_limit(True)) is None  # ... alone
    s = scope(method="PUT", path="/_stcore/upload_file/visitor/file", origin=OWN)
    assert status(run(s)[1]) == 411                               # no declared length: refused
    assert budget.SERVER.in_use() == 3 * 161 * MB + 3 * 161 * MB  # nothing left in flight
    states.clear()                                                # the sessions end ...
    assert not budget.may_upload_large("head1")                   # ... and their privilege with them


def test_reading_estimates_follow_the_file_and_a_workbooks_declared_parts(tmp_path):
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import hostile_files as hostile

    assert budget.read_estimate(b"x" * 1000, "a.csv") == 3000
    bomb = hostile.xlsx_bomb(tmp_path).read_bytes()               # declares 2.7 GB: refused before unpacking
    assert budget.read_estimate(bomb, "bomb.xlsx") == 3 * len(bomb)
    lying = hostile.xlsx_lying_sizes(tmp_path, unpacked_mb=100).read_bytes()
    assert budget.read_estimate(lying, "l.xlsx") >= 3 * len(lying)
