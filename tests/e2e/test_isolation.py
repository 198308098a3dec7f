"""Issue 21: test servers never read or write the user's files.

A ``dump.rdb`` with keys is put where a careless harness would find it (the
repository root and the directory pytest runs from); servers the harness starts
must come up empty, save into their own private directory, and leave that file
byte-for-byte unchanged.  The planted file is written by a real server's SAVE and
removed (or the user's original put back) whatever happens.
"""

import contextlib
import glob
import os
import pathlib
import shutil
import tempfile

from conftest import REPO


@contextlib.contextmanager
def planted_snapshot(source, places):
    """Copies ``source`` to ``<place>/dump.rdb`` for every place, moving any existing file
    aside first; on exit removes the copies and puts the originals back, even on failure."""
    backups = []
    planted = []
    try:
        for place in dict.fromkeys(str(p) for p in places):
            target = os.path.join(place, "dump.rdb")
            if os.path.exists(target):
                fd, backup = tempfile.mkstemp(prefix="dump.rdb.user-", dir=place)
                os.close(fd)
                os.replace(target, backup)
                backups.append((backup, target))
            shutil.copyfile(source, target)
            planted.append(target)
        yield planted
    finally:
        for target in planted:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
        for backup, target in backups:
            os.replace(backup, target)


def stray_temp_files(places):
    return [f for p in places for f in glob.glob(os.path.join(str(p), "dump.rdb.tmp-*"))]


def test_servers_ignore_a_snapshot_in_the_checkout(damselfly, tmp_path):
    # A real snapshot with keys, written by a real server into a directory of its own.
    source_dir = tmp_path / "source"
    source_dir.mkdir()
    writer = damselfly("--proactor_threads=2", f"--dir={source_dir}")
    c = writer.client()
    for i in range(25):
        c.set(f"user:key:{i}", f"value-{i}")
    assert c.save() is True
    c.close()
    source = source_dir / "dump.rdb"
    assert source.exists()
    places = [REPO, pathlib.Path.cwd()]
    before_temps = set(stray_temp_files(places))

    with planted_snapshot(source, places) as planted:
        original = {p: pathlib.Path(p).read_bytes() for p in planted}

        srv = damselfly("--proactor_threads=2")
        r = srv.client()
        assert r.dbsize() == 0, "a test server loaded the snapshot from the checkout"
        r.set("test:key", "x")
        assert r.save() is True
        r.close()

        for p in planted:
            assert pathlib.Path(p).read_bytes() == original[p], f"{p} was overwritten"
        # The test server saved where it runs: its private directory, not the checkout.
        assert os.path.exists(os.path.join(srv.workdir, "dump.rdb"))
        assert os.path.realpath(srv.workdir) not in (os.path.realpath(str(p)) for p in places)
        assert set(stray_temp_files(places)) == before_temps

        # redis-server started by the harness is isolated the same way.
        from conftest import Factory
        f = Factory(str(tmp_path))
        try:
            real = f.start_redis()
            rc = real.client()
            assert rc.dbsize() == 0, "redis-server loaded the snapshot from the checkout"
            assert rc.config_get("dir")["dir"] == os.path.realpath(real.workdir)
            rc.close()
        finally:
            f.close()
        for p in planted:
            assert pathlib.Path(p).read_bytes() == original[p]
    for p in planted:
        assert not os.path.exists(p), "the planted snapshot was not removed"


def dead_pid():
    """A pid no process has: a child that already exited and was reaped."""
    import subprocess
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_snapshot_temp_files_are_removed_at_startup(damselfly, tmp_path, only_damselfly):
    # A server killed in the middle of a save leaves dump.rdb.tmp-<its pid>; the next
    # start-up in that dir removes it. A live pid's file is another server's save in progress.
    d = tmp_path / "data"
    d.mkdir()
    stale = d / f"dump.rdb.tmp-{dead_pid()}"
    live = d / f"dump.rdb.tmp-{os.getpid()}"
    unrelated = d / "dump.rdb.tmp-notapid"
    for f in (stale, live, unrelated):
        f.write_bytes(b"REDIS0010 half a snapshot")
    srv = damselfly("--proactor_threads=2", f"--dir={d}")
    assert srv.client().dbsize() == 0
    assert not stale.exists()
    assert live.exists() and unrelated.exists()
