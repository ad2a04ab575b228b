"""Running untrusted code (a model's candidate solution, a practice file's tests) in an operating-system sandbox,
never in our own process.

    run = run_python(source, stdin="3 4\n", limits=Limits(wall_seconds=5))
    run.status   # "ok", "error", "timeout", "memory", "output" or "blocked"

The boundary is bubblewrap (`bwrap`, Debian's `bubblewrap`): new user, pid, network, ipc, uts and mount
namespaces, so the code sees a file system made of the interpreter and its standard library (read-only), a
read-only folder with its program, a private /tmp, /proc and /dev, and a size-capped working folder, and nothing
else: not the daemon's root, not its environment (emptied), not its processes, no network; it cannot raise its
limits back (no capabilities) and dies with its parent. Inside it, layers that each stop a candidate on their own:
- `resource` limits: CPU seconds, address space, the size of a file, open files, processes, no core dumps; the
  working folder is a tmpfs of `Limits.disk_mb`, so what it writes in all is bounded;
- a wall-clock timeout that kills the whole process group, and a cap on what it prints (read as it comes);
- the audit hook (PEP 578) of before, a second layer only (it is documented as no sandbox, and is not one).

Where bubblewrap cannot run (not installed, macOS, a kernel without user namespaces), code is refused with
`NoSandbox`, whose message names `practice.allow_unsandboxed_code`; with that switch on it runs as before the OS
sandbox: its own process group and folder, rlimits, the audit hook, `unshare --net` where it works.
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

from core.errors import ProjectError

BLOCKED_EXIT = 97  # the exit status of a candidate the audit hook stopped
INSTALL_BWRAP = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap); "
                 "where it cannot run, practice.allow_unsandboxed_code: true runs code without it, at your own risk")


class NoSandbox(ProjectError):
    """No operating-system sandbox here, and running code without one was not allowed."""

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
    disk_mb: int = 64  # all it may write (its working folder's size)
    open_files: int = 64
    processes: int = 16  # threads included (RLIMIT_NPROC)
    output_bytes: int = 1_000_000  # stdout and stderr together
    allow_unsandboxed: bool = False  # practice.allow_unsandboxed_code: run without the OS sandbox where none works


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
def os_sandbox() -> str | None:
    """Why bubblewrap cannot sandbox code here (None: it can), found by running it once."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        done = subprocess.run(_bwrap_argv(bwrap, Path("/"), Limits()) + ["-c", "pass"], capture_output=True,
                              timeout=30, preexec_fn=_limit(Limits()))
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap did not start ({e})"
    if done.returncode != 0:
        return f"bubblewrap cannot create its namespaces here: {done.stderr.decode(errors='replace').strip()[:300]}"
    return None


def _interpreter() -> Path:
    """The base interpreter (not a virtual environment's link to it): the standard library is all code gets."""
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))


def _bwrap_argv(bwrap: str, program: Path, limits: Limits) -> list[str]:
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--clearenv",
            "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"]
    for top in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    prefix = Path(sys.base_prefix).resolve()
    if not str(prefix).startswith("/usr/"):
        argv += ["--ro-bind", str(prefix), str(prefix)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--size", str(limits.disk_mb << 20),
             "--tmpfs", "/work", "--ro-bind", str(program), "/program", "--chdir", "/work",
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work", "--setenv", "TMPDIR", "/work",
             "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONIOENCODING", "utf-8", "--"]
    return argv + [str(_interpreter()), "-I", "-B", "-S"]


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
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    return apply


def _processes(limits: Limits):
    """RLIMIT_NPROC counts the processes of the real user, which inside bubblewrap's user namespace is the
    daemon's: so it is set on the sandbox's first process, by the shell bubblewrap runs, not on ours."""
    return ["/bin/sh", "-c", f'ulimit -u {limits.processes} 2>/dev/null; exec "$@"', "sh"]


def run_python(source: str, *, stdin: str | None = None, limits: Limits = Limits()) -> Run:
    """Run `source` as a Python program in the sandbox, `stdin` as its input; never raises for what the code does
    (NoSandbox where no OS sandbox works and `limits.allow_unsandboxed` is off)."""
    why = os_sandbox()
    if why is not None and not limits.allow_unsandboxed:
        raise NoSandbox(f"code is not run without an operating-system sandbox: {why}; {INSTALL_BWRAP}")
    folder = Path(tempfile.mkdtemp(prefix="sandbox-"))
    try:
        (folder / "candidate.py").write_text(source, encoding="utf-8")
        (folder / "prelude.py").write_text(PRELUDE.replace('"candidate.py"', repr(
            "/program/candidate.py" if why is None else "candidate.py")), encoding="utf-8")
        if why is None:
            folder.chmod(0o755)  # read by the sandbox's unprivileged user
            argv = [*_bwrap_argv(shutil.which("bwrap"), folder, limits), "/program/prelude.py"]
            argv = [*argv[:argv.index("--") + 1], *_processes(limits), *argv[argv.index("--") + 1:]]
        else:
            argv = [sys.executable, "-I", "-B", "prelude.py"]
            if isolated_network():
                argv = [shutil.which("unshare"), *_NET_FLAGS, *argv]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "TMPDIR": str(folder), "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8"}
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_limit(limits))
        return _collect(proc, stdin, limits, started, wrapped=why is None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _collect(proc: subprocess.Popen, stdin: str | None, limits: Limits, started: float, *, wrapped: bool) -> Run:
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
    if wrapped and code is not None and code > 128:  # bubblewrap exits 128 + N for a program killed by signal N
        code = -(code - 128)
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
