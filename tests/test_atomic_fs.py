"""The filesystem Ray Tune writes the sweep's state through (pipeline.sweep.atomic_fs): a file
is whole or absent, even when the writer is killed mid-file, and Tune's own copy routine works
through it."""

from __future__ import annotations

import fnmatch
import os
import pickle
import signal
import subprocess
import sys

import pyarrow.fs as pafs

from pipeline.sweep.atomic_fs import AtomicLocalHandler, storage_filesystem
from tests.conftest import ROOT

WRITER = """
import sys, time
from pipeline.sweep.atomic_fs import storage_filesystem
fs = storage_filesystem(sys.argv[1])
with fs.open_output_stream(sys.argv[1]) as f:
    f.write(b"x" * 1000)
    f.flush()
    print("half", flush=True)
    time.sleep(60)  # killed here
    f.write(b"y" * 1000)
"""


def test_a_writer_killed_mid_file_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "experiment_state-2026.json"
    target.write_bytes(b'{"trial_data": []}')
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "half"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b'{"trial_data": []}'  # not truncated, not half-written
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    assert not fnmatch.filter(leftovers, "experiment_state-*.json")  # Tune never reads them


def test_ray_copy_routine_publishes_whole_files(tmp_path):
    from ray.train._internal.storage import _pyarrow_fs_copy_files

    src = tmp_path / "staging"
    (src / "sub").mkdir(parents=True)
    (src / "experiment_state-a.json").write_bytes(b"1" * 5_000_000)
    (src / "sub" / "searcher-state-a.pkl").write_bytes(b"2" * 10)
    dest = tmp_path / "storage"
    fs = storage_filesystem(str(dest))
    fs.create_dir(str(dest))
    _pyarrow_fs_copy_files(str(src), str(dest), destination_filesystem=fs)
    assert (dest / "experiment_state-a.json").read_bytes() == b"1" * 5_000_000
    assert (dest / "sub" / "searcher-state-a.pkl").read_bytes() == b"2" * 10
    assert not [p for p in dest.rglob(".tmp-*")]
    # listing, reading and deleting go to the local filesystem
    infos = fs.get_file_info(pafs.FileSelector(str(dest), recursive=True))
    assert {i.base_name for i in infos} == {"experiment_state-a.json", "sub", "searcher-state-a.pkl"}
    with fs.open_input_stream(str(dest / "sub" / "searcher-state-a.pkl")) as f:
        assert f.read() == b"2" * 10
    fs.delete_dir(str(dest / "sub"))
    assert not (dest / "sub").exists()


def test_the_filesystem_pickles_for_ray_workers_and_only_for_local_paths():
    fs = storage_filesystem("/some/local/path")
    again = pickle.loads(pickle.dumps(fs))
    assert again.type_name == "py::infovae-atomic-local" and AtomicLocalHandler() == AtomicLocalHandler()
    assert storage_filesystem("s3://bucket/results") is None


def test_a_checkpoint_is_deleted_only_once_a_later_snapshot_is_published(tmp_path):
    """Tune deletes a trial's previous checkpoint while the snapshot naming the next one is
    still uploading: the deletion waits for a snapshot whose upload began after it."""
    from pipeline.sweep.atomic_fs import flush_deferred, prune_stale_checkpoints

    fs = storage_filesystem(str(tmp_path))
    old, new = tmp_path / "trial" / "checkpoint_000001", tmp_path / "trial" / "checkpoint_000002"
    for d in (old, new):
        d.mkdir(parents=True)
        (d / "checkpoint.pt").write_bytes(b"w")
    in_flight = fs.open_output_stream(str(tmp_path / "experiment_state-a.json"))  # began before
    fs.delete_dir(str(old))
    assert old.is_dir()  # deferred
    in_flight.write(b"{}")
    in_flight.close()
    assert old.is_dir()  # that snapshot may still name it
    with fs.open_output_stream(str(tmp_path / "experiment_state-a.json")) as later:
        later.write(b"{}")
    assert not old.exists() and new.is_dir()
    other = tmp_path / "trial" / "not_a_checkpoint"
    other.mkdir()
    fs.delete_dir(str(other))  # anything else goes at once
    assert not other.exists()
    fs.delete_dir(str(new))
    flush_deferred()
    assert not new.exists()
    # deletions a killed sweep never carried out are pruned after the next fit
    for n in (3, 4, 5):
        (tmp_path / "trial" / f"checkpoint_00000{n}").mkdir()
    assert prune_stale_checkpoints(tmp_path / "trial", tmp_path / "trial" / "checkpoint_000005") == 2
    assert [d.name for d in (tmp_path / "trial").iterdir()] == ["checkpoint_000005"]
