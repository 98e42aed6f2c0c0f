"""A read-only run folder and a full disk, made real without privileges: the CLI runs inside a
new user + mount namespace (`unshare -r -m`), where a read-only bind mount or a tiny tmpfs is
allowed. (chmod cannot do it: the tests run as root, which writes through a 0555 folder.)

Each case: a clear `error:` line, exit code 2, no traceback, no partial file left (writers use a
temporary name, then rename) and every previous file byte-identical; after the fault is gone the
re-run succeeds."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from support.reliability import CLI, QUICKSTART, cli_env, figure

from steper_bench.build import build
from steper_bench.recipe import load_recipe

SETS = ["source.train_limit=10", "source.test_limit=3"]


def _namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    p = subprocess.run(["unshare", "-r", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt || exit 1"],
                       capture_output=True, timeout=20)
    return p.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(), reason="needs unprivileged user+mount namespaces (unshare -r -m)")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _build_cmd(runs: Path) -> str:
    args = [*CLI, "build", str(QUICKSTART), "--quiet", "--set", f"runs_dir={runs}", *[
        x for s in SETS for x in ("--set", s)]]
    return " ".join(shlex.quote(a) for a in args)


def _in_namespace(script: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-r", "-m", "sh", "-ec", script], capture_output=True, text=True,
                          env=cli_env(home), timeout=180)


def _assert_clear_failure(p: subprocess.CompletedProcess, needle: str) -> None:
    out = p.stderr + p.stdout
    assert p.returncode != 0, out[-4000:]
    assert p.returncode == 2, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert "error:" in p.stderr and needle in p.stderr, p.stderr[-2000:]


@pytest.fixture()
def built(tmp_path):
    runs = tmp_path / "runs"
    s = build(load_recipe(QUICKSTART, [f"runs_dir={runs}", *SETS]), progress=False, log=lambda m: None)
    return runs, Path(s.run_dir)


def test_read_only_run_folder_is_a_clear_error_and_changes_nothing(built, tmp_path):
    runs, run_dir = built
    before = _snapshot(run_dir)
    q = shlex.quote(str(run_dir))
    p = _in_namespace(f"mount --bind {q} {q}; mount -o remount,ro,bind {q} {q}; exec {_build_cmd(runs)}", tmp_path)
    assert p.returncode != 0 and _snapshot(run_dir) == before  # nothing half-written, nothing removed
    figure("read-only run folder (ro bind mount)", faults=1, completed=1)
    _assert_clear_failure(p, "Read-only file system")


def test_full_disk_is_a_clear_error_leaves_no_partial_file_and_recovers(built, tmp_path):
    runs, run_dir = built
    before = _snapshot(run_dir)
    used_kib = sum(len(b) for b in before.values()) // 1024 + 64 * len(before)  # + a page or so per file
    small = tmp_path / "small"
    small.mkdir()
    qs, qr, qrun = (shlex.quote(str(x)) for x in (small, runs, run_dir))
    # A tmpfs just big enough for the run folder, then filled to the last byte: every write fails.
    script = (f"mount -t tmpfs -o size={used_kib + 256}k tmpfs {qs}; cp -a {qr}/. {qs}/; "
              f"dd if=/dev/zero of={qs}/filler bs=4k 2>/dev/null || true; "
              f"df -k {qs} >&2; "
              f"set +e; {_build_cmd(small)}; rc=$?; set -e; "
              f"rm {qs}/filler; mkdir -p {shlex.quote(str(tmp_path / 'after'))}; "
              f"cp -a {qs}/{qrun.split('/')[-1]} {shlex.quote(str(tmp_path / 'after'))}/; exit $rc")
    p = _in_namespace(script, tmp_path)
    assert p.returncode != 0, p.stderr[-3000:]
    after = _snapshot(tmp_path / "after" / run_dir.name)
    # No partial file: nothing temporary or hidden that the first build did not leave (its .build.lock).
    assert not [k for k in after if (k.endswith(".tmp") or "/." in f"/{k}") and k not in before], sorted(after)
    # Data files unchanged; the logs and the lock file (it names the last build's pid) may differ.
    unchanged = {k for k in before if k not in ("build.log", ".build.lock")}
    assert {k: after.get(k) for k in unchanged} == {k: before[k] for k in unchanged}
    assert set(after) - set(before) <= {"logs/build.log"}  # nothing new but the CLI's own log of other libraries
    figure("full disk (filled tmpfs)", faults=1, completed=1)
    # Space back (the folder as the fault left it, on a roomy disk): the re-run rewrites the same dataset.
    again = build(load_recipe(QUICKSTART, [f"runs_dir={tmp_path / 'after'}", *SETS]), progress=False, log=lambda m: None)
    assert again.requests == 0
    redone = _snapshot(tmp_path / "after" / run_dir.name)
    assert {k: v for k, v in redone.items() if k.endswith(".parquet")} == \
        {k: v for k, v in before.items() if k.endswith(".parquet")}
    _assert_clear_failure(p, "No space left on device")
