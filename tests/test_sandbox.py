"""The code sandbox: real subprocesses running hostile candidates; each is stopped and named, and we go on."""
import os
import textwrap

import pytest

from evaluation.sandbox import Limits, isolated_network, run_python

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
