"""The code sandbox: limits, the audit-hook guard and the outcome classification."""

from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

import pytest

from fusion.tasks.sandbox import STATUSES, isolation, run_many, run_python


@pytest.fixture(params=["os-isolation", "hook-only"])
def layers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Security tests run twice: with whatever OS isolation this machine offers, and with the audit hook alone."""
    if request.param == "hook-only":
        monkeypatch.setenv("FUSION_SANDBOX_NETNS", "0")
        monkeypatch.setenv("FUSION_SANDBOX_DROP_PRIVILEGES", "0")
        assert isolation().prefix == ()
    return request.param


def test_passing_snippet_passes():
    r = run_python("x = sum(range(10))\nassert x == 45\nprint('done', x)")
    assert r.status == "passed" and r.passed
    assert "done 45" in r.stdout


def test_failing_assert_fails():
    r = run_python("assert 1 + 1 == 3, 'arithmetic'")
    assert r.status == "failed" and not r.passed
    assert "AssertionError" in r.stderr


def test_early_exit_is_not_a_pass():
    # "passed" means the program ran to its end, not that the exit status was 0
    assert run_python("import sys\nsys.exit(0)\nassert False").status == "failed"
    assert run_python("import os\nos._exit(0)\nassert False").status == "failed"


def test_syntax_error_fails():
    r = run_python("def f(:\n    pass")
    assert r.status == "failed" and "SyntaxError" in r.stderr


def test_infinite_loop_times_out():
    start = time.monotonic()
    r = run_python("while True:\n    pass", timeout_s=1.5)
    elapsed = time.monotonic() - start
    assert r.status == "timeout"
    assert elapsed < 30  # killed, not left running: a generous bound that a loaded machine does not break


def test_sleeping_program_times_out():
    r = run_python("import time\ntime.sleep(60)", timeout_s=1)
    assert r.status == "timeout" and r.duration_s < 30  # far below the program's own 60 s


def test_memory_bomb_is_reported_as_memory():
    r = run_python("block = bytearray(4 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert r.status == "memory"
    assert "allocated" not in r.stdout


def test_growing_memory_is_reported_as_memory():
    r = run_python(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))", memory_mb=256, timeout_s=5
    )
    assert r.status == "memory"


def test_socket_connect_to_localhost_is_blocked(layers: str):
    # a real listener: without the guard the connection would succeed
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        code = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\nprint('connected')"
        r = run_python(code)
        assert r.status == "blocked", r
        assert "socket.connect" in r.detail
        assert "connected" not in r.stdout
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


def test_urllib_to_external_host_is_blocked(layers: str):
    r = run_python("import urllib.request\nurllib.request.urlopen('http://example.com/', timeout=2)")
    assert r.status == "blocked"


def test_guard_reports_blocked_even_when_the_program_catches_it():
    code = textwrap.dedent(
        """
        import socket
        try:
            socket.getaddrinfo('example.com', 80)
        except OSError:
            pass
        print('carried on')
        """
    )
    r = run_python(code)
    assert r.status == "blocked" and "getaddrinfo" in r.detail
    assert "carried on" in r.stdout


def test_writing_outside_the_sandbox_is_blocked(tmp_path: Path, layers: str):
    target = tmp_path / "outside.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('leak')")
    assert r.status == "blocked"
    assert not target.exists()


def test_removing_renaming_and_mkdir_outside_are_blocked(tmp_path: Path, layers: str):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for code in (
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.mkdir({str(tmp_path / 'newdir')!r})",
        f"import os\nos.chmod({str(victim)!r}, 0o777)",
    ):
        r = run_python(code)
        assert r.status == "blocked", (code, r)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "newdir").exists()


def test_symlink_escape_is_blocked(tmp_path: Path):
    target = tmp_path / "via_link.txt"
    r = run_python(f"import os\nos.symlink({str(target)!r}, 'link')\nopen('link', 'w').write('x')")
    assert r.status == "blocked"
    assert not target.exists()


def test_writing_inside_its_directory_is_allowed():
    code = textwrap.dedent(
        """
        import os, shutil, tempfile
        with open('data.txt', 'w') as f:
            f.write('hello')
        os.makedirs('sub/deeper')
        os.replace('data.txt', 'sub/deeper/data.txt')
        assert open('sub/deeper/data.txt').read() == 'hello'
        fd, path = tempfile.mkstemp()
        os.close(fd)
        os.remove(path)
        shutil.rmtree('sub')
        assert not os.path.exists('sub')
        print(os.getcwd())
        """
    )
    r = run_python(code)
    assert r.status == "passed", r
    workdir = Path(r.stdout.strip())
    assert not workdir.exists()  # the run's directory is removed afterwards


def test_processes_and_ctypes_are_blocked(tmp_path: Path, layers: str):
    marker = tmp_path / "ran.txt"
    for code in (
        f"import os\nos.system('touch {marker}')",
        f"import subprocess\nsubprocess.run(['touch', {str(marker)!r}])",
        "import os\nos.fork()",
        "import ctypes",
    ):
        r = run_python(code)
        assert r.status == "blocked", (code, r)
    assert not marker.exists()


def test_environment_is_stripped(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("FUSION_SECRET_TOKEN", "s3cret")
    code = textwrap.dedent(
        """
        import os
        assert 'HTTPS_PROXY' not in os.environ and 'FUSION_SECRET_TOKEN' not in os.environ
        assert os.environ['HOME'] == os.getcwd()
        """
    )
    assert run_python(code).status == "passed"


def test_stdlib_only_and_module_name():
    assert run_python("import numpy").status == "failed"  # -S: no site-packages
    r = run_python("print(__name__)", module_name="__candidate__")
    assert r.stdout.strip() == "__candidate__"


def test_run_many_keeps_order_and_classifies_each():
    codes = [f"print({i})" for i in range(6)] + [
        "assert False",
        "import socket\nsocket.gethostbyname('x.org')",
    ]
    results = run_many(codes, workers=2)
    assert [r.stdout.strip() for r in results[:6]] == [str(i) for i in range(6)]
    assert [r.status for r in results] == ["passed"] * 6 + ["failed", "blocked"]
    assert all(r.status in STATUSES for r in results)


def test_os_isolation_when_available():
    iso = isolation()
    if iso.prefix == ():
        pytest.skip("no unshare/setpriv isolation on this machine")
    code = "import os, socket\nprint(os.getuid(), sorted(n for _, n in socket.if_nameindex()))"
    r = run_python(code)
    assert r.status == "passed", r
    uid, interfaces = r.stdout.split(" ", 1)
    if iso.unprivileged_uid is not None:
        assert int(uid) == iso.unprivileged_uid
    if iso.network_namespace:
        assert interfaces.strip() == "['lo']"  # a fresh namespace has only loopback
