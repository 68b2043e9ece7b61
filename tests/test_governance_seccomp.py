"""The kernel layer on its own: what the seccomp filter refuses when Python's audit hook cannot
see the call at all, what it leaves open, and the fallback where there is no seccomp.

Skipped, with the reason printed, only where this kernel (or machine) refuses seccomp.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from _governed import (
    CountingListener,
    assert_contained,
    governed,
    kernel_layer,
    kernel_layer_or_skip,
    record_any,
)
from conftest import run_python

# libc resolved before AgentTrace starts: a pointer the audit hook never saw looked up, as a C
# extension holds its own. Calling it later is invisible to Python.
NATIVE_BEFORE_START = """
import ctypes, os, socket, struct
LIBC = ctypes.CDLL(None, use_errno=True)
NATIVE_SOCKET, NATIVE_CONNECT, NATIVE_SYSTEM = LIBC.socket, LIBC.connect, LIBC.system


def connect_natively():
    fd = NATIVE_SOCKET(socket.AF_INET, socket.SOCK_STREAM, 0)
    errno = ctypes.get_errno()
    if fd >= 0:
        port = int(os.environ["PORT"])
        addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
        addr += socket.inet_aton("127.0.0.1") + bytes(8)
        NATIVE_CONNECT(fd, addr, len(addr))
    print("native socket", fd, os.strerror(errno) if fd < 0 else "", flush=True)
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return record_any(tmp_path_factory.mktemp("recorded"))


@pytest.fixture
def listener():
    server = CountingListener()
    yield server
    server.close()


def test_the_filter_alone_refuses_internet_sockets_and_exec_and_leaves_local_ipc(
    tmp_path, listener
):
    kernel_layer_or_skip()
    script = f"""
    import asyncio, ctypes, json, os, socket, sys
    from agenttrace.governance import seccomp
    from agenttrace.governance.record import SharedRecord
    record = SharedRecord()
    print(seccomp.install(record.path))
    libc = ctypes.CDLL(None, use_errno=True)
    out = {{}}
    out["inet"] = (libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0), ctypes.get_errno())
    out["inet6"] = (libc.socket(socket.AF_INET6, socket.SOCK_DGRAM, 0), ctypes.get_errno())
    out["unix"] = libc.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0) >= 0
    out["netlink"] = libc.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) >= 0
    out["localhost"] = bool(socket.getaddrinfo("localhost", 80))
    a, b = socket.socketpair()
    a.sendall(b"x")
    out["socketpair"] = b.recv(1) == b"x"
    out["asyncio"] = asyncio.run(asyncio.sleep(0, "ok"))
    out["system"] = os.system("touch {tmp_path / "marker"}")
    print(json.dumps(out))
    print(json.dumps(record.read(os.getpid())))
    """
    result = run_python(textwrap.dedent(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, outcome, records = result.stdout.splitlines()
    outcome = json.loads(outcome)
    assert outcome["inet"] == [-1, 13] and outcome["inet6"] == [-1, 13]  # EACCES
    assert outcome["unix"] and outcome["netlink"] and outcome["localhost"]
    assert outcome["socketpair"] and outcome["asyncio"] == "ok"
    assert outcome["system"] != 0 and not (tmp_path / "marker").exists()
    records = "\n".join(json.loads(records))
    assert "socket(AF_INET, SOCK_STREAM)" in records
    assert "socket(AF_INET6, SOCK_DGRAM)" in records
    assert "execve('/bin/sh')" in records
    assert listener.connections == 0


@pytest.mark.parametrize("repeat", range(2))
def test_native_code_the_hook_cannot_see_is_refused_by_the_kernel(
    repeat, recording, listener, tmp_path
):
    layer = kernel_layer_or_skip()
    body = """
    def escape():
        with open("/proc/self/status") as status:
            print([line for line in status if line.startswith("Seccomp:")][0].strip())
        connect_natively()
        print("system", NATIVE_SYSTEM(f"touch {MARKER}".encode()))
    """
    result = governed(body, recording, tmp_path, listener.port, before=NATIVE_BEFORE_START)
    assert "Seccomp:\t2" in result.stdout  # filtered by the kernel
    assert "native socket -1 Permission denied" in result.stdout, result.stdout
    assert_contained(result, listener, tmp_path, "refused by the kernel in this process")
    assert "socket(AF_INET, SOCK_STREAM)" in result.stderr
    assert "execve('/bin/sh')" in result.stderr
    assert (
        f"governance layers: audit hook, ctypes symbols, _posixsubprocess.fork_exec, exit guard, {layer}"
        in result.stderr
    )


def test_pycurl_is_refused_by_the_kernel(recording, listener, tmp_path):
    pytest.importorskip("pycurl")
    kernel_layer_or_skip()
    body = """
    import pycurl
    def escape():
        curl = pycurl.Curl()
        curl.setopt(pycurl.URL, f"http://127.0.0.1:{PORT}/")
        curl.setopt(pycurl.TIMEOUT, 5)
        try:
            curl.perform()
        except pycurl.error as exc:
            print("pycurl error", exc.args[0], flush=True)
    """
    result = governed(body, recording, tmp_path, listener.port)
    assert "pycurl error 7" in result.stdout  # CURLE_COULDNT_CONNECT: no socket to connect with
    assert_contained(result, listener, tmp_path, "socket(AF_INET, SOCK_STREAM) in python")


def test_without_seccomp_a_native_socket_is_found_after_the_fact(recording, listener, tmp_path):
    body = """
    def escape():
        connect_natively()
    """
    result = governed(
        body,
        recording,
        tmp_path,
        listener.port,
        env={"AGENTTRACE_GOVERNANCE_SECCOMP": "off"},
        before=NATIVE_BEFORE_START,
    )
    assert result.returncode != 0, result.stderr
    assert "internet socket opened behind Python's back (native code): tcp" in result.stderr
    assert (
        "socket scan (no seccomp: turned off (AGENTTRACE_GOVERNANCE_SECCOMP=off))" in result.stderr
    )
    # Detected, not prevented: the fallback can only fail the run once the socket exists.
    assert listener.connections == 1


def test_the_kernel_layer_is_probed_and_named():
    layer, missing = kernel_layer()
    print(f"kernel layer here: {layer or 'none'} {missing}")
    assert layer is not None or missing
