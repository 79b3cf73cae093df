"""The suite's leak check (tests/conftest.py) catches each kind of leak and names it.

A nested pytest (in a subprocess, so the deliberate leaks die with it) runs tests/conftest.py
against tests that each leak one thing; each must fail with a message naming what leaked,
while clean tests -- including one whose fixture owns a task until its own teardown -- and
an ``allow_leaks`` test pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

LEAKY_TESTS = '''
import asyncio, gc, socket, threading
import pytest

async def test_leaks_task():
    async def linger_forever():
        await asyncio.Event().wait()
    asyncio.get_running_loop().create_task(linger_forever(), name="leaky-task")
    await asyncio.sleep(0)

KEEP = []

def test_leaks_socket():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    KEEP.extend([listener, client])  # referenced: no ResourceWarning, a plain leak

def test_leaks_thread():
    stop = threading.Event()
    KEEP.append(stop)
    threading.Thread(target=stop.wait, args=(60,), name="leaky-thread", daemon=True).start()

def test_drops_unclosed_socket():
    sock = socket.socket()
    del sock  # finalized now: ResourceWarning in __del__

def test_drops_unclosed_socket_in_a_cycle():
    holder = {"sock": socket.socket()}
    holder["self"] = holder  # only the garbage collector can finalize it

def test_after_the_cycle_is_clean():
    pass

def test_task_destroyed_while_pending():
    loop = asyncio.new_event_loop()
    async def forever():
        await asyncio.Event().wait()
    task = loop.create_task(forever())
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    del task, loop

@pytest.mark.allow_leaks("threads")
def test_allowed_thread_leak():
    stop = threading.Event()
    KEEP.append(stop)
    threading.Thread(target=stop.wait, args=(60,), name="allowed-thread", daemon=True).start()

@pytest.fixture
async def service():
    async def serve_forever():
        await asyncio.Event().wait()
    task = asyncio.get_running_loop().create_task(serve_forever(), name="fixture-service")
    yield task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

async def test_fixture_task_is_not_a_leak(service):
    assert not service.done()

async def test_clean_async():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        writer.close()
        await writer.wait_closed()

def test_clean_sync():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
'''


@pytest.fixture
def leaky_run(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings =\n"
        "    error::ResourceWarning\n"
        "    error::pytest.PytestUnraisableExceptionWarning\n"
    )
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-p", "no:randomly")


def _report(result: pytest.RunResult, test: str) -> str:
    """The section of the output for ``test`` (its failure/error report)."""
    text = result.stdout.str()
    starts = [i for i in range(len(text)) if text.startswith(f" {test} ", i) or text.startswith(f" of {test} ", i)]
    assert starts, f"no report section for {test}:\n{text}"
    start = starts[0]
    end = text.find("\n____", start + 1)
    return text[start: end if end > 0 else len(text)]


def test_each_kind_of_leak_fails_its_own_test_and_is_named(leaky_run: pytest.RunResult) -> None:
    out = leaky_run.stdout.str()
    outcome = {}
    for line in out.splitlines():
        for word in ("PASSED", "FAILED", "ERROR"):
            if line.startswith(word + " test_leaky.py::"):
                name = line.split("::", 1)[1].split(" ", 1)[0]
                outcome.setdefault(name, set()).add(word)
    failing = {"test_leaks_task", "test_leaks_socket", "test_leaks_thread", "test_drops_unclosed_socket",
               "test_drops_unclosed_socket_in_a_cycle", "test_task_destroyed_while_pending"}
    clean = {"test_after_the_cycle_is_clean", "test_allowed_thread_leak", "test_fixture_task_is_not_a_leak",
             "test_clean_async", "test_clean_sync"}
    for name in failing:
        assert outcome.get(name, set()) & {"FAILED", "ERROR"}, (name, outcome.get(name), out)
    for name in clean:
        assert outcome.get(name) == {"PASSED"}, (name, outcome.get(name), out)

    task = _report(leaky_run, "test_leaks_task")
    assert "leaky-task" in task and "linger_forever" in task
    sock = _report(leaky_run, "test_leaks_socket")
    assert "2 socket(s) left open" in sock or "3 socket(s) left open" in sock, sock
    assert "127.0.0.1" in sock and "raddr=" in sock
    thread = _report(leaky_run, "test_leaks_thread")
    assert "leaky-thread" in thread and "Event.wait" in thread
    for name in ("test_drops_unclosed_socket", "test_drops_unclosed_socket_in_a_cycle"):
        report = _report(leaky_run, name)
        assert "ResourceWarning" in report and "unclosed" in report, report
    assert "Task was destroyed but it is pending" in _report(leaky_run, "test_task_destroyed_while_pending")


def test_allow_leaks_rejects_unknown_kinds(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_bad_marker="import pytest\n\n@pytest.mark.allow_leaks('memory')\n"
                                        "def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert "allow_leaks: unknown kinds ['memory']" in result.stdout.str() + result.stderr.str()
