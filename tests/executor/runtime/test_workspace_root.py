"""Where bundles are unpacked when the data dir is somewhere a sandbox uid cannot enter."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from executor.runtime.workspace_root import workspace_root

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker drops to other uids")


@root_only
def test_a_private_data_dir_keeps_its_workspaces_when_bubblewrap_binds_them(
    tmp_path: Path,
) -> None:
    private = tmp_path / "home3"
    private.mkdir(mode=0o700)
    assert workspace_root(private / "data", bound=True) == (private / "data" / "workspaces")


def test_an_enterable_data_dir_keeps_its_workspaces() -> None:
    open_dir = Path(tempfile.mkdtemp(prefix="computebus-open-"))  # pytest's tmp_path is not
    try:
        os.chmod(open_dir, 0o755)
        assert workspace_root(open_dir, bound=False) == open_dir / "workspaces"
        assert (open_dir / "workspaces").is_dir()
    finally:
        shutil.rmtree(open_dir)


@root_only
def test_a_data_dir_under_a_private_parent_unpacks_into_a_temp_dir_of_its_own(
    tmp_path: Path,
) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    chosen = workspace_root(private / "data", bound=False)
    again = workspace_root(private / "data", bound=False)
    try:
        assert not chosen.is_relative_to(private)
        info = os.lstat(chosen)
        assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o711  # enter, not list
        assert again != chosen  # one per run, under a name no one could make first
    finally:
        shutil.rmtree(chosen)
        shutil.rmtree(again)
