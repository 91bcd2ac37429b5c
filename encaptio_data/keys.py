"""Keys: the master key, per-subject data keys (envelope encryption) and named HMAC keys.

Embedded default: key files under ``<data dir>/keys`` (directory 0700, files 0600), never
in the database, so a database backup holds no key that crypto-shredding must destroy.
A subject's data key is random, stored only wrapped by the master key (AES-256-GCM with
the subject id as associated data, so a wrapped key cannot be swapped onto another
subject); destroying the wrapped key makes every copy of that subject's ciphertext
unreadable, backups included. The cryptography package does the cryptography; this
module only decides where keys live.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encaptio_data.errors import EncaptioError, IntegrityError, InvalidInputError

KEY_BYTES = 32
NONCE_BYTES = 12
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
ENVELOPE_MAGIC = b"ENC1"


class KeyDestroyedError(EncaptioError):
    """The subject's data key was destroyed (erasure): the data is unreadable by design."""


def _write_private(path: Path, data: bytes) -> None:
    """Atomic, owner-only: a crash leaves the old key or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return ENVELOPE_MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data or None)


def decrypt(key: bytes, ciphertext: bytes, associated_data: bytes = b"", *, what: str = "ciphertext") -> bytes:
    if not ciphertext.startswith(ENVELOPE_MAGIC) or len(ciphertext) < len(ENVELOPE_MAGIC) + NONCE_BYTES + 16:
        raise IntegrityError(f"{what} is not an encrypted envelope")
    nonce = ciphertext[len(ENVELOPE_MAGIC):len(ENVELOPE_MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext[len(ENVELOPE_MAGIC) + NONCE_BYTES:], associated_data or None)
    except InvalidTag:
        raise IntegrityError(f"{what} failed authentication: tampered, or encrypted under another key") from None


class KeyStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- master key -------------------------------------------------------------------
    @property
    def _master_path(self) -> Path:
        return self.root / "master.key"

    def master_key(self) -> bytes:
        if not self._master_path.exists():
            _write_private(self._master_path, secrets.token_bytes(KEY_BYTES))
        key = self._master_path.read_bytes()
        if len(key) != KEY_BYTES:
            raise IntegrityError(f"{self._master_path} is not a {KEY_BYTES}-byte key")
        return key

    def master_key_id(self) -> str:
        return hashlib.sha256(b"key-id:" + self.master_key()).hexdigest()[:16]

    # -- named secrets (HMAC keys) ------------------------------------------------------
    def secret(self, name: str) -> bytes:
        """A named random secret (HMAC keys for subject references, tokens, receipts)."""
        if not _NAME.fullmatch(name):
            raise InvalidInputError(f"invalid key name {name!r}")
        path = self.root / "secrets" / f"{name}.key"
        if not path.exists():
            _write_private(path, secrets.token_bytes(KEY_BYTES))
        return path.read_bytes()

    def hmac_hex(self, name: str, message: str) -> str:
        return hmac.new(self.secret(name), message.encode(), hashlib.sha256).hexdigest()

    # -- per-subject data keys ----------------------------------------------------------
    def _subject_path(self, subject_id: str) -> Path:
        digest = hashlib.sha256(subject_id.encode()).hexdigest()
        return self.root / "subjects" / digest[:2] / f"{digest}.json"

    def data_key(self, subject_id: str, *, create: bool = True) -> bytes:
        path = self._subject_path(subject_id)
        if not path.exists():
            if not create or self.is_destroyed(subject_id):
                raise KeyDestroyedError(f"the data key of subject {subject_id} does not exist (erased)")
            key = secrets.token_bytes(KEY_BYTES)
            wrapped = encrypt(self.master_key(), key, subject_id.encode())
            record = {"subject": subject_id, "master_key_id": self.master_key_id(), "wrapped": wrapped.hex()}
            _write_private(path, json.dumps(record).encode())
            return key
        record = json.loads(path.read_bytes())
        return decrypt(self.master_key(), bytes.fromhex(record["wrapped"]), subject_id.encode(),
                       what=f"data key of subject {subject_id}")

    def destroy_data_key(self, subject_id: str) -> bool:
        """Crypto-shred: remove the only copy of the wrapped key, leaving a tombstone (no key material)."""
        path = self._subject_path(subject_id)
        tombstone = path.with_suffix(".destroyed")
        existed = path.exists()
        _write_private(tombstone, b"destroyed\n")
        if existed:
            path.unlink()
        return existed

    def is_destroyed(self, subject_id: str) -> bool:
        return self._subject_path(subject_id).with_suffix(".destroyed").exists()

    def encrypt_for(self, subject_id: str, plaintext: bytes) -> bytes:
        return encrypt(self.data_key(subject_id), plaintext, subject_id.encode())

    def decrypt_for(self, subject_id: str, ciphertext: bytes, *, what: str = "ciphertext") -> bytes:
        return decrypt(self.data_key(subject_id, create=False), ciphertext, subject_id.encode(), what=what)
