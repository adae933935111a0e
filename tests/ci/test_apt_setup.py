"""The apt branch of .ci/setup.sh, run against stub dpkg / apt-get / id / sudo first on PATH.

CI machines already have the packages, so without these stubs the install branch would never run in CI
(it once exited 127 as root: `$SUDO DEBIAN_FRONTEND=... apt-get` with SUDO empty).
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run_apt(tmp_path: Path, *, uid: int, installed: set[str]) -> tuple[subprocess.CompletedProcess, Path]:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "apt.sh", repo / ".ci" / "apt.sh")
    shutil.copy(REPO / ".ci" / "apt-packages.txt", repo / ".ci" / "apt-packages.txt")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls.log"
    installed_list = " ".join(sorted(installed))
    _stub(stubs, "dpkg", f'for p in {installed_list}; do [ "$2" = "$p" ] && exit 0; done; exit 1\n')
    _stub(stubs, "apt-get", f'echo "apt-get DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-unset}} $*" >> {log}\n')
    _stub(stubs, "id", f'[ "$1" = "-u" ] && echo {uid} || /usr/bin/id "$@"\n')
    _stub(stubs, "sudo", f'echo "sudo $1" >> {log}; exec "$@"\n')
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(["bash", str(repo / ".ci" / "apt.sh")], env=env, capture_output=True, text=True, timeout=60)
    return result, log


def _packages() -> list[str]:
    lines = (REPO / ".ci" / "apt-packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_root_installs_missing_packages_without_sudo(tmp_path: Path) -> None:
    result, log = _run_apt(tmp_path, uid=0, installed=set())
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert not any(call.startswith("sudo") for call in calls)
    install = [call for call in calls if " install " in call]
    assert len(install) == 1 and "DEBIAN_FRONTEND=noninteractive" in install[0]
    assert install[0].split()[-len(_packages()) :] == _packages()


def test_non_root_goes_through_sudo(tmp_path: Path) -> None:
    result, log = _run_apt(tmp_path, uid=1000, installed={"xvfb"})
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls.count("sudo apt-get") == 1 and calls.count("sudo env") == 1
    install = [call for call in calls if call.startswith("apt-get") and " install " in call]
    assert "xvfb" not in install[0].split() and "xauth" in install[0].split()


def test_nothing_missing_runs_no_apt(tmp_path: Path) -> None:
    result, log = _run_apt(tmp_path, uid=0, installed=set(_packages()))
    assert result.returncode == 0, result.stderr
    assert not log.exists()
