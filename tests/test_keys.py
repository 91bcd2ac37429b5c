from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from encaptio_data.errors import IntegrityError
from encaptio_data.keys import KeyDestroyedError, KeyStore


def test_envelope_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    secret = keys.encrypt_for("alice", b"alice's diary")
    assert b"diary" not in secret
    assert keys.decrypt_for("alice", secret) == b"alice's diary"
    flipped = secret[:-1] + bytes([secret[-1] ^ 1])
    with pytest.raises(IntegrityError, match="failed authentication"):
        keys.decrypt_for("alice", flipped)
    keys.data_key("bob")
    with pytest.raises(IntegrityError):
        keys.decrypt_for("bob", secret)  # another subject's key (and associated data)


def test_key_files_are_private(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    keys.data_key("alice")
    keys.secret("receipt-signing")
    for path in (tmp_path / "keys").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_crypto_shredding(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    secret = keys.encrypt_for("alice", b"backup copy")
    assert keys.destroy_data_key("alice")
    with pytest.raises(KeyDestroyedError):
        keys.decrypt_for("alice", secret)
    with pytest.raises(KeyDestroyedError):
        keys.data_key("alice")  # no silent re-creation after an erasure


def test_rotation_rewraps_without_touching_data(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    secrets_ = {s: keys.encrypt_for(s, f"data of {s}".encode()) for s in ("a", "b", "c")}
    old_id = keys.master_key_id()
    report = keys.rotate_master()
    assert report["rewrapped"] == 3 and report["new_master_key_id"] != old_id == report["old_master_key_id"]
    assert keys.master_key_id() == report["new_master_key_id"]
    for subject, ciphertext in secrets_.items():
        assert keys.decrypt_for(subject, ciphertext) == f"data of {subject}".encode()


def test_interrupted_rotation_keeps_every_key_readable_and_finishes_on_rerun(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeyStore(tmp_path / "keys")
    secrets_ = {s: keys.encrypt_for(s, s.encode()) for s in ("a", "b", "c", "d")}
    import encaptio_data.keys as module

    real_write, writes = module._write_private, []

    def crash_after_two(path: Path, data: bytes) -> None:
        if path.suffix == ".json":
            writes.append(path)
            if len(writes) == 3:
                raise KeyboardInterrupt("killed mid-rotation")
        real_write(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(module, "_write_private", crash_after_two)
        with pytest.raises(KeyboardInterrupt):
            keys.rotate_master()
    ids = {json.loads(p.read_bytes())["master_key_id"] for p in (tmp_path / "keys" / "subjects").glob("*/*.json")}
    assert len(ids) == 2, "half the records under each master"
    for subject, ciphertext in secrets_.items():
        assert keys.decrypt_for(subject, ciphertext) == subject.encode()
    keys.rotate_master()
    for subject, ciphertext in secrets_.items():
        assert keys.decrypt_for(subject, ciphertext) == subject.encode()


def _sealed(keys: KeyStore, subject: str, data: bytes, chunk_bytes: int) -> bytes:
    import io

    with keys.seal_stream(subject, io.BytesIO(data), chunk_bytes=chunk_bytes) as stream:
        return stream.read()


def _open(keys: KeyStore, sealed: bytes, what: str = "test stream") -> bytes:
    import io

    from encaptio_data.keys import SEALED_MAGIC

    assert sealed.startswith(SEALED_MAGIC)
    _, stream = keys.open_sealed(io.BytesIO(sealed[len(SEALED_MAGIC):]), what=what)
    with stream:
        return stream.read()


def test_sealed_stream_round_trips_in_chunks_and_refuses_any_damage(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    data = b"alice's diary, page after page. " * 1000  # 32 000 bytes: eight 4 KiB chunks
    sealed = _sealed(keys, "alice", data, 4096)
    assert b"diary" not in sealed and _open(keys, sealed) == data
    assert _open(keys, _sealed(keys, "alice", b"", 4096)) == b""
    header_end = sealed.index(b"}") + 1
    frame = 5 + 12 + 4096 + 16 + 4  # flag, length, magic + nonce + chunk + tag
    damaged = {
        "flipped": sealed[:-1] + bytes([sealed[-1] ^ 1]),
        "truncated": sealed[:header_end + 3 * frame],  # the final chunk is missing
        "extended": sealed + b"\0",
        "reordered": sealed[:header_end] + sealed[header_end + frame:header_end + 2 * frame]
        + sealed[header_end:header_end + frame] + sealed[header_end + 2 * frame:],
        "another subject": sealed.replace(b'"alice"', b'"bobby"'),
    }
    keys.data_key("bobby")
    for name, bad in damaged.items():
        with pytest.raises(IntegrityError, match=name):
            _open(keys, bad, what=name)


def test_a_sealed_stream_is_unreadable_once_its_key_is_destroyed(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    sealed = _sealed(keys, "alice", b"a backup copy of alice's file", 1024)
    keys.destroy_data_key("alice")
    with pytest.raises(KeyDestroyedError, match="destroyed"):
        _open(keys, sealed)
    with pytest.raises(KeyDestroyedError, match="does not exist in this key store"):
        _open(KeyStore(tmp_path / "other-instance"), _sealed(KeyStore(tmp_path / "third"), "carol", b"x", 1024))


def test_a_key_destroyed_by_another_process_stops_opening_here_after_the_recheck(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from encaptio_data import keys as keys_module

    clock = [1000.0]
    monkeypatch.setattr(keys_module.time, "monotonic", lambda: clock[0])
    here = KeyStore(tmp_path)
    sealed = here.encrypt_for("subject-1", b"ada@example.com")
    assert here.decrypt_for("subject-1", sealed) == b"ada@example.com"
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from encaptio_data.keys import "
                    "KeyStore; assert KeyStore(Path(sys.argv[1])).destroy_data_key('subject-1')", str(tmp_path)],
                   check=True)
    clock[0] += keys_module.KEY_RECHECK_SECONDS + 0.01
    with pytest.raises(KeyDestroyedError, match="destroyed"):
        here.decrypt_for("subject-1", sealed)


def test_a_key_destroyed_in_this_process_is_gone_for_every_key_store_at_once(tmp_path: Path) -> None:
    reader, eraser = KeyStore(tmp_path), KeyStore(tmp_path)
    sealed = reader.encrypt_for("subject-2", b"x")
    assert eraser.destroy_data_key("subject-2")
    with pytest.raises(KeyDestroyedError):
        reader.decrypt_for("subject-2", sealed)
