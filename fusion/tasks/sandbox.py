"""Run untrusted Python snippets (LLM-written code plus its tests) in a throw-away subprocess.

What one run does
-----------------
* A fresh temporary directory is made for the run; the program is written there as ``prog.py`` and a
  subdirectory ``work`` of it is the child's working directory, ``HOME`` and ``TMPDIR``. All of it is deleted
  afterwards.
* The child is ``python -I -S -B -X utf8 -c <runner>``: isolated mode (no user site, no ``PYTHON*``
  variables), no ``site`` (so only the standard library is importable), no ``.pyc`` writing. Its environment
  is rebuilt from scratch (no proxies, no tokens, ``HOME``/``TMPDIR`` = its own directory).
* The runner first lowers its own resource limits (``resource.setrlimit``; done inside the child rather
  than in a ``preexec_fn`` because ``preexec_fn`` is unsafe with the thread pool of :func:`run_many`):
  ``RLIMIT_AS`` (address space = ``memory_mb``), ``RLIMIT_CPU`` (about ``timeout_s``), ``RLIMIT_FSIZE``
  (largest file it may write, which also caps stdout/stderr) and ``RLIMIT_CORE`` = 0. ``RLIMIT_NPROC`` is
  *not* set: it counts every process of the user on the machine (so it would make parallel runs and the
  parent's own work flaky) and it is ignored for root; process creation is refused by the audit hook instead.
* It then installs a ``sys.addaudithook`` guard and only then compiles and executes the program. The guard
  raises ``PermissionError`` (and records the event in a status file the parent reads) on: socket
  ``connect``/``bind``/``sendto``/``sendmsg``, name resolution, ``urllib``/``http.client``/ftp/smtp/... opens;
  ``subprocess``, ``os.system``, ``os.exec*``, ``os.fork``, ``os.forkpty``, ``os.posix_spawn``, ``os.spawn*``,
  ``pty.spawn``, killing other processes; importing ``ctypes``/``_ctypes`` and
  calling ``_posixsubprocess.fork_exec`` (replaced by a refusing stub); ``open`` for
  writing and ``os.remove``/``rename``/``replace``/``mkdir``/``rmdir``/``chmod``/``chown``/``utime``/
  ``truncate``/``link``/``symlink``/``mkfifo``/``mknod``/xattr changes, ``shutil`` copy/move/rmtree targets and
  ``sqlite3.connect`` on any path (symlinks resolved) outside the run's directory. A run in which the guard
  fired is reported as ``"blocked"`` even if the program caught the exception.
* Where it works on this machine (probed once, cached; see :func:`isolation`), the child runs inside a new,
  empty network namespace (``unshare -n`` as root, else ``unshare -rn``), so even native code has no network,
  and, when the parent is root, as uid/gid 65534 with no groups and ``no_new_privs`` (``setpriv``), so that
  it cannot write files that root owns even past the audit hook. ``FUSION_SANDBOX_NETNS=0`` and
  ``FUSION_SANDBOX_DROP_PRIVILEGES=0`` switch these off.
* A wall-clock timeout kills the child's whole process group (it runs in its own session).
* "passed" means the program ran to its end: the runner records that only after ``exec`` returned, so a
  program that exits early (``sys.exit(0)``, ``os._exit(0)``) is "failed", not "passed".

What it does not guarantee
--------------------------
This is a guard against *accidents and sloppy model output* (a stray ``os.remove``, an infinite loop, a huge
allocation, a network call), not a security boundary against hostile code. Audit hooks are a CPython
debugging facility: code can read the runner's frames, and any native extension or interpreter bug can get
around them. Reading files is allowed everywhere (the standard library must import). Without a network
namespace (``unshare`` unavailable), network isolation rests on the audit hook alone; without the uid switch
(parent not root), the child has the parent's own file permissions. The number of files
written inside the run's directory is not limited, only each file's size. For hostile code use a container or
VM boundary (gVisor, Firecracker, nsjail) around the whole scorer.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATUSES = ("passed", "failed", "timeout", "memory", "blocked", "error")

TAIL_CHARS = 4000  # how much of stdout/stderr a result keeps
FILE_LIMIT_BYTES = 16 * 1024 * 1024  # RLIMIT_FSIZE: largest file (stdout and stderr included) a run may write

# The child's entry point (a real module, linted and tested; run as a ``-c`` string, see sandbox_child.py).
_RUNNER = (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")


@dataclass(frozen=True)
class SandboxResult:
    """What one run produced. ``status`` is one of :data:`STATUSES`; ``passed`` iff it is ``"passed"``."""

    passed: bool
    status: str
    stdout: str
    stderr: str
    duration_s: float
    returncode: int | None = None
    detail: str = ""


NOBODY_UID = 65534


@dataclass(frozen=True)
class Isolation:
    """How runs are wrapped on this machine: a command prefix, and what it gives."""

    prefix: tuple[str, ...] = ()
    network_namespace: bool = False
    unprivileged_uid: int | None = None  # set when a root parent drops the child to this uid


_isolation_lock = threading.Lock()
_isolation_cache: dict[tuple[str, str], Isolation] = {}


def isolation() -> Isolation:
    """The OS-level isolation runs get here, probed once per process (cached).

    As root: an empty network namespace (``unshare -n``) and the child switched to uid/gid 65534 ("nobody",
    no supplementary groups, ``no_new_privs``) by ``setpriv``, so that even past the audit hook it cannot
    write what root owns. Not root: ``unshare -rn`` (a user plus network namespace) where the kernel allows
    it. Each part is used only if a probe run succeeds. ``FUSION_SANDBOX_NETNS=0`` and
    ``FUSION_SANDBOX_DROP_PRIVILEGES=0`` switch the parts off.
    """
    key = (os.environ.get("FUSION_SANDBOX_NETNS", "1"), os.environ.get("FUSION_SANDBOX_DROP_PRIVILEGES", "1"))
    with _isolation_lock:
        if key not in _isolation_cache:
            _isolation_cache[key] = _probe_isolation(netns=key[0] != "0", drop=key[1] != "0")
        return _isolation_cache[key]


def _probe_isolation(*, netns: bool, drop: bool) -> Isolation:
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    root = os.geteuid() == 0
    drop_cmd = (
        (setpriv, f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}", "--clear-groups", "--no-new-privs", "--")
        if setpriv and root and drop
        else ()
    )
    candidates: list[Isolation] = []
    if netns and unshare and root and drop_cmd:
        candidates.append(Isolation((unshare, "-n", *drop_cmd), True, NOBODY_UID))
    if drop_cmd:
        candidates.append(Isolation(drop_cmd, False, NOBODY_UID))
    if netns and unshare:
        candidates.append(Isolation((unshare, "-n") if root else (unshare, "-rn"), True, None))
    for cand in candidates:
        if _probe(cand):
            log.info(
                "sandbox: network namespace %s, unprivileged uid %s (%s)",
                "yes" if cand.network_namespace else "no", cand.unprivileged_uid, " ".join(cand.prefix),
            )  # fmt: skip
            return cand
    log.info("sandbox: no OS-level isolation available; the audit hook and resource limits only")
    return Isolation()


def _probe(cand: Isolation) -> bool:
    with tempfile.TemporaryDirectory(prefix="fusion-sandbox-probe-") as tmp:
        if cand.unprivileged_uid is not None:
            os.chmod(tmp, 0o711)
        try:
            r = subprocess.run(
                [*cand.prefix, sys.executable, "-I", "-S", "-c", "import os; os.getcwd()"],
                cwd=tmp, capture_output=True, timeout=20,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return False
    return r.returncode == 0


def _tail(path: Path, limit: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * limit))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")[-limit:]


def _clean_env(home: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONHASHSEED": "0",
    }


def run_python(
    code: str, *, timeout_s: float = 10, memory_mb: int = 512, module_name: str = "__main__"
) -> SandboxResult:
    """Run ``code`` as a Python program in a fresh sandbox (see the module docstring) and classify the outcome.

    ``timeout_s`` is wall-clock (the CPU limit is set just above it); ``memory_mb`` caps the address space
    (0 leaves it unlimited). ``module_name`` is the program's ``__name__``: scorers pass something other than
    ``"__main__"`` so that a response's ``if __name__ == "__main__":`` demo block does not run (as in the
    HumanEval harness). Never raises for anything the program does.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    root = Path(tempfile.mkdtemp(prefix="fusion-sandbox-"))
    start = time.monotonic()
    try:
        work = root / "work"
        work.mkdir()
        (root / "prog.py").write_text(code, encoding="utf-8")
        status_path = root / "status"
        status_path.write_bytes(b"")
        iso = isolation()
        if (
            iso.unprivileged_uid is not None
        ):  # the child may traverse root, read prog.py, write work and status
            os.chmod(root, 0o711)
            os.chmod(root / "prog.py", 0o644)
            for path in (work, status_path):
                os.chown(path, iso.unprivileged_uid, iso.unprivileged_uid)
        cpu_s = int(math.ceil(timeout_s)) + 1
        cmd = [
            *iso.prefix,
            sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", _RUNNER,
            str(work), str(status_path), str(memory_mb * 1024 * 1024), str(cpu_s), str(FILE_LIMIT_BYTES),
            module_name,
        ]  # fmt: skip
        timed_out = False
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            try:
                proc = subprocess.Popen(
                    cmd, cwd=work, env=_clean_env(str(work)), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True, close_fds=True,
                )  # fmt: skip
            except OSError as exc:
                return SandboxResult(
                    False, "error", "", "", time.monotonic() - start, None, f"cannot start: {exc}"
                )
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                rc = proc.wait()
        duration = time.monotonic() - start
        status_lines = status_path.read_text(encoding="utf-8", errors="replace").splitlines()
        stdout, stderr = _tail(root / "stdout"), _tail(root / "stderr")
        status, detail = _classify(rc, timed_out, status_lines, stderr)
        return SandboxResult(status == "passed", status, stdout, stderr, duration, rc, detail)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _classify(rc: int, timed_out: bool, lines: list[str], stderr: str) -> tuple[str, str]:
    blocked = [ln[len("blocked ") :] for ln in lines if ln.startswith("blocked ")]
    if timed_out:
        return "timeout", "wall-clock limit reached"
    if blocked:
        return "blocked", blocked[0]
    if "memory" in lines or stderr.rstrip().endswith("MemoryError"):
        return "memory", "MemoryError (address-space limit)"
    if rc in (-signal.SIGXCPU, -signal.SIGKILL) and "start" in lines:
        return "timeout", "CPU-time limit reached"
    if "start" not in lines:
        return "error", f"the sandbox runner did not start (exit {rc}): {stderr[-300:]}"
    if rc == 0 and "ok" in lines:
        return "passed", ""
    if rc < 0:
        return "error", f"killed by signal {-rc}"
    exits = [ln for ln in lines if ln.startswith("exit ")]
    if exits:
        return "failed", f"program called sys.exit ({exits[0][5:]}) before its end"
    if rc == 0:
        return "failed", "program exited before its end"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
    return "failed", last[:300]


def run_many(
    codes: Iterable[str],
    *,
    workers: int | None = None,
    timeout_s: float = 10,
    memory_mb: int = 512,
    module_name: str = "__main__",
) -> list[SandboxResult]:
    """:func:`run_python` over many programs with a thread pool of ``workers`` subprocess runs; results in order."""
    codes = list(codes)
    if not codes:
        return []
    n = workers or min(len(codes), os.cpu_count() or 1)
    n = max(1, min(n, len(codes)))
    isolation()  # probe once before the threads start
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sandbox") as pool:
        return list(
            pool.map(
                lambda c: run_python(c, timeout_s=timeout_s, memory_mb=memory_mb, module_name=module_name),
                codes,
            )
        )
