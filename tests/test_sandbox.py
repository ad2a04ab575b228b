"""The code sandbox: real subprocesses running hostile candidates; each is stopped and named, and we go on."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from evaluation.sandbox import Limits, isolated_network, os_sandbox, run_python
from tests.conftest import REPO

FAST = Limits(wall_seconds=4, cpu_seconds=2, memory_mb=512, output_bytes=200_000)


def run(code: str, **kw):
    return run_python(textwrap.dedent(code), limits=kw.pop("limits", FAST), **kw)


def test_a_right_program_reads_its_input_and_may_use_its_own_folder():
    r = run("""
        a, b = map(int, input().split())
        with open("scratch.txt", "w") as f:
            f.write(str(a + b))
        print(open("scratch.txt").read())
    """, stdin="3 4\n")
    assert r.status == "ok" and r.stdout.strip() == "7", r
    assert run("import sys; sys.exit(3)").status == "error"
    assert run("raise ValueError('no')").stderr.strip().endswith("ValueError: no")


@pytest.mark.parametrize("name, code, status", [
    ("loops", "while True: pass", "timeout"),
    ("sleeps", "import time; time.sleep(60)", "timeout"),
    ("forks", "import os; os.fork()", "blocked"),
    ("runs a program", "import subprocess; subprocess.run(['sleep', '60'])", "blocked"),
    ("calls the shell", "import os; os.system('sleep 60')", "blocked"),
    ("allocates 10 GB", "x = bytearray(10 * 1024 ** 3)", "memory"),
    ("prints 100 MB", "import sys\nfor _ in range(100): sys.stdout.write('x' * 1_000_000)", "output"),
    ("opens a socket", "import socket; socket.create_connection(('127.0.0.1', 9))", "blocked"),
    ("loads C code", "import ctypes; ctypes.CDLL(None).getpid()", "blocked"),
])
def test_a_hostile_candidate_is_stopped_and_named(name, code, status):
    r = run(code)
    assert r.status == status, (name, r)
    assert r.seconds < FAST.wall_seconds + 3


def test_nothing_is_written_moved_or_deleted_outside_its_folder(tmp_path):
    outside = tmp_path / "outside.txt"
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    for code in (f"open({str(outside)!r}, 'w').write('x')",
                 f"import os; os.open({str(outside)!r}, os.O_WRONLY | os.O_CREAT)",
                 f"import os; os.remove({str(keep)!r})",
                 f"import os; os.rename({str(keep)!r}, 'stolen.txt')",
                 f"import shutil; shutil.rmtree({str(tmp_path)!r})"):
        r = run(code)
        assert r.status == "blocked", (code, r)
    assert not outside.exists() and keep.read_text() == "mine"


def test_the_environment_is_emptied_and_the_network_isolated_where_the_kernel_allows():
    os.environ["SANDBOX_SECRET"] = "s3cret"
    try:
        r = run("import os; print(sorted(os.environ))")
    finally:
        del os.environ["SANDBOX_SECRET"]
    assert r.status == "ok" and "SANDBOX_SECRET" not in r.stdout and "HOME" in r.stdout
    if isolated_network():
        # in its own network namespace only a loopback device exists, and it is down
        r = run("print(open('/proc/net/dev').read())")
        assert r.status == "ok" and "lo:" in r.stdout and "eth" not in r.stdout


# The audit hook is no boundary: each escape below first defeats it (a refusal then prints and goes on), then tries
# to reach what lies outside; the operating-system sandbox (bubblewrap) must hold on its own.
UNHOOK = "import os\nos._exit = lambda *a: None\n"
ESCAPES = {
    "writes a file outside": "open({outside!r}, 'w').write('escaped')",
    "empties a file outside by O_TRUNC": "import os; os.open({keep!r}, os.O_RDONLY | os.O_TRUNC)",
    "deletes a file outside": "import os; os.remove({keep!r})",
    "writes through dir_fd": "import os; d = os.open({folder!r}, os.O_RDONLY); "
                             "os.write(os.open('outside.txt', os.O_WRONLY | os.O_CREAT, dir_fd=d), b'x')",
    "makes a FIFO outside": "import os; os.mkfifo({outside!r})",
    "links its folder to the outside": "import os; os.symlink({folder!r}, 'out'); open('out/outside.txt', 'w').write('x')",
    "writes from a spawned interpreter": "import multiprocessing as mp\n"
                                         "def w(): open({outside!r}, 'w').write('x')\n"
                                         "if __name__ == '__main__':\n"
                                         "    mp.set_start_method('spawn'); p = mp.Process(target=w); p.start(); p.join()",
    "unlinks through ctypes": "import ctypes; ctypes.CDLL(None).unlink({keep!r}.encode())",
    "reads the parent's environment": "print(open('/proc/{parent}/environ').read())",
    "reads a secret file of the root": "print(open({secret!r}).read())",
    "reads its own environment": "import os; print(dict(os.environ))",
    "kills the daemon": "import os, signal; os.kill({parent}, signal.SIGKILL)",
    "connects to a loopback server": "import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=2); "
                                     "s.sendall(b'escaped')",
    "raises its limits back": "import resource; resource.setrlimit(resource.RLIMIT_CPU, (-1, -1)); "
                              "resource.setrlimit(resource.RLIMIT_NPROC, (-1, -1)); print('raised')",
    "forks without end": "import os\nfor _ in range(10000):\n    try: os.fork()\n    except OSError: pass",
    "fills the disk": "open('big', 'wb').write(b'x' * (512 << 20))",
}


@pytest.mark.parametrize("name", ESCAPES)
def test_an_escape_past_the_audit_hook_is_contained_by_the_os_sandbox(name, tmp_path):
    import socket
    import threading

    if os_sandbox() is not None:
        if os.environ.get("CI"):
            raise AssertionError(f"no OS sandbox in CI: {os_sandbox()}; .ci/run installs bubblewrap")
        pytest.skip(f"no OS sandbox here: {os_sandbox()}")

    folder = tmp_path / "outside"
    folder.mkdir()
    keep, secret = folder / "keep.txt", folder / "config.json"
    keep.write_text("mine")
    secret.write_text('{"api_key": "sk-s3cret"}')
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    heard = []
    threading.Thread(target=lambda: heard.append(_accept(listener)), daemon=True).start()
    os.environ["SANDBOX_SECRET"] = "sk-s3cret"
    try:
        code = UNHOOK + ESCAPES[name].format(outside=str(folder / "outside.txt"), keep=str(keep), folder=str(folder),
                                             parent=os.getpid(), secret=str(secret), port=listener.getsockname()[1])
        r = run_python(code, limits=Limits(wall_seconds=8, cpu_seconds=4, memory_mb=512, output_bytes=200_000))
    finally:
        del os.environ["SANDBOX_SECRET"]
    time.sleep(0.6)
    listener.close()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "keep.txt"], (name, r)
    assert keep.read_text() == "mine" and "s3cret" not in r.stdout + r.stderr and heard in ([], [None]), (name, r)
    assert "raised" not in r.stdout and r.seconds < 8 + 3


def _accept(listener):
    try:
        return listener.accept()
    except OSError:
        return None


def test_without_an_os_sandbox_code_is_refused_naming_the_switch(tmp_path):
    """Where bubblewrap cannot run (here: not on the PATH), no code runs unless practice.allow_unsandboxed_code."""
    program = ("from evaluation.sandbox import run_python, Limits, NoSandbox\n"
               "try:\n    run_python('print(1)')\nexcept NoSandbox as e:\n    print('refused:', e)\n"
               "print(run_python('print(6 * 7)', limits=Limits(allow_unsandboxed=True)).stdout)")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PATH": str(tmp_path)})
    assert "refused: code is not run without an operating-system sandbox: bubblewrap (bwrap) is not installed" \
           in done.stdout and "practice.allow_unsandboxed_code" in done.stdout, done.stderr
    assert done.stdout.strip().endswith("42")
