"""Master-key rotation: the old master is retired only after every re-wrapped key was read back.

tests/test_keys.py covers the re-wrap itself and a crash half-way through; this adds what the
issue asks of retirement: where the old key goes, that it is the old key, and that a record that
cannot be verified stops the rotation with both masters (and every data key) still usable.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from encaptio_data.errors import IntegrityError
from encaptio_data.keys import KeyStore


def test_old_master_is_retired_after_a_verified_rewrap(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    data = {s: keys.encrypt_for(s, f"data of {s}".encode()) for s in ("a", "b")}
    old = keys.master_key()
    report = keys.rotate_master()
    retired = tmp_path / "keys" / report["retired_to"]
    assert retired.read_bytes() == old and keys.master_key() != old
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert not (tmp_path / "keys" / "master.next.key").exists()
    assert report["verified"] == 2
    records = [json.loads(p.read_bytes()) for p in (tmp_path / "keys" / "subjects").glob("*/*.json")]
    assert {r["master_key_id"] for r in records} == {report["new_master_key_id"]}
    for subject, ciphertext in data.items():
        assert keys.decrypt_for(subject, ciphertext) == f"data of {subject}".encode()


def test_a_record_that_fails_verification_keeps_the_old_master_in_force(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeyStore(tmp_path / "keys")
    data = {s: keys.encrypt_for(s, s.encode()) for s in ("a", "b", "c")}
    old_id = keys.master_key_id()
    import encaptio_data.keys as module

    real_write = module._write_private

    def corrupt_one(path: Path, payload: bytes) -> None:
        # The re-wrapped record of one subject is written damaged (a bad disk, a bug): the
        # verification pass must catch it before the old master is retired.
        if path.suffix == ".json" and json.loads(payload)["subject"] == "b":
            record = json.loads(payload)
            record["wrapped"] = record["wrapped"][:-2] + ("00" if record["wrapped"][-2:] != "00" else "11")
            payload = json.dumps(record).encode()
        real_write(path, payload)

    with monkeypatch.context() as patch:
        patch.setattr(module, "_write_private", corrupt_one)
        with pytest.raises(IntegrityError, match="re-wrapped data key of subject b"):
            keys.rotate_master()
    assert keys.master_key_id() == old_id, "the old master is still the one in force"
    assert not (tmp_path / "keys" / "retired").exists()
    assert (tmp_path / "keys" / "master.next.key").exists()
    assert keys.decrypt_for("a", data["a"]) == b"a" and keys.decrypt_for("c", data["c"]) == b"c"
