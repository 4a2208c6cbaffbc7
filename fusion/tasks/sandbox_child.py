"""The sandbox's child program: the first code the sandboxed interpreter runs, before the untrusted program.

:mod:`fusion.tasks.sandbox` runs this file's source as ``python -I -S -B -X utf8 -c <source> WORKDIR STATUS MEM_BYTES
CPU_S FSIZE MODULE_NAME`` (as a ``-c`` string, so that a child dropped to another uid needs no read access to the
package). It lowers its own resource limits, installs an audit hook that refuses network, process, and
out-of-directory write events (recording each in the status file), then compiles and runs ``../prog.py`` and
records how it ended. Only the standard library is available here (``-S``); nothing is imported from ``fusion``.
"""

import os
import resource
import sys


def _fusion_sandbox_main():
    workdir, status_path = sys.argv[1], sys.argv[2]
    mem_bytes, cpu_s, fsize = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    module_name = sys.argv[6]

    def _lower(which, value):
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else hard))
        except (ValueError, OSError):
            resource.setrlimit(which, (value, hard))

    if mem_bytes > 0:
        _lower(resource.RLIMIT_AS, mem_bytes)
    _lower(resource.RLIMIT_CPU, cpu_s)
    _lower(resource.RLIMIT_FSIZE, fsize)
    _lower(resource.RLIMIT_CORE, 0)

    status_fd = os.open(status_path, os.O_WRONLY | os.O_APPEND)
    with open(os.path.join(workdir, "..", "prog.py"), encoding="utf-8") as f:
        source = f.read()
    os.write(status_fd, b"start\n")  # the runner is set up; what follows is the program's doing

    root = os.path.realpath(workdir)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    state = {"busy": False}
    net = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
           "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo",
           "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect", "poplib.connect",
           "imaplib.open", "nntplib.connect", "telnetlib.Telnet.open", "webbrowser.open"}
    procs = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
             "os.forkpty", "os.startfile", "pty.spawn", "os.killpg"}
    bad_modules = {"ctypes", "_ctypes"}
    # event -> [(index of a path argument, index of its dir_fd argument or None)]
    fs = {"os.remove": [(0, 1)], "os.rmdir": [(0, 1)], "os.mkdir": [(0, 2)], "os.chmod": [(0, 2)],
          "os.chown": [(0, 3)], "os.chflags": [(0, None)], "os.rename": [(0, 2), (1, 3)],
          "os.link": [(0, 2), (1, 3)], "os.symlink": [(1, 2)], "os.truncate": [(0, None)],
          "os.utime": [(0, 3)], "os.mkfifo": [(0, 2)], "os.mknod": [(0, 3)], "os.setxattr": [(0, None)],
          "os.removexattr": [(0, None)], "shutil.rmtree": [(0, 1)], "shutil.copyfile": [(1, None)],
          "shutil.copymode": [(1, None)], "shutil.copystat": [(1, None)], "shutil.copytree": [(1, None)],
          "shutil.move": [(0, None), (1, None)], "shutil.chown": [(0, None)]}

    def resolve(p, dir_fd):
        if isinstance(p, int):
            return os.readlink(f"/proc/self/fd/{p}")
        p = os.fsdecode(p)
        if not os.path.isabs(p):
            if isinstance(dir_fd, int) and dir_fd >= 0:  # AT_FDCWD (negative) and None mean the cwd
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            else:
                base = os.getcwd()
            p = os.path.join(base, p)
        return os.path.realpath(p)

    def inside(p, dir_fd=None):
        try:
            r = resolve(p, dir_fd)
        except Exception:
            return False
        return r == root or r.startswith(root + os.sep) or r == os.devnull

    def deny(event, detail):
        msg = f"blocked {event} {detail}\n"
        os.write(status_fd, msg.encode("utf-8", "replace")[:2000])
        raise PermissionError(f"sandbox: {event} is not allowed ({detail})")

    def guard(event, args):
        if state["busy"]:
            return
        state["busy"] = True
        try:
            if event == "open":
                path, flags = args[0], args[2]
                if isinstance(path, int) or not isinstance(flags, int) or not flags & write_flags:
                    return
                if not inside(path):
                    deny(event, f"write to {path!r}")
            elif event in fs:
                for i, j in fs[event]:
                    if i < len(args) and args[i] is not None:
                        d = args[j] if j is not None and j < len(args) else None
                        if not inside(args[i], d):
                            deny(event, repr(args[i]))
            elif event in net:
                deny(event, repr(args[:2]))
            elif event in procs:
                deny(event, repr(args[:1]))
            elif event == "os.kill":
                if args[0] != os.getpid():
                    deny(event, repr(args[:1]))
            elif event == "import":
                if args[0].split(".")[0] in bad_modules:
                    deny(event, args[0])
            elif event == "sqlite3.connect":
                db = args[0]
                if db not in (":memory:", b":memory:", "") and not inside(db):
                    deny(event, repr(db))
        finally:
            state["busy"] = False

    try:  # its fork_exec raises no audit event of its own: replace it (subprocess stays importable)
        import _posixsubprocess

        def no_fork_exec(*args, **kwargs):
            deny("_posixsubprocess.fork_exec", "")

        _posixsubprocess.fork_exec = no_fork_exec
    except ImportError:
        pass

    sys.argv = ["prog.py"]
    sys.addaudithook(guard)
    glb = {"__name__": module_name, "__file__": "prog.py", "__builtins__": __builtins__}
    try:
        code = compile(source, "prog.py", "exec")
        exec(code, glb)
    except MemoryError:
        os.write(status_fd, b"memory\n")
        sys.stderr.write("MemoryError\n")
        sys.stderr.flush()
        os._exit(3)
    except SystemExit as exc:
        os.write(status_fd, f"exit {exc.code!r}\n".encode())
        sys.stdout.flush()
        os._exit(2)
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os.write(status_fd, b"ok\n")
    os._exit(0)


if __name__ == "__main__":
    _fusion_sandbox_main()
