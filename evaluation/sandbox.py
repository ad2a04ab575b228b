"""Running untrusted code (a model's candidate solution) in a sandboxed subprocess, never in our own process.

    run = run_python(source, stdin="3 4\n", limits=Limits(wall_seconds=5))
    run.status   # "ok", "error", "timeout", "memory", "output" or "blocked"

Layers, each of which stops a candidate on its own:
- its own process group and temporary folder (the working directory, HOME and TMPDIR), an
  emptied environment, stdin closed except for the test input, Python in isolated mode;
- `resource` limits: CPU seconds, address space, file size, no core dumps;
- a wall-clock timeout that kills the whole process group, and a cap on what it prints
  (read as it comes, the group killed once over);
- an audit hook (PEP 578), installed before the candidate's code runs and impossible to
  remove from Python: no new processes (fork, exec, subprocess, os.system), no sockets, no
  ctypes, no file opened for writing and nothing created, moved or deleted outside its folder;
- no network at all where the kernel gives the process a new network namespace
  (`unshare --net`, as root or with user namespaces); elsewhere the audit hook alone
  refuses sockets (`isolated_network()` says which).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BLOCKED_EXIT = 97  # the exit status of a candidate the audit hook stopped

# Runs before the candidate, in the child: the audit hook, then the candidate's own file as __main__.
PRELUDE = r'''
import os, sys
_root = os.path.realpath(os.getcwd())
_deny = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen",
         "os.kill", "os.killpg", "socket.__new__", "socket.connect", "socket.bind", "ctypes.dlopen",
         "ctypes.dlsym", "ctypes.cdata", "os.chdir", "os.chmod", "os.chown", "os.link", "os.symlink"}
_paths = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "shutil.rmtree", "os.truncate", "os.utime"}

def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else ".")
    except Exception:
        return False
    return p == _root or p.startswith(_root + os.sep)

def _hook(event, args):
    if event in _deny or event.startswith("os.exec") or event.startswith("os.spawn"):
        sys.stderr.write(f"sandbox: {event} is not allowed\n"); sys.stderr.flush(); os._exit(97)
    if event == "open" and args and isinstance(args[1], str) and any(m in args[1] for m in "wax+") \
            and not _inside(args[0]):
        sys.stderr.write(f"sandbox: writing {args[0]!r} is not allowed (only inside the working folder)\n")
        sys.stderr.flush(); os._exit(97)
    if event == "open" and args and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) \
            and not _inside(args[0]):
        sys.stderr.write(f"sandbox: writing {args[0]!r} is not allowed (only inside the working folder)\n")
        sys.stderr.flush(); os._exit(97)
    if event in _paths and args and not all(_inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
        sys.stderr.write(f"sandbox: {event} outside the working folder is not allowed\n"); sys.stderr.flush(); os._exit(97)

sys.addaudithook(_hook)
del _hook
import runpy
runpy.run_path("candidate.py", run_name="__main__")
'''


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_mb: int = 1024  # address space: the interpreter itself takes about 30 MB of it
    file_mb: int = 16  # the largest file it may write (in its folder)
    output_bytes: int = 1_000_000  # stdout and stderr together


@dataclass
class Run:
    status: str  # "ok" (exit 0), "error" (another exit), "timeout", "memory", "output" (printed too much), "blocked"
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@lru_cache(maxsize=1)
def isolated_network() -> bool:
    """True where `unshare --net` works for us (root, or unprivileged user namespaces allowed)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    for flags in (["--net"], ["--user", "--map-root-user", "--net"]):
        try:
            if subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=10).returncode == 0:
                _NET_FLAGS[:] = flags
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
    return False


_NET_FLAGS: list[str] = []


def _limit(limits: Limits):
    def apply() -> None:  # in the child, between fork and exec
        mb = 1024 * 1024
        # SIGXCPU at the soft limit, SIGKILL a second later if it is caught
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_python(source: str, *, stdin: str | None = None, limits: Limits = Limits()) -> Run:
    """Run `source` as a Python program in the sandbox, `stdin` as its input; never raises for what the code does."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-"))
    try:
        (folder / "candidate.py").write_text(source, encoding="utf-8")
        (folder / "prelude.py").write_text(PRELUDE, encoding="utf-8")
        argv = [sys.executable, "-I", "-B", "prelude.py"]
        if isolated_network():
            argv = [shutil.which("unshare"), *_NET_FLAGS, *argv]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "TMPDIR": str(folder), "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8"}
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_limit(limits))
        return _collect(proc, stdin, limits, started)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _collect(proc: subprocess.Popen, stdin: str | None, limits: Limits, started: float) -> Run:
    """Feed the input, read both outputs as they come (killing the group once they pass the cap), wait up to the
    wall-clock limit (killing the group then), and say how it ended."""
    out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    over = threading.Event()

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def read(name: str, stream) -> None:
        while chunk := stream.read1(65536):
            if len(out["stdout"]) + len(out["stderr"]) + len(chunk) > limits.output_bytes:
                over.set()
                kill()
                return
            out[name] += chunk

    readers = [threading.Thread(target=read, args=(n, getattr(proc, n)), daemon=True) for n in out]
    for r in readers:
        r.start()
    if stdin is not None:
        try:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
    try:
        proc.wait(timeout=limits.wall_seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        kill()
        proc.wait()
    kill()  # anything it left behind in its group
    for r in readers:
        r.join(timeout=5)
    seconds = time.perf_counter() - started
    stdout, stderr = (bytes(out[n]).decode("utf-8", "replace") for n in ("stdout", "stderr"))
    code = proc.returncode
    if over.is_set():
        status = "output"
    elif timed_out or code in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in stderr:
        status = "timeout"
    elif code == BLOCKED_EXIT and "sandbox:" in stderr:
        status = "blocked"
    elif "MemoryError" in stderr or code == -signal.SIGKILL:
        status = "memory"
    else:
        status = "ok" if code == 0 else "error"
    return Run(status, code, stdout, stderr, round(seconds, 3))
