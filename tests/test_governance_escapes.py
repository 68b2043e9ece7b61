"""Governance probed as an adversarial agent would: every known way around it, in a governed
replay of its own process, launched by ``init()`` and by ``opentelemetry-instrument``.

Each escape must end the same way: a non-zero exit, a report on stderr naming the attempt, and
nothing reaching the outside world — a local listener counts connections, and an exec would
create a marker file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _governed import CountingListener, assert_contained, governed, kernel_layer_or_skip, record_any

ESCAPES = {
    "ctypes_connect_write": (
        """
        def escape():
            native_connect()
        """,
        "ctypes lookup of 'socket'",
    ),
    "ctypes_getaddrinfo": (
        """
        def escape():
            result = ctypes.c_void_p()
            status = ctypes.CDLL(None).getaddrinfo(b"localhost", None, None, ctypes.byref(result))
            print("resolved", status)
        """,
        "ctypes lookup of 'getaddrinfo'",
    ),
    "ctypes_system": (
        """
        def escape():
            ctypes.CDLL(None).system(f"touch {MARKER}".encode())
        """,
        "ctypes lookup of 'system'",
    ),
    "fork_exec_via_spawnv_passfds": (
        """
        import multiprocessing.util
        def escape():
            multiprocessing.util.spawnv_passfds("/bin/sh", ["/bin/sh", "-c", f"touch {MARKER}"], [])
        """,
        "_posixsubprocess.fork_exec",
    ),
    "multiprocessing_fork_child_using_ctypes": (
        """
        import multiprocessing
        def escape():
            child = multiprocessing.get_context("fork").Process(target=native_connect)
            child.start()
            child.join()
            print("child exit", child.exitcode)
        """,
        "ctypes lookup of 'socket'",
    ),
    "multiprocessing_spawn_child_using_a_socket": (
        """
        import multiprocessing
        def escape():
            child = multiprocessing.get_context("spawn").Process(target=dial)
            child.start()
            child.join()
            print("child exit", child.exitcode)
        """,
        "_posixsubprocess.fork_exec",
    ),
    "resetting_private_state": (
        """
        def reset_everything():
            objects = []
            for name, module in list(sys.modules.items()):
                if name == "agenttrace" or name.startswith("agenttrace."):
                    for attr, value in list(vars(module).items()):
                        if attr.startswith("__"):
                            continue
                        if type(value).__module__.startswith("agenttrace"):
                            objects.append(value)
                        setattr(module, attr, None)
            for obj in objects:
                for attr in list(getattr(obj, "__dict__", {})):
                    try:
                        setattr(obj, attr, None)
                    except Exception:
                        pass

        def escape():
            reset_everything()
            for attempt in (dial, native_connect, lambda: os.system(f"touch {MARKER}")):
                try:
                    attempt()
                except BaseException as exc:
                    print("refused", type(exc).__name__, flush=True)
        """,
        "could not be checked",
    ),
    "suppress_instrumentation_and_requests": (
        """
        import requests
        from opentelemetry.instrumentation.utils import suppress_instrumentation
        def escape():
            with suppress_instrumentation():
                print(requests.get(f"http://127.0.0.1:{PORT}/", timeout=5).status_code)
        """,
        "DNS lookup getaddrinfo('127.0.0.1')",
    ),
    "suppress_instrumentation_and_a_raw_socket": (
        """
        from opentelemetry.instrumentation.utils import suppress_instrumentation
        def escape():
            with suppress_instrumentation():
                dial()
        """,
        "socket.socket(AF_INET)",
    ),
    "os_exit_after_catching": (
        """
        def escape():
            try:
                dial()
            except BaseException:
                os._exit(0)
        """,
        "socket.socket(AF_INET)",
    ),
    "atexit_clear": (
        """
        import atexit
        def escape():
            try:
                dial()
            except BaseException:
                pass
            atexit._clear()
        """,
        "socket.socket(AF_INET)",
    ),
    "sys_exit_and_an_exception_in_atexit_handlers": (
        """
        import atexit
        def fail():
            raise RuntimeError("boom")
        def escape():
            atexit.register(lambda: sys.exit(0))
            atexit.register(fail)
            try:
                dial()
            except BaseException:
                pass
        """,
        "socket.socket(AF_INET)",
    ),
    "shutdown_then_a_raw_socket": (
        """
        import agenttrace
        def escape():
            agenttrace.shutdown()  # the session ends; the sealed sandbox does not
            dial()
        """,
        "socket.socket(AF_INET)",
    ),
    "removing_the_shared_record": (
        """
        def escape():
            os.unlink(os.environ["AGENTTRACE_GOVERNANCE_RECORD"])
        """,
        "was tampered with (it was removed)",
    ),
    "pycurl": (
        """
        def escape():
            import pycurl
            curl = pycurl.Curl()
            curl.setopt(pycurl.URL, f"http://127.0.0.1:{PORT}/")
            curl.setopt(pycurl.TIMEOUT, 5)
            curl.perform()
            print("status", curl.getinfo(pycurl.RESPONSE_CODE))
        """,
        "refused by the kernel",
    ),
    "fork_child_whose_connect_was_refused": (
        """
        def escape():
            pid = os.fork()
            if pid == 0:
                try:
                    dial()
                except BaseException:
                    os._exit(0)
                os._exit(0)
            os.waitpid(pid, 0)
        """,
        "in child process",
    ),
    "fork_child_whose_exec_was_refused": (
        """
        def escape():
            pid = os.fork()
            if pid == 0:
                try:
                    os.execv("/bin/sh", ["/bin/sh", "-c", f"touch {MARKER}"])
                except BaseException:
                    os._exit(0)
            os.waitpid(pid, 0)
        """,
        "in child process",
    ),
}

LAUNCHERS = ("init", "opentelemetry-instrument")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return record_any(tmp_path_factory.mktemp("recorded"))


@pytest.fixture
def listener():
    server = CountingListener()
    yield server
    server.close()


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_each_escape_fails_the_run_and_reaches_nothing(
    name, launcher, recording, listener, tmp_path
):
    if name == "pycurl":
        pytest.importorskip("pycurl")
        kernel_layer_or_skip()  # native code: only the kernel can stop it
    body, names = ESCAPES[name]
    result = governed(body, recording, tmp_path, listener.port, launcher)
    assert_contained(result, listener, tmp_path, names)
    if name == "ctypes_getaddrinfo":
        assert "resolved" not in result.stdout
