"""Scripts forked from the warm interpreter (daemon/runner.py ForkServer, scripts/_lib/zygote.py)
start as `python script.py ARGS` would, share nothing between runs, and a fork server that dies
loses no run: the run in flight ends, the next starts as a new interpreter."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.runner import ScriptOutcome, SubprocessRunner
from daemon.worker import script_base_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")

ROOT = Path(__file__).resolve().parents[2]

# What a script can see of how it was started; it also leaves a mark in a module every script
# imports (preloaded by the fork server), which a later run must not find.
SHOW = """
import json, os, sys
import scripts._lib.output as output
seen = {
    "argv": sys.argv,
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "session_leader": os.getsid(0) == os.getpid(),
    "group_leader": os.getpgrp() == os.getpid(),
    "stdin": sys.stdin.read(),
    "ppid": os.getppid(),
    "name": __name__,
    "file": __file__,
    "mark_from_before": getattr(output, "MARK", None),
    "unbuffered": sys.stdout.write_through,
    "comm": open("/proc/self/comm").read().strip(),
}
output.MARK = os.getpid()
print(json.dumps({"event": "result", "seen": seen}), flush=True)
print("on stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


async def _run(runner: SubprocessRunner, argv: list[str], env: dict[str, str], **kw: Any) -> ScriptOutcome:
    async def ignore(event: dict[str, Any]) -> None:
        pass

    return await runner.run(
        argv,
        env=env,
        timeout=kw.get("timeout", 60),
        on_event=ignore,
        cancel=kw.get("cancel", asyncio.Event()),
        label="clip_s01",
    )


def _env() -> dict[str, str]:
    return {**script_base_env(), "PYTHONPATH": str(ROOT), "PIPELINE_TRACE": "d/nature:p1:clip_s01"}


async def test_a_forked_script_starts_as_a_new_interpreter_would_and_shares_nothing_with_the_last(
    tmp_path: Path,
) -> None:
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    env = _env()
    envs = ({**env, "FIRST_ONLY": "1"}, env)
    seen: dict[bool, list[dict[str, Any]]] = {}
    for forked in (True, False):
        runner = SubprocessRunner(tmp_path / f"run-{forked}", fork_server=forked)
        try:
            # The first run's own variable (the fork server starts with that run's environment).
            outcomes = [await _run(runner, [sys.executable, str(script), code, "two words"], run_env)
                        for code, run_env in zip(("0", "3"), envs, strict=True)]  # fmt: skip
        finally:
            await runner.close()
        assert [o.exit_code for o in outcomes] == [0, 3]
        assert all(o.stderr_tail == ["on stderr"] for o in outcomes)
        seen[forked] = [o.result["seen"] for o in outcomes if o.result]
    fresh, warm = seen[False], seen[True]
    # The fresh interpreter's parent is this process; the forked one's is the fork server.
    assert {s["ppid"] for s in fresh} == {os.getpid()}
    assert len({s["ppid"] for s in warm}) == 1 and warm[0]["ppid"] != os.getpid()
    for one, run_env in (*zip(fresh, envs, strict=True), *zip(warm, envs, strict=True)):
        assert one["argv"][0] == str(script) and one["argv"][2] == "two words"
        assert one["path0"] == str(tmp_path)
        assert one["cwd"] == os.getcwd()
        assert one["session_leader"] and one["group_leader"]
        assert one["stdin"] == ""
        assert (one["name"], one["file"]) == ("__main__", str(script))
        assert one["mark_from_before"] is None  # the first run's mark is not in the second
        # The run's environment only, with the daemon's names for itself (the parent: whoever
        # started the script, which it dies with).
        assert set(one["env"]) == {*run_env, "NVD_PARENT_PID", "NVD_DAEMON_PID"}
        assert one["env"]["NVD_DAEMON_PID"] == str(os.getpid())
        assert one["env"]["NVD_PARENT_PID"] == str(one["ppid"])
        assert {k: one["env"][k] for k in run_env} == run_env
    assert [s["unbuffered"] for s in warm] == [s["unbuffered"] for s in fresh]
    # ps, top and pgrep name a forked script by its own name, not the fork server's.
    assert {s["comm"] for s in warm} == {"show"}


async def test_a_run_whose_interpreter_settings_differ_starts_a_new_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    runner = SubprocessRunner(tmp_path / "run", fork_server=True)
    try:
        first = await _run(runner, [sys.executable, str(script), "0"], _env())
        other = await _run(runner, [sys.executable, str(script), "0"], {**_env(), "PYTHONUNBUFFERED": "1"})
    finally:
        await runner.close()
    assert first.result and other.result
    assert first.result["seen"]["ppid"] != os.getpid()
    assert other.result["seen"]["ppid"] == os.getpid()
    assert other.result["seen"]["unbuffered"] is True


async def test_a_script_changed_under_a_running_fork_server_runs_on_the_changed_helpers(
    tmp_path: Path,
) -> None:
    # The project's scripts, copied: the fork server preloads the copy's helpers.
    project = tmp_path / "project"
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "version.py"
    script.write_text(
        "import json, os\n"
        "import scripts._lib.output as output\n"
        'print(json.dumps({"event": "result", "version": getattr(output, "VERSION", None),'
        ' "ppid": os.getppid()}), flush=True)\n'
    )
    env = {**_env(), "PYTHONPATH": str(project)}
    runner = SubprocessRunner(tmp_path / "run", fork_server=True)
    try:
        before = await _run(runner, [sys.executable, str(script)], env)
        # An upgrade in place: a preloaded helper changes while the daemon runs.
        helper = project / "scripts" / "_lib" / "output.py"
        helper.write_text(helper.read_text() + "\nVERSION = 2\n")
        later = time.time() + 2
        os.utime(helper, (later, later))
        after = [await _run(runner, [sys.executable, str(script)], env) for _ in range(2)]
    finally:
        await runner.close()
    assert before.result is not None and before.result["version"] is None
    assert before.result["ppid"] != os.getpid()  # forked
    # Each run after the change sees the new helper (started afresh by the fork server's child).
    assert [a.result["version"] if a.result else "failed" for a in after] == [2, 2]


SLEEPER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print('{"event": "started", "child": %d}' % child.pid, flush=True)
time.sleep(300)
"""


async def test_a_timeout_kills_a_forked_scripts_whole_group(tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    runner = SubprocessRunner(tmp_path / "run", fork_server=True)
    children: list[int] = []

    async def note(event: dict[str, Any]) -> None:
        children.append(int(event["child"]))

    try:
        started = time.monotonic()
        outcome = await runner.run(
            [sys.executable, str(script)], env=_env(), timeout=2, on_event=note,
            cancel=asyncio.Event(), label="clip_s01",
        )  # fmt: skip
    finally:
        await runner.close()
    assert outcome.timed_out and outcome.exit_code == -signal.SIGKILL
    assert time.monotonic() - started < 10
    assert len(children) == 1
    await _until_gone(children[0])


async def test_the_fork_server_gone_mid_run_ends_that_run_and_the_next_starts_fresh(tmp_path: Path) -> None:
    sleeper, show = tmp_path / "sleeper.py", tmp_path / "show.py"
    sleeper.write_text(SLEEPER)
    show.write_text(SHOW)
    runner = SubprocessRunner(tmp_path / "run", fork_server=True)
    children: list[int] = []
    began = asyncio.Event()

    async def note(event: dict[str, Any]) -> None:
        children.append(int(event["child"]))
        began.set()

    try:
        running = asyncio.create_task(
            runner.run(
                [sys.executable, str(sleeper)],
                env=_env(),
                timeout=120,
                on_event=note,
                cancel=asyncio.Event(),
                label="clip_s01",
            )
        )
        await asyncio.wait_for(began.wait(), 30)
        assert runner.fork is not None and runner.fork.proc is not None
        os.kill(runner.fork.proc.pid, signal.SIGKILL)
        ended = await asyncio.wait_for(running, 20)
        assert ended.exit_code is not None and ended.exit_code != 0 and ended.result is None
        await _until_gone(children[0])
        after = await _run(runner, [sys.executable, str(show), "0"], _env())
    finally:
        await runner.close()
    assert after.exit_code == 0 and after.result is not None
    assert after.result["seen"]["ppid"] == os.getpid()  # started as a new interpreter


async def _until_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        await asyncio.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"process {pid} outlived its script's group")


def test_the_fork_server_names_only_modules_the_scripts_have() -> None:
    """Its preload list is kept with the scripts: each name imports (a renamed helper would quietly
    cost every run its start-up again)."""
    import importlib

    from scripts._lib import zygote

    for name in zygote.PRELOAD:
        importlib.import_module(name)
