"""Starting a handler process: the runtime's command, wrapped in the sandbox, in its cgroup."""

from __future__ import annotations

import asyncio
from pathlib import Path

from executor.instance import HandlerProcess
from executor.runtimes.commands import bootstrap_for, handler_argv, handler_env
from executor.sandbox import LaunchPlan, Limits, Sandbox, interpreter_root


def launch_plan(
    sandbox: Sandbox,
    *,
    runtime: str,
    handler_file: str,
    export: str,
    workspace: Path,
    env_vars: list[str],
    limits: Limits,
) -> LaunchPlan:
    """How every process of one revision starts (computed once per revision)."""
    python = runtime == "python"
    return sandbox.plan(
        lambda bootstrap, inside: handler_argv(
            runtime, bootstrap, inside, handler_file, export, limits.memory_mb
        ),
        bootstrap=bootstrap_for(runtime),
        workspace=workspace,
        interpreter_root=interpreter_root() if python else None,
        env=handler_env(env_vars, "/tmp"),
        limits=limits,
        python=python,
    )


async def launch(
    sandbox: Sandbox, plan: LaunchPlan, *, log_cap: int, max_reply_bytes: int
) -> HandlerProcess:
    """Start one process of ``plan`` in a fresh cgroup (removed again if the start fails)."""
    cgroup = sandbox.new_cgroup(plan.limits)
    try:
        return await HandlerProcess.spawn(
            plan.argv,
            env=plan.env,
            cwd=plan.cwd,
            log_cap=log_cap,
            preexec=sandbox.preexec(plan, cgroup),
            cgroup=cgroup,
            max_reply_bytes=max_reply_bytes,
        )
    except BaseException:
        if cgroup is not None:  # the child may have entered it before the failure
            await asyncio.to_thread(cgroup.kill_all)
            cgroup.remove()
        raise
