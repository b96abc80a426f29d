"""Starting a handler process: the runtime's command, wrapped in the sandbox, in its own cgroup
and under its own uid; assigning it to a revision (its first frame); and the start-up check that
each runtime can start that way at all."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from executor.runtime.commands import base_env, handler_argv
from executor.runtime.interpreters import find_interpreters
from executor.runtime.limits import Limits
from executor.runtime.process import HandlerProcess, ProcessGone
from executor.runtime.sandbox import LEVELS, LaunchPlan, Sandbox, SandboxUnusable
from executor.runtime.sandbox_users import SandboxUsers
from executor.runtime.workspace_root import workspace_root
from executor.settings import Settings
from schemas.handler_protocol import Assignment, AssignRequest, request_encoder

_CHECK_TIMEOUT_S = 30.0
_CHECK_UNREADABLE = 3  # the bootstraps' --check exit code for a directory they cannot read
# For the bootstrap to start and answer its assignment; where a caller waits for it, the
# invocation's own timeout is the bound (this one is for a process nobody waits for).
_ASSIGN_TIMEOUT_S = 60.0
_SETTINGS = {
    "python": ("COMPUTEBUS_PYTHON", "/usr/bin/python3"),
    "nodejs": ("COMPUTEBUS_NODE", "/usr/bin/node"),
}


@dataclass(frozen=True)
class Handler:
    """What a process needs to serve one revision, besides its workspace: the handler's file
    (relative to the workspace) and export, and the function's env_vars."""

    file: str
    export: str
    env_vars: list[str]


def launch_plan(sandbox: Sandbox, *, runtime: str, workspace: Path, limits: Limits) -> LaunchPlan:
    """How a process of ``runtime`` with ``limits`` starts, ``workspace`` bound read-only (a
    revision's, or a spare's own empty directory)."""
    return sandbox.plan(
        runtime,
        lambda exe, bootstraps, inside: handler_argv(runtime, exe, bootstraps, limits.memory_mb),
        workspace=workspace,
        env=base_env("/tmp"),
        limits=limits,
    )


async def launch(
    sandbox: Sandbox,
    plan: LaunchPlan,
    *,
    log_cap: int,
    max_reply_bytes: int,
    kind: type[HandlerProcess] = HandlerProcess,
    in_thread: bool = False,
) -> HandlerProcess:
    """Start one process of ``plan`` with a fresh cgroup and uid (given back if it fails); it
    serves nothing until it is assigned. ``in_thread``: see ``HandlerProcess.spawn``."""
    confinement = sandbox.confine(plan.limits)
    try:
        spawn = sandbox.spawn(plan, confinement)
        return await kind.spawn(
            spawn.argv,
            env=plan.env,
            cwd=plan.cwd,
            log_cap=log_cap,
            confinement=confinement,
            preexec=spawn.preexec,
            setup_fds=spawn.setup_fds,
            max_reply_bytes=max_reply_bytes,
            in_thread=in_thread,
        )
    except BaseException:
        await asyncio.to_thread(confinement.kill_all)  # the child may have entered its cgroup
        confinement.release()
        raise


async def assign(process: HandlerProcess, workspace: str, handler: Handler) -> None:
    """Make ``process`` one revision's (``workspace`` as the process sees it); once only. A
    process that does not take it, or whose waiter gives up, is killed."""
    body = AssignRequest(Assignment(workspace, handler.file, handler.export, handler.env_vars))
    try:
        reply, _ = await process.invoke(request_encoder.encode(body), _ASSIGN_TIMEOUT_S)
        if not reply.ok:
            raise ProcessGone("the handler process refused its assignment")
    except BaseException:
        await process.kill()
        raise


async def launch_assigned(
    sandbox: Sandbox, plan: LaunchPlan, handler: Handler, *, log_cap: int, max_reply_bytes: int
) -> HandlerProcess:
    """A new process of ``plan``, assigned to ``handler`` in the plan's own workspace."""
    process = await launch(sandbox, plan, log_cap=log_cap, max_reply_bytes=max_reply_bytes)
    await assign(process, plan.workspace, handler)
    return process


def open_sandbox(settings: Settings, name: str) -> tuple[Sandbox, Path]:
    """The worker's sandbox, checked (every installed runtime starts in it, else it raises),
    and where it unpacks bundles (absolute: a handler starts with its workspace as its cwd)."""
    interpreters = find_interpreters(settings.python, settings.node)
    sandbox = Sandbox.detect(
        name,
        interpreters,
        max_level=LEVELS[0] if settings.isolation == "auto" else settings.isolation,
        users=SandboxUsers.for_this_process(settings.sandbox_uids),
    )
    try:
        # bubblewrap binds the workspace wherever it is; otherwise the sandbox uid must reach it
        workspaces = workspace_root(settings.data_dir, bound="bwrap" in sandbox.level)
        check_runtimes(sandbox, workspaces)
    except BaseException:
        sandbox.close()
        raise
    return sandbox, workspaces


def check_runtimes(sandbox: Sandbox, workspaces: Path) -> None:
    """Start each runtime's bootstrap in the sandbox, as a handler would run, with the
    workspace directory in view; raise ``SandboxUnusable`` naming what to change."""
    for runtime in sandbox.interpreters:
        plan = sandbox.plan(
            runtime,
            functools.partial(_check_argv, runtime),
            workspace=workspaces,
            env=base_env("/tmp"),
            limits=Limits(256),
        )
        confinement = sandbox.confine(plan.limits)
        try:
            spawn = sandbox.spawn(plan, confinement)
            try:
                done = subprocess.run(
                    spawn.argv,
                    capture_output=True,
                    env=plan.env,
                    cwd=plan.cwd,
                    pass_fds=spawn.setup_fds,
                    preexec_fn=spawn.preexec,
                    timeout=_CHECK_TIMEOUT_S,
                    check=False,
                )
            finally:
                for fd in spawn.setup_fds:
                    os.close(fd)
            code = done.returncode
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            problem = lines[-1] if lines else f"exit code {code}"
        except (OSError, subprocess.SubprocessError) as exc:
            code, problem = -1, str(exc)
        finally:
            confinement.kill_all()
            confinement.release()
        if code != 0:
            raise SandboxUnusable(
                _refusal(sandbox, runtime, confinement.uid.uid, workspaces, code, problem)
            )


def _refusal(
    sandbox: Sandbox, runtime: str, uid: int, workspaces: Path, code: int, problem: str
) -> str:
    """What stops ``runtime`` from starting, and what the operator can change."""
    where = f"{runtime} handlers cannot start in the {sandbox.level} sandbox as uid {uid}"
    if code == _CHECK_UNREADABLE:
        fix = (
            f"the data dir must be one that uid can enter ({problem}): use one every user can "
            "enter (--data-dir or COMPUTEBUS_DATA_DIR, e.g. /var/lib/computebus)"
        )
    else:
        setting, example = _SETTINGS[runtime]
        exe = sandbox.interpreters[runtime].executable
        fix = (
            f"its interpreter {exe} does not start ({problem}): set {setting} to one every "
            f"user can run (e.g. {example})"
        )
    if sandbox.bwrap is None:
        fix += (
            ", or let bubblewrap bind it (COMPUTEBUS_ISOLATION=auto)"
            if sandbox.capped
            else ", or install bubblewrap, which binds it for the sandbox"
        )
    return f"{where}: {fix}"


def _check_argv(runtime: str, exe: str, bootstraps: str, workspace: str) -> list[str]:
    """The bootstrap's ``--check WORKSPACE``: it starts, can enter the directory, and exits."""
    return [*handler_argv(runtime, exe, bootstraps, 256), "--check", workspace]
