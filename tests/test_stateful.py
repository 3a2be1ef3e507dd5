"""A randomized stateful test of a real gateway process under admin actions, upstream deaths and many clients.

Hypothesis picks sequences of what happens in a real deployment: virtual keys created, disabled,
re-enabled, deleted and re-granted; upstreams added, disabled and removed through the admin API;
upstream processes killed (stdio children of the gateway, and an HTTP server the test runs) and
restarted; MCP sessions opened and closed with various identities (anonymous, `x-bf-mcp-session-id`,
virtual keys) and tools called. After every step, once the gateway has settled, these must hold:

- every open session whose identity is still valid is served: its tools/list answers, shows exactly
  the `echo` tools its grants allow of the upstreams that are up, and calling one works;
- sessions (and new requests) of disabled or deleted keys are refused (401, or 404 for a session the
  gateway ended), never served;
- no 5xx on `/mcp`, and no ERROR log record from mcpgw, uvicorn or asyncio;
- `/readyz` agrees with what clients experience (200 exactly when every enabled upstream is up).

`make test` runs a few short sequences; `MCPGW_STATEFUL_EXAMPLES` and `MCPGW_STATEFUL_STEPS` make a
longer run (see the closing note of issue 11 for one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.conftest import LAB_SERVER, free_port

MCPGW = Path(sys.executable).parent / "mcpgw"
STEPS_TAKEN: Counter[str] = Counter()
"""How often each rule ran, printed at the end: proof that the run did what it claims."""
ADMIN = "stateful-admin-token"
EXAMPLES = int(os.environ.get("MCPGW_STATEFUL_EXAMPLES", "4"))
STEPS = int(os.environ.get("MCPGW_STATEFUL_STEPS", "15"))
SETTLE_SECONDS = 20
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
HEALTH = {
    "ping_interval": 0.5,
    "ping_timeout": 2,
    "max_ping_failures": 2,
    "reconnect_backoff_start": 0.1,
    "reconnect_backoff_max": 0.5,
}
FIXED = ("alpha", "beta", "gamma")  # alpha, beta: stdio children of the gateway; gamma: an HTTP server we run
EXTRA = ("delta", "epsilon")  # added and removed through the admin API
GRANT_CHOICES = st.dictionaries(st.sampled_from(FIXED + EXTRA), st.sampled_from([("*",), ("echo",), ()]), max_size=3)


def stdio_lab(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(LAB_SERVER)],
        "env": {"MCPGW_TEST_UPSTREAM": name, "LAB_TOOL_COUNT": "0"},
        **HEALTH,
        **extra,
    }


class Upstream:
    def __init__(self, name: str, *, allow_all: bool, enabled: bool = True) -> None:
        self.name = name
        self.allow_all = allow_all
        self.enabled = enabled
        self.down = False
        """Only for gamma: its process is killed and not restarted yet."""

    @property
    def up(self) -> bool:
        return self.enabled and not self.down


class Key:
    def __init__(self, id: str, secret: str, grants: dict[str, tuple[str, ...]]) -> None:
        self.id = id
        self.secret = secret
        self.grants = grants
        self.active = True
        self.deleted = False

    @property
    def valid(self) -> bool:
        return self.active and not self.deleted


class Session:
    """One MCP client session, spoken as raw JSON-RPC over HTTP (the SDK client is async; this test is not)."""

    def __init__(self, identity: str, headers: dict[str, str], key: Key | None) -> None:
        self.identity = identity
        self.headers = headers
        self.key = key
        self.id: str | None = None
        self.ended = False
        self.next_id = 1

    @property
    def valid(self) -> bool:
        return self.key is None or self.key.valid


def answer_of(response: httpx2.Response) -> dict[str, Any] | None:
    """The JSON-RPC answer in a JSON or SSE body."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                message: dict[str, Any] = json.loads(line[5:])
                if "result" in message or "error" in message:
                    return message
        return None
    if not response.content:
        return None
    body: dict[str, Any] = response.json()
    return body


class GatewayUnderTest(RuleBasedStateMachine):
    keys = Bundle("keys")
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory(prefix="mcpgw-stateful-")
        root = Path(self.folder.name)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.gamma_port = free_port()
        self.gamma: subprocess.Popen[bytes] | None = None
        self.start_gamma()
        self.upstreams = {
            "alpha": Upstream("alpha", allow_all=True),
            "beta": Upstream("beta", allow_all=False),
            "gamma": Upstream("gamma", allow_all=False),
        }
        config = {
            "server": {"port": self.port},
            "auth": {"enforce_auth_on_inference": False},
            "upstreams": {
                "alpha": stdio_lab("alpha", allow_on_all_virtual_keys=True),
                "beta": stdio_lab("beta"),
                "gamma": {"transport": "http", "url": f"http://127.0.0.1:{self.gamma_port}/mcp", **HEALTH},
            },
        }
        (root / "gateway.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = root / "gateway.log"
        self.log_offset = 0
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MCPGW_CONFIG")}
        env |= {"DATABASE_URL": f"sqlite+aiosqlite:///{root}/db.sqlite", "MCPGW_ADMIN_TOKEN": ADMIN}
        with self.log.open("wb") as sink:
            self.gateway = subprocess.Popen(
                [str(MCPGW), "serve", "--config", str(root / "gateway.yaml"), "--log-format", "json"],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx2.Client(timeout=30)
        self.api = httpx2.Client(base_url=f"{self.base}/api", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        self.open_sessions: list[Session] = []
        self.settle()

    def teardown(self) -> None:
        for process in (self.gateway, self.gamma):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.http.close()
        self.api.close()
        self.folder.cleanup()

    # --- processes -------------------------------------------------------------------------------

    def start_gamma(self) -> None:
        self.gamma = subprocess.Popen(
            [sys.executable, str(LAB_SERVER), "--transport", "http", "--port", str(self.gamma_port)],
            env={**os.environ, "LAB_TOOL_COUNT": "0"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stdio_children(self, name: str) -> list[int]:
        """Pids of the gateway's lab children serving upstream `name` (their environment names it)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if f"MCPGW_TEST_UPSTREAM={name}".encode() in environ and int(stat[1]) == self.gateway.pid:
                found.append(int(entry.name))
        return found

    # --- talking to the gateway ------------------------------------------------------------------

    def post(self, session: Session, message: dict[str, Any]) -> httpx2.Response:
        headers = ACCEPT | session.headers
        if session.id is not None:
            headers |= {"Mcp-Session-Id": session.id, "MCP-Protocol-Version": "2025-06-18"}
        response = self.http.post(f"{self.base}/mcp", json=message, headers=headers)
        assert response.status_code < 500, f"{response.status_code} on /mcp: {response.text[:500]}"
        return response

    def request(self, session: Session, method: str, params: dict[str, Any]) -> httpx2.Response:
        session.next_id += 1
        return self.post(session, {"jsonrpc": "2.0", "id": session.next_id, "method": method, "params": params})

    def open(self, session: Session) -> httpx2.Response:
        response = self.request(
            session,
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "stateful", "version": "0"}},
        )
        if response.status_code == 200:
            session.id = response.headers["mcp-session-id"]
            initialized = self.post(session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            assert initialized.status_code == 202, initialized.text
        return response

    def settle(self) -> dict[str, Any]:
        """Wait until every upstream is in the state the model expects; returns /readyz."""
        deadline = time.monotonic() + SETTLE_SECONDS
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.gateway.poll() is None, f"the gateway exited: {self.log.read_text()[-3000:]}"
            try:
                response = self.http.get(f"{self.base}/readyz")
            except httpx2.TransportError:
                time.sleep(0.1)
                continue
            body = response.json()
            states = {u["name"]: u["state"] for u in body["upstreams"]}
            expected = {
                name: ("connected" if u.up else "disabled" if not u.enabled else "disconnected")
                for name, u in self.upstreams.items()
            }
            if states == expected:
                return body | {"http_status": response.status_code}
            time.sleep(0.1)
        raise AssertionError(f"gateway did not settle: readyz {body}, expected {self.upstreams_summary()}")

    def upstreams_summary(self) -> dict[str, str]:
        return {n: "up" if u.up else "disabled" if not u.enabled else "down" for n, u in self.upstreams.items()}

    def expected_echo_tools(self, session: Session) -> set[str]:
        grants = session.key.grants if session.key is not None else {}
        visible = set()
        for name, upstream in self.upstreams.items():
            if not upstream.up:
                continue
            patterns = grants.get(name, ("*",) if upstream.allow_all else ())
            if "*" in patterns or "echo" in patterns:
                visible.add(f"{name}-echo")
        return visible

    # --- rules: keys -----------------------------------------------------------------------------

    @initialize(target=keys, grants=GRANT_CHOICES)
    def first_key(self, grants: dict[str, tuple[str, ...]]) -> Key:
        """Every sequence starts with a key and a session using it, so the key rules always have work."""
        key = self.create_key(grants)
        self.open_key_session(key)
        return key

    @rule(target=keys, grants=GRANT_CHOICES)
    def create_key(self, grants: dict[str, tuple[str, ...]]) -> Key:
        STEPS_TAKEN["create_key"] += 1
        response = self.api.post(
            "/virtual-keys", json={"name": "k", "mcp_configs": {u: list(p) for u, p in grants.items()}}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return Key(body["id"], body["key"], grants)

    @rule(key=keys, active=st.booleans())
    def set_key_active(self, key: Key, active: bool) -> None:
        STEPS_TAKEN["set_key_active"] += 1
        if key.deleted:
            return
        response = self.api.put(f"/virtual-keys/{key.id}", json={"active": active})
        assert response.status_code == 200, response.text
        key.active = active

    @rule(key=keys, grants=GRANT_CHOICES)
    def edit_grants(self, key: Key, grants: dict[str, tuple[str, ...]]) -> None:
        STEPS_TAKEN["edit_grants"] += 1
        if key.deleted:
            return
        response = self.api.put(
            f"/virtual-keys/{key.id}", json={"mcp_configs": {u: list(p) for u, p in grants.items()}}
        )
        assert response.status_code == 200, response.text
        key.grants = grants

    @rule(key=keys)
    def delete_key(self, key: Key) -> None:
        STEPS_TAKEN["delete_key"] += 1
        if key.deleted:
            return
        assert self.api.delete(f"/virtual-keys/{key.id}").status_code == 204
        key.deleted = True

    # --- rules: upstreams ------------------------------------------------------------------------

    @rule(name=st.sampled_from(EXTRA), allow_all=st.booleans())
    def add_upstream(self, name: str, allow_all: bool) -> None:
        STEPS_TAKEN["add_upstream"] += 1
        if name in self.upstreams:
            return
        response = self.api.post(
            "/mcp/clients",
            json={"name": name, "allow_on_all_virtual_keys": allow_all, "config": stdio_lab(name)},
        )
        assert response.status_code == 201, response.text
        self.upstreams[name] = Upstream(name, allow_all=allow_all)

    @rule(name=st.sampled_from(EXTRA))
    def remove_upstream(self, name: str) -> None:
        STEPS_TAKEN["remove_upstream"] += 1
        if name not in self.upstreams:
            return
        assert self.api.delete(f"/mcp/client/{name}").status_code == 204
        del self.upstreams[name]

    @rule(name=st.sampled_from(("beta", *EXTRA)), enabled=st.booleans())
    def set_upstream_enabled(self, name: str, enabled: bool) -> None:
        STEPS_TAKEN["set_upstream_enabled"] += 1
        upstream = self.upstreams.get(name)
        if upstream is None:
            return
        config = stdio_lab(name, enabled=enabled)
        response = self.api.put(f"/mcp/client/{name}", json={"config": config})
        assert response.status_code == 200, response.text
        upstream.enabled = enabled

    @rule(name=st.sampled_from(("alpha", "beta", *EXTRA)))
    def kill_stdio_upstream(self, name: str) -> None:
        """The child dies; the gateway notices at once and starts a new one."""
        STEPS_TAKEN["kill_stdio_upstream"] += 1
        upstream = self.upstreams.get(name)
        if upstream is None or not upstream.up:
            return
        before = self.last_change(name)
        children = self.stdio_children(name)
        assert children, f"no child process found for {name}"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        # A reaped child is noticed at once (end of its stdout), not after failed health checks.
        deadline = time.monotonic() + 3
        while self.last_change(name, state="disconnected") <= before:
            assert time.monotonic() < deadline, f"{name}'s death went unnoticed: {self.readyz()}"
            time.sleep(0.05)

    def readyz(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"{self.base}/readyz").json()
        return body

    def last_change(self, name: str, state: str | None = None) -> str:
        """When `name` last changed state (to `state`, if given), as readyz's ISO timestamp."""
        [upstream] = [u for u in self.readyz()["upstreams"] if u["name"] == name]
        changes = [c["at"] for c in upstream["history"] if state is None or c["state"] == state]
        return max(changes, default="")

    @precondition(lambda self: self.gamma is not None)
    @rule()
    def kill_gamma(self) -> None:
        STEPS_TAKEN["kill_gamma"] += 1
        if self.gamma is None:
            return
        self.gamma.kill()
        self.gamma.wait()
        self.gamma = None
        self.upstreams["gamma"].down = True

    @precondition(lambda self: self.gamma is None)
    @rule()
    def restart_gamma(self) -> None:
        STEPS_TAKEN["restart_gamma"] += 1
        if self.gamma is not None:
            return
        self.start_gamma()
        self.upstreams["gamma"].down = False

    # --- rules: clients --------------------------------------------------------------------------

    @rule(target=sessions, key=keys)
    def open_key_session(self, key: Key) -> Session:
        STEPS_TAKEN["open_session"] += 1
        return self.open_session(Session(f"key {key.id[:6]}", {"Authorization": f"Bearer {key.secret}"}, key))

    @rule(target=sessions, kind=st.sampled_from(["anonymous", "session"]))
    def open_plain_session(self, kind: str) -> Session:
        STEPS_TAKEN["open_session"] += 1
        headers = {"x-bf-mcp-session-id": os.urandom(8).hex()} if kind == "session" else {}
        return self.open_session(Session(kind, headers, None))

    def open_session(self, session: Session) -> Session:
        response = self.open(session)
        if session.valid:
            assert response.status_code == 200, response.text
            self.open_sessions.append(session)
        else:
            assert response.status_code == 401, response.text
            session.ended = True
        return session

    @rule(session=consumes(sessions))
    def close_session(self, session: Session) -> None:
        STEPS_TAKEN["close_session"] += 1
        if session.ended or session.id is None:
            return
        response = self.http.delete(
            f"{self.base}/mcp", headers=ACCEPT | session.headers | {"Mcp-Session-Id": session.id}
        )
        assert response.status_code < 500, response.text
        session.ended = True
        self.open_sessions.remove(session)

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def clients_are_served_exactly_as_allowed(self) -> None:
        ready = self.settle()
        for session in list(self.open_sessions):
            listed = self.request(session, "tools/list", {})
            if not session.valid:
                assert listed.status_code in (401, 404), f"{session.identity} lost access: {listed.status_code}"
                session.ended = True
                self.open_sessions.remove(session)
                continue
            assert listed.status_code == 200, f"{session.identity}: {listed.status_code} {listed.text[:300]}"
            answer = answer_of(listed)
            assert answer is not None and "result" in answer, f"{session.identity}: {listed.text[:300]}"
            echo_tools = {t["name"] for t in answer["result"]["tools"] if t["name"].endswith("-echo")}
            expected = self.expected_echo_tools(session)
            assert echo_tools == expected, f"{session.identity} sees {echo_tools}, expected {expected}"
            for tool in sorted(echo_tools)[:1]:
                called = answer_of(self.request(session, "tools/call", {"name": tool, "arguments": {"text": "hi"}}))
                assert called is not None and "result" in called, called
                assert called["result"]["content"][0]["text"] == "hi", called
        all_up = all(u.up for u in self.upstreams.values() if u.enabled)
        assert (ready["http_status"] == 200) == all_up, f"readyz {ready} while upstreams are {self.upstreams_summary()}"
        assert ready["sessions"]["running"] and ready["store"]["reachable"]
        assert all(t["state"] == "running" for t in ready["tasks"]), ready["tasks"]

    @invariant()
    def no_error_is_logged(self) -> None:
        text = self.log.read_text(errors="replace")
        new, self.log_offset = text[self.log_offset :], len(text)
        errors = [line for line in new.splitlines() if '"level": "error"' in line or '"level": "critical"' in line]
        assert not errors, errors


GatewayUnderTest.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.timeout(900)
def test_gateway_under_random_admin_actions_upstream_deaths_and_clients() -> None:
    STEPS_TAKEN.clear()
    GatewayUnderTest.TestCase().runTest()
    print(f"stateful steps: {sum(STEPS_TAKEN.values())} {dict(sorted(STEPS_TAKEN.items()))}")
    # The sequences must have reached the rules the invariants are about.
    assert STEPS_TAKEN["open_session"] and STEPS_TAKEN["create_key"], STEPS_TAKEN
