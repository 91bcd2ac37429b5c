"""PostgreSQL physical backups with pgBackRest, and the clusters they are restored into.

The production profile backs PostgreSQL up with pgBackRest: continuous WAL archiving plus
full and incremental backups, so a restore can stop at any moment (point-in-time recovery)
rather than only at the last dump. Two repositories hold every backup and every WAL
segment: repo1 (primary) and repo2 (the cross-region copy). Both are encrypted by
pgBackRest itself (aes-256-cbc) with a passphrase kept outside the repositories.

How the pieces fit
------------------
* ``PgBackRest`` is one stanza: it writes ``pgbackrest.conf`` and a small wrapper script
  into its config directory and runs every pgBackRest command through that wrapper as the
  cluster's OS owner (pgBackRest must run as the user that owns the data directory).
* The wrapper reads the repository passphrase from the passphrase file at each call and
  hands it to pgBackRest in ``PGBACKREST_REPO{1,2}_CIPHER_PASS``; so the passphrase is in
  exactly one file, never in ``pgbackrest.conf``, never in ``postgresql.auto.conf``, and
  ``archive_command`` / ``restore_command`` (which PostgreSQL runs through /bin/sh) use the
  same wrapper.
* ``Cluster`` starts, stops and inspects a data directory with ``pg_ctl``; scratch restores
  run as a Cluster on a spare loopback port with archiving off, so a restored copy can never
  push WAL into the production repository.
* ``capture_restore_point`` creates a named restore point and, in the same instant, the
  manifest (row count and digest per table) of exactly what a restore to that point holds.
* repo2 is a **replica** of repo1 by default (``repo2_mode="replicate"``): every backup goes to
  repo1 once, and ``replicate_backups`` then mirrors repo1's backup directory (the sets, already
  compressed and encrypted, and ``backup.info``) into repo2, the way S3 cross-region replication
  copies a bucket's objects. WAL is still pushed by ``archive-push`` to both repositories, and
  ``pgbackrest verify --repo=2`` checks the replica as it checks repo1 (the drill restores from
  it). The two repositories share the passphrase, so a copied set decrypts in either.
  ``repo2_mode="backup"`` runs a second full backup from the database into repo2 instead (an
  S3 repo2 without bucket replication); in production with S3 on both sides, put a replication
  rule on repo1's bucket for its ``backup/`` prefix and use ``"backup"`` only without one.

Production S3 repository
-------------------------
pgBackRest before 2.58 speaks only HTTPS to S3 (``scripts/install-pgbackrest`` installs 2.55.1,
Debian 13's package), so the test suite's repo2 is a posix directory (moto serves plain HTTP).
In production repo2 is an S3 bucket in another region; replace the ``repo2-path`` line this
module writes with::

    repo2-type=s3
    repo2-path=/encaptio/<stanza>
    repo2-s3-bucket=<bucket in the second region>
    repo2-s3-region=<that region, e.g. eu-central-1>
    repo2-s3-endpoint=s3.<that region>.amazonaws.com
    repo2-s3-key-type=auto          # instance profile / IRSA credentials; or shared + key/secret
    repo2-s3-uri-style=host
    repo2-storage-verify-tls=y
    repo2-cipher-type=aes-256-cbc   # passphrase: PGBACKREST_REPO2_CIPHER_PASS from the wrapper
    repo2-retention-full-type=time
    repo2-retention-full=30
    repo2-bundle=y                  # fewer, larger objects: cheaper S3 requests
    repo2-block=y

The bucket needs versioning and an Object Lock (governance, 30 days) or at least a policy
that denies ``s3:DeleteObject`` to everyone but the backup role, so a compromised database
host cannot erase its own backups. Put a lifecycle rule on the bucket to abort incomplete
multipart uploads after 7 days. With a second *posix* repo (as in tests) the same retention
and cipher lines apply.

Privileges: backups run as the cluster's OS owner; the manifest needs a role that may lock
every application table in SHARE mode and call ``pg_create_restore_point`` and
``pg_switch_wal`` (superuser by default: ``GRANT EXECUTE`` them to the backup role instead).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from encaptio_data.errors import EncaptioError, IntegrityError, SettingsError
from encaptio_data.keys import KeyStore

log = logging.getLogger(__name__)

DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGBACKREST = "pgbackrest"
RETENTION_FULL_DAYS = 30
# Row digests are rendered with these settings on both sides of a comparison: a timestamp
# printed in another time zone or date style would look like a changed row.
_RENDER_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
                    "extra_float_digits": "3", "bytea_output": "hex"}
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")
# How a manifest hashes each row (recorded per table; absent means ROW_TEXT): see table_digests.
ROW_HASH = "record-hash/1"
ROW_TEXT = "row-text/1"
_ROW_HASHES = {ROW_HASH: "hash_record_extended(t, 0)", ROW_TEXT: "hashtextextended(t::text, 0)"}
REPO2_MODES = ("replicate", "backup")


class PgBackRestError(EncaptioError):
    """A pgBackRest or pg_ctl command failed; the message carries its own first error line."""


class PgBackRestSettings(BaseSettings):
    """Where the stanza lives, from ENCAPTIO_PGBACKREST_* variables (read when called, not at import)."""

    model_config = SettingsConfigDict(env_prefix="ENCAPTIO_PGBACKREST_", extra="ignore", frozen=True)

    stanza: str | None = Field(default=None, description="pgBackRest stanza name, e.g. encaptio.")
    pg_path: Path | None = Field(default=None, description="The cluster's data directory.")
    pg_port: int = 5432
    pg_socket_path: Path | None = Field(default=None, description="Unix socket directory of the cluster.")
    pg_user: str = Field(default="postgres", description="Superuser role pgBackRest connects as.")
    os_user: str = Field(default="postgres", description="OS owner of the data directory; pgBackRest runs as it.")
    config_dir: Path | None = Field(default=None, description="Holds pgbackrest.conf, the wrapper, logs and locks.")
    repo1_path: Path | None = None
    repo2_path: Path | None = None
    passphrase_file: Path | None = Field(default=None, description="Repository passphrase; default a key store secret.")
    pg_bin: Path = DEFAULT_PG_BIN
    process_max: int = 2
    job_retry: int | None = Field(default=None, description="pgBackRest job-retry; 0 fails fast on a local repo.")
    repo2_mode: str = Field(default="replicate", description="replicate: mirror repo1's backups into repo2; "
                                                             "backup: a second backup from the database.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- running commands as the cluster owner -----------------------------------------------------

def _identity(os_user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(os_user)
    except KeyError:
        raise SettingsError(f"ENCAPTIO_PGBACKREST_OS_USER: no OS user {os_user!r} on this host") from None


def run_as(os_user: str, argv: Sequence[str | os.PathLike[str]], *, timeout: float = 3600, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv as os_user: PostgreSQL and pgBackRest refuse to run as root, and only the
    cluster owner may read its data directory."""
    user = _identity(os_user)
    switch = os.geteuid() != user.pw_uid
    if switch and os.geteuid() != 0:
        raise SettingsError(f"pgBackRest and pg_ctl must run as {os_user!r}: run encaptio as root or as {os_user!r}")
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": user.pw_dir, "USER": os_user,
                   "LOGNAME": os_user, "LANG": "C.UTF-8", **(env or {})}
    kwargs: dict[str, Any] = {}
    if switch:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid,
                  "extra_groups": [g.gr_gid for g in grp.getgrall() if os_user in g.gr_mem]}
    started = time.monotonic()
    try:
        result = subprocess.run([os.fspath(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                                env=environment, cwd="/", check=False, **kwargs)
    except subprocess.TimeoutExpired:
        raise PgBackRestError(f"{Path(os.fspath(argv[0])).name} did not finish within {timeout:.0f}s") from None
    log.debug("%s %s: exit %s in %.2fs", Path(os.fspath(argv[0])).name, _verb(argv), result.returncode,
              time.monotonic() - started)
    if check and result.returncode != 0:
        raise PgBackRestError(f"{Path(os.fspath(argv[0])).name} {_verb(argv)} failed "
                              f"(exit {result.returncode}): {_first_error(result)}")
    return result


def _verb(argv: Sequence[str | os.PathLike[str]]) -> str:
    words = [os.fspath(a) for a in argv[1:] if not os.fspath(a).startswith("-")]
    return words[-1] if words else ""


def _first_error(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or "") + "\n" + (result.stdout or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "ERROR" in line or "FATAL" in line or "error:" in line:
            return line
    return lines[-1] if lines else "no output"


def make_owned_dir(path: Path, os_user: str, mode: int = 0o700) -> Path:
    """Create path (and missing parents) owned by os_user, so the cluster owner can use them.

    Directories that already exist are left as they are: chowning a shared parent such as
    /tmp would be a far worse mistake than a permission error.
    """
    user = _identity(os_user)
    missing = []
    probe = Path(path)
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=mode)
        os.chown(directory, user.pw_uid, user.pw_gid)
        os.chmod(directory, mode)
    return Path(path)


def _write_owned(path: Path, text: str, os_user: str, mode: int) -> None:
    user = _identity(os_user)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(temporary, mode)
    os.chown(temporary, user.pw_uid, user.pw_gid)
    os.replace(temporary, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe(path: Path, what: str) -> str:
    # The path ends up inside archive_command, a shell line inside a SQL string literal.
    text = os.fspath(path)
    if not _SAFE_PATH.fullmatch(text):
        raise SettingsError(f"{what} {text!r} may only contain letters, digits and _ . / + -")
    return text


# -- clusters ----------------------------------------------------------------------------------

@dataclass
class Cluster:
    """A PostgreSQL data directory driven with pg_ctl as its OS owner."""

    data_dir: Path
    port: int
    socket_dir: Path
    os_user: str = "postgres"
    pg_bin: Path = DEFAULT_PG_BIN
    log_file: Path | None = None

    @classmethod
    def create(cls, data_dir: Path, *, port: int | None = None, socket_dir: Path | None = None,
               os_user: str = "postgres", pg_bin: Path = DEFAULT_PG_BIN,
               settings: dict[str, str] | None = None) -> Cluster:
        """A throwaway cluster (tests, the benchmark): initdb with page checksums, loopback only.

        Durability is off (no fsync at initdb or at run time): a crash would only lose a cluster
        that is thrown away anyway, and fsync dominates the cost of the many small checkpoints
        backups take. Never use this for a cluster whose data matters.
        """
        data_dir = Path(data_dir)
        make_owned_dir(data_dir.parent, os_user)
        cluster = cls(data_dir=data_dir, port=port or free_port(), socket_dir=Path(socket_dir or data_dir.parent),
                      os_user=os_user, pg_bin=Path(pg_bin), log_file=data_dir.parent / f"{data_dir.name}.log")
        make_owned_dir(cluster.socket_dir, os_user)
        run_as(os_user, [cluster.pg_bin / "initdb", "-D", data_dir, "--data-checksums", "--auth=trust",
                         "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"], timeout=300)
        cluster.configure({**cluster.local_settings(), "fsync": "off", "synchronous_commit": "off",
                           **(settings or {})})
        return cluster

    def local_settings(self) -> dict[str, str]:
        return {"port": str(self.port), "listen_addresses": "127.0.0.1",
                "unix_socket_directories": os.fspath(self.socket_dir)}

    def configure(self, settings: dict[str, str]) -> None:
        """Append settings to postgresql.auto.conf; a later line wins, and ALTER SYSTEM keeps them."""
        path = self.data_dir / "postgresql.auto.conf"
        lines = [f"{name} = '{value.replace(chr(39), chr(39) * 2)}'" for name, value in settings.items()]
        existing = path.read_text() if path.exists() else ""
        _write_owned(path, existing.rstrip("\n") + "\n# encaptio\n" + "\n".join(lines) + "\n", self.os_user, 0o600)

    def start(self, timeout: float = 600) -> None:
        log = self.log_file or self.data_dir.parent / f"{self.data_dir.name}.log"
        self.log_file = log
        if not log.exists():
            _write_owned(log, "", self.os_user, 0o600)
        result = run_as(self.os_user, [self.pg_bin / "pg_ctl", "-D", self.data_dir, "-l", log, "-w", "-t",
                                       str(int(timeout)), "start"], timeout=timeout + 30, check=False)
        if result.returncode != 0:
            raise PgBackRestError(f"PostgreSQL in {self.data_dir} did not start: {self.log_error()}")

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            run_as(self.os_user, [self.pg_bin / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t", "300",
                                  "stop"], timeout=330)

    def is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        result = run_as(self.os_user, [self.pg_bin / "pg_ctl", "-D", self.data_dir, "status"], check=False)
        return result.returncode == 0

    def log_error(self) -> str:
        """The last FATAL/PANIC/ERROR line of the server log, the usual reason a start failed."""
        try:
            lines = (self.log_file.read_text(errors="replace") if self.log_file else "").splitlines()
        except OSError:
            return "no server log"
        for line in reversed(lines):
            if any(level in line for level in ("FATAL:", "PANIC:", "ERROR:")):
                return line.strip()
        return lines[-1].strip() if lines else "no server log"

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def wait_promoted(self, engine: sa.Engine, timeout: float = 600) -> None:
        """Recovery ends with promotion (recovery_target_action=promote); until then writes fail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    if not conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar():
                        return
            except sa.exc.OperationalError:
                if not self.is_running():
                    raise PgBackRestError(f"restored cluster in {self.data_dir} stopped: {self.log_error()}") from None
            time.sleep(0.2)
        raise PgBackRestError(f"restored cluster in {self.data_dir} was still recovering after {timeout:.0f}s")

    def amcheck(self, user: str = "postgres") -> dict[str, Any]:
        """pg_amcheck over every database: heap and B-tree structure, which also reads (and so
        checksum-verifies) every page of every relation."""
        result = run_as(self.os_user, [self.pg_bin / "pg_amcheck", "-h", self.socket_dir, "-p", str(self.port),
                                       "-U", user, "--all", "--install-missing", "--heapallindexed"],
                        timeout=3600, check=False)
        output = (result.stdout + result.stderr).strip()
        return {"passed": result.returncode == 0, "detail": output.splitlines()[:5] if output else []}

    def verify_checksums(self) -> dict[str, Any]:
        """pg_checksums --check needs the cluster stopped: every page of every file, offline."""
        result = run_as(self.os_user, [self.pg_bin / "pg_checksums", "--check", "-D", self.data_dir],
                        timeout=3600, check=False)
        text = result.stdout + result.stderr
        bad = re.search(r"Bad checksums:\s+(\d+)", text)
        blocks = re.search(r"Blocks scanned:\s+(\d+)", text)
        return {"passed": result.returncode == 0 and bad is not None and bad.group(1) == "0",
                "bad_checksums": int(bad.group(1)) if bad else None,
                "blocks_scanned": int(blocks.group(1)) if blocks else None,
                "detail": _first_error(result) if result.returncode else "ok"}

    def remove(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


# -- the stanza --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PgBackRest:
    stanza: str
    pg_path: Path
    repo1_path: Path
    repo2_path: Path
    config_dir: Path
    pg_port: int = 5432
    pg_socket_path: Path | None = None
    pg_user: str = "postgres"
    os_user: str = "postgres"
    passphrase_file: Path | None = None
    pg_bin: Path = DEFAULT_PG_BIN
    process_max: int = 2
    retention_full_days: int = RETENTION_FULL_DAYS
    # pgBackRest retries a failed file after 15 s by default: right for S3, a pointless wait
    # for a checksum mismatch on a local disk.
    job_retry: int | None = None
    repo2_mode: str = "replicate"
    extra_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, **overrides: Any) -> PgBackRest:
        """The stanza configured by ENCAPTIO_PGBACKREST_* (overrides win); one line per missing variable."""
        values = PgBackRestSettings().model_dump() | {k: v for k, v in overrides.items() if v is not None}
        missing = [name for name in ("stanza", "pg_path", "repo1_path", "repo2_path", "config_dir") if not values[name]]
        if missing:
            names = ", ".join(f"ENCAPTIO_PGBACKREST_{name.upper()}" for name in missing)
            raise SettingsError(f"PostgreSQL backups need {names} (see encaptio_data/lifecycle/pgbackrest.py)")
        if values["repo2_mode"] not in REPO2_MODES:
            raise SettingsError(f"ENCAPTIO_PGBACKREST_REPO2_MODE must be one of {', '.join(REPO2_MODES)}, "
                                f"not {values['repo2_mode']!r}")
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in fields})

    # -- files ---------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.config_dir / "pgbackrest.conf"

    @property
    def wrapper(self) -> Path:
        return self.config_dir / "pgbackrest-stanza"

    @property
    def default_passphrase_file(self) -> Path:
        return self.config_dir / "repo.passphrase"

    @property
    def passphrase_path(self) -> Path:
        return self.passphrase_file or self.default_passphrase_file

    def passphrase_id(self) -> str:
        """An id for the repository passphrase (recorded as the backups' key_id), not the passphrase."""
        return "pgbackrest:" + hashlib.sha256(b"key-id:" + self.passphrase_path.read_bytes().strip()).hexdigest()[:16]

    def write_config(self, keys: KeyStore | None = None) -> Path:
        """Write pgbackrest.conf and the wrapper; create the passphrase file from the key store if
        none was given. Safe to repeat: an existing passphrase file is never replaced (the
        repositories are unreadable without it)."""
        for path, what in ((self.config_dir, "ENCAPTIO_PGBACKREST_CONFIG_DIR"),
                           (self.pg_path, "ENCAPTIO_PGBACKREST_PG_PATH"),
                           (self.repo1_path, "ENCAPTIO_PGBACKREST_REPO1_PATH"),
                           (self.repo2_path, "ENCAPTIO_PGBACKREST_REPO2_PATH"),
                           (self.passphrase_path, "passphrase file")):
            _safe(path, what)
        make_owned_dir(self.config_dir, self.os_user)
        for sub in ("log", "lock", "spool"):
            make_owned_dir(self.config_dir / sub, self.os_user)
        make_owned_dir(self.repo1_path, self.os_user, 0o750)
        make_owned_dir(self.repo2_path, self.os_user, 0o750)
        self._ensure_passphrase(keys)
        _write_owned(self.config_file, self.render_config(), self.os_user, 0o640)
        _write_owned(self.wrapper, self.render_wrapper(), self.os_user, 0o750)
        return self.config_file

    def _ensure_passphrase(self, keys: KeyStore | None) -> None:
        path = self.passphrase_path
        if path.exists():
            if not path.read_bytes().strip():
                raise SettingsError(f"repository passphrase file {path} is empty")
            return
        if self.passphrase_file is not None:
            raise SettingsError(f"ENCAPTIO_PGBACKREST_PASSPHRASE_FILE: {path} does not exist")
        if keys is None:
            raise SettingsError("no repository passphrase: set ENCAPTIO_PGBACKREST_PASSPHRASE_FILE or pass the "
                                "key store")
        # Derived from a key store secret, so a lost config directory can be rebuilt from the key store.
        passphrase = base64.urlsafe_b64encode(keys.secret("pgbackrest-repository")).decode()
        _write_owned(path, passphrase + "\n", self.os_user, 0o600)

    def render_config(self) -> str:
        repo_lines = []
        for number, path in ((1, self.repo1_path), (2, self.repo2_path)):
            # Bundling packs the cluster's many small files into few repository files: a 22 MB
            # cluster backs up in 3 s instead of 5, and an S3 repository pays for fewer requests.
            repo_lines += [f"repo{number}-path={path}", f"repo{number}-cipher-type=aes-256-cbc",
                           f"repo{number}-retention-full-type=time",
                           f"repo{number}-retention-full={self.retention_full_days}", f"repo{number}-bundle=y"]
        # zstd level 1 rather than pgBackRest's default 3: on 2 cores the backup is CPU-bound. On
        # 1 GB of platform-like rows one repository took 12.3 s instead of 19-25 s (paired runs),
        # and the repository was no larger (456 MB against 464 MB); on pgbench 5-10 % faster.
        options = {"compress-type": "zst", "compress-level": "1", "process-max": str(self.process_max),
                   "start-fast": "y",
                   "log-path": os.fspath(self.config_dir / "log"), "lock-path": os.fspath(self.config_dir / "lock"),
                   "spool-path": os.fspath(self.config_dir / "spool"), "log-level-console": "warn",
                   "log-level-file": "info", "archive-timeout": "120"}
        if self.job_retry is not None:
            options["job-retry"] = str(self.job_retry)
        options.update(self.extra_options)
        stanza = [f"pg1-path={self.pg_path}", f"pg1-port={self.pg_port}", f"pg1-user={self.pg_user}"]
        if self.pg_socket_path:
            stanza.append(f"pg1-socket-path={self.pg_socket_path}")
        return "\n".join([
            "# Written by encaptio_data.lifecycle.pgbackrest; edits are overwritten.",
            "# The repository passphrase is not here: the wrapper reads it from its own file.",
            "[global]", *repo_lines, *(f"{k}={v}" for k, v in options.items()), "",
            f"[{self.stanza}]", *stanza, ""])

    def render_wrapper(self) -> str:
        passphrase = shlex.quote(os.fspath(self.passphrase_path))
        return "\n".join([
            "#!/bin/sh",
            "# Written by encaptio_data.lifecycle.pgbackrest. Runs pgBackRest for this stanza; the repository",
            "# passphrase is read from its file at every call, so it never sits in a configuration file.",
            "set -e",
            f"PGBACKREST_REPO1_CIPHER_PASS=\"$(cat {passphrase})\"",
            "PGBACKREST_REPO2_CIPHER_PASS=\"$PGBACKREST_REPO1_CIPHER_PASS\"",
            "export PGBACKREST_REPO1_CIPHER_PASS PGBACKREST_REPO2_CIPHER_PASS",
            f"exec {PGBACKREST} --config={shlex.quote(os.fspath(self.config_file))} \"$@\"", ""])

    @property
    def archive_command(self) -> str:
        return f"{_safe(self.wrapper, 'wrapper')} --stanza={self.stanza} archive-push %p"

    def restore_command(self, data_dir: Path, repo: int | None = None) -> str:
        # With a repo the restored cluster reads WAL from that repository only: a drill restoring
        # from repo2 then proves the cross-region copy is enough on its own.
        only = f" --repo={repo}" if repo else ""
        return f"{_safe(self.wrapper, 'wrapper')} --pg1-path={_safe(data_dir, 'data dir')} --stanza={self.stanza}" \
               f'{only} archive-get %f "%p"'

    def archiving_settings(self) -> dict[str, str]:
        return {"archive_mode": "on", "wal_level": "replica", "archive_command": self.archive_command}

    # -- commands ------------------------------------------------------------------------
    def run(self, *args: str, timeout: float = 6 * 3600, check: bool = True) -> subprocess.CompletedProcess[str]:
        if not self.wrapper.exists():
            raise SettingsError(f"pgBackRest is not configured for stanza {self.stanza!r}: run write_config() first")
        return run_as(self.os_user, [self.wrapper, f"--stanza={self.stanza}", *args], timeout=timeout, check=check)

    def configure_archiving(self, engine: sa.Engine) -> dict[str, Any]:
        """ALTER SYSTEM the archiving settings; archive_mode and wal_level need a restart, which is
        the operator's (or the caller's) move: this only reports it."""
        settings = self.archiving_settings()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name, value in settings.items():
                conn.execute(sa.text(f"ALTER SYSTEM SET {name} = " + _literal(value)))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
            time.sleep(0.2)  # the reload is asynchronous
            pending = conn.execute(sa.text(
                "SELECT name FROM pg_settings WHERE pending_restart AND name = ANY(:names)"),
                {"names": list(settings)}).scalars().all()
        return {"settings": settings, "restart_required": sorted(pending)}

    def stanza_create(self) -> None:
        self.run("stanza-create", timeout=600)

    def check(self) -> None:
        """pgBackRest's own end-to-end check: configuration, and a WAL segment archived and found."""
        self.run("check", timeout=600)

    def backup(self, kind: str, repo: int = 1) -> dict[str, Any]:
        """Run a full or incremental backup to one repository; return its pgBackRest info entry."""
        if kind not in ("full", "incr", "diff"):
            raise ValueError(f"backup kind must be full, incr or diff, not {kind!r}")
        # The label comes from the backup's own log line (one `info` call fewer than listing the
        # catalog before and after; the stanza lock keeps a second backup from interleaving).
        result = self.run(f"--type={kind}", f"--repo={repo}", "--log-level-console=info", "backup")
        label = re.search(r"new backup label = (\S+)", result.stdout + result.stderr)
        new = [b for b in self.backups(repo) if label and b["label"] == label.group(1)]
        if not new:
            raise PgBackRestError(f"pgBackRest reported success but no new backup appeared in repo{repo}")
        return new[-1]

    def replicate_backups(self, source: int = 1, target: int = 2) -> dict[str, Any]:
        """Mirror the source repository's backup directory into the target: what S3 cross-region
        replication does for a bucket, for a posix repo2.

        The files are copied as they are (compressed and encrypted by pgBackRest); files the
        target already holds with the same size and modification time are skipped, so after the
        first full only the new set and the catalog travel. The sets are copied first and
        ``backup.info`` (with its ``.copy``) last, each by rename, so the target's catalog never
        names a set that is not all there; sets that expired from the source are removed after.
        WAL is not copied: archive-push writes every segment to both repositories, and
        ``expire --repo=2`` applies the retention to it (saving repo2's catalog again, freshly
        encrypted: the sets are byte-identical to repo1's, the catalog identical in content).
        """
        paths = {1: self.repo1_path, 2: self.repo2_path}
        src, dst = paths[source] / "backup" / self.stanza, paths[target] / "backup" / self.stanza
        if not src.is_dir():
            raise PgBackRestError(f"repo{source} has no backups of stanza {self.stanza} to replicate ({src})")
        user = _identity(self.os_user)
        catalog = {"backup.info", "backup.info.copy"}
        copied = skipped = 0
        size = 0
        touched: set[Path] = set()

        def make_parents(destination: Path) -> None:
            for directory in reversed([p for p in destination.parents if p != dst and dst in p.parents]):
                if not directory.exists():
                    directory.mkdir(mode=0o750)
                    os.chown(directory, user.pw_uid, user.pw_gid)
                    touched.add(directory.parent)  # its new entry is durable once the parent is synced

        def place(path: Path) -> None:
            nonlocal copied, skipped, size
            relative = path.relative_to(src)
            destination = dst / relative
            stat = path.stat()
            if destination.exists():
                existing = destination.stat()
                if existing.st_size == stat.st_size and existing.st_mtime_ns == stat.st_mtime_ns:
                    skipped += 1
                    return
            make_parents(destination)
            temporary = destination.with_name(f".{destination.name}.replicating")
            shutil.copy2(path, temporary)
            os.chown(temporary, user.pw_uid, user.pw_gid)
            # Durable before it is visible, as pgBackRest syncs what it writes to a posix repository.
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, destination)
            touched.add(destination.parent)
            copied += 1
            size += stat.st_size

        make_owned_dir(dst, self.os_user, 0o750)
        entries = sorted(src.rglob("*"))
        files = [path for path in entries
                 if path.is_file() and not path.is_symlink() and path.relative_to(src).as_posix() not in catalog]
        for path in files:
            place(path)
        # The set's directory entries are durable before the catalog that names the set is placed.
        for directory in sorted(touched, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(directory)
        for name in ("backup.info.copy", "backup.info"):
            if (src / name).exists():
                place(src / name)
        for path in entries:  # `latest`, pointing at the newest set
            if path.is_symlink():
                link = dst / path.relative_to(src)
                if not link.is_symlink() or os.readlink(link) != os.readlink(path):
                    link.unlink(missing_ok=True)
                    os.symlink(os.readlink(path), link)
                    os.lchown(link, user.pw_uid, user.pw_gid)
        for directory in sorted(touched, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(directory)
        present = {p.relative_to(src) for p in src.rglob("*")}
        removed = 0
        for path in sorted(dst.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.relative_to(dst) not in present:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
        # Retention of the target's WAL archive (its sets mirror the source's, already expired).
        self.run(f"--repo={target}", "expire", timeout=3600)
        return {"source": source, "target": target, "files_copied": copied, "files_unchanged": skipped,
                "bytes_copied": size, "removed": removed}

    def info(self, repo: int | None = None) -> dict[str, Any]:
        """pgBackRest's info for the stanza; with repo, of that repository only (the other one's
        catalog and WAL archive are then not read)."""
        result = self.run(*([f"--repo={repo}"] if repo else []), "info", "--output=json", timeout=600)
        stanzas = json.loads(result.stdout)
        return stanzas[0] if stanzas else {}

    def backups(self, repo: int | None = None) -> list[dict[str, Any]]:
        """pgBackRest's catalog, oldest first."""
        entries = self.info(repo).get("backup", [])
        if repo is not None:
            entries = [b for b in entries if b["database"]["repo-key"] == repo]
        return sorted(entries, key=lambda b: (b["timestamp"]["stop"], b["label"]))

    def verify(self, repo: int = 1, set_label: str | None = None) -> dict[str, Any]:
        """`pgbackrest verify`: every backup file and WAL segment of the repository re-read and
        checked; with set_label, only those of that backup set (``--set``): its files, the
        earlier sets' files it refers to, and the WAL it needs to be consistent.

        pgBackRest (2.45 and 2.55 alike) exits 0 even when it finds damage, and names the
        damaged files only in its info log; so both are read here and the damaged files returned
        by name. 2.55 names a damaged bundle by its repository file (``LABEL/bundle/N``); 2.45
        named the cluster file inside it.
        """
        scope = [f"--set={set_label}"] if set_label else []
        result = self.run(f"--repo={repo}", *scope, "--output=text", "--verbose", "--log-level-console=detail",
                          "verify", timeout=6 * 3600)
        text = result.stdout + result.stderr
        invalid = re.findall(r"(invalid checksum|invalid size|file missing|missing|invalid result)\s*'([^']+)'", text)
        counts = [int(n) for n in re.findall(r"(?:missing|checksum invalid|size invalid|other):\s+(\d+)", text)]
        status = re.search(r"status:\s+(\w+)", text)
        ok = status is not None and status.group(1) == "ok" and not invalid and not any(counts)
        return {"repo": repo, "scope": f"set {set_label}" if set_label else "repository", "passed": ok,
                "status": status.group(1) if status else "no verify report",
                "invalid_files": [f"{kind}: {path}" for kind, path in invalid],
                "summary": [line.strip() for line in text.splitlines()
                            if ("backup:" in line or "archiveId" in line) and "INFO" not in line][:20]}

    def restore(self, data_dir: Path, *, target_type: str = "default", target: str | None = None,
                set_label: str | None = None, repo: int | None = None, delta: bool = False,
                scratch: bool = True) -> None:
        """Restore into data_dir. A scratch restore disables archiving on the copy (it must never
        push WAL into this stanza's repository) and fetches WAL through the wrapper."""
        args = [f"--pg1-path={data_dir}"]
        if target_type != "default":
            args.append(f"--type={target_type}")
        if target is not None:
            args.append(f"--target={target}")
        if target_type in ("time", "name", "xid", "lsn"):
            args.append("--target-action=promote")
        if set_label:
            args.append(f"--set={set_label}")
        if repo:
            args.append(f"--repo={repo}")
        if delta:
            args.append("--delta")
        if scratch:
            args += ["--archive-mode=off",
                     f"--recovery-option=restore_command={self.restore_command(data_dir, repo)}"]
        else:
            args.append(f"--recovery-option=restore_command={self.restore_command(self.pg_path)}")
        try:
            self.run(*args, "restore", timeout=6 * 3600)
        except PgBackRestError as exc:
            # pgBackRest reports damage by what broke (a decompression or checksum error), not
            # always by file; verify then names the damaged files, and is only paid for on failure.
            damaged = [f for r in ([repo] if repo else [1, 2]) for f in self.verify(repo=r)["invalid_files"]]
            if damaged:
                raise PgBackRestError(f"restore refused: damaged repository files {'; '.join(damaged[:5])} "
                                      f"({exc})") from None
            raise

    def restore_scratch(self, data_dir: Path, *, port: int | None = None, target_type: str = "default",
                        target: str | None = None, set_label: str | None = None, repo: int | None = None,
                        start_timeout: float = 1800) -> Cluster:
        """Restore into an empty scratch directory and start it on a spare loopback port."""
        data_dir = Path(data_dir)
        if data_dir.exists():
            if any(data_dir.iterdir()):
                raise PgBackRestError(f"scratch data directory {data_dir} is not empty")
            user = _identity(self.os_user)
            os.chown(data_dir, user.pw_uid, user.pw_gid)  # empty, and ours to fill
            os.chmod(data_dir, 0o700)
        make_owned_dir(data_dir, self.os_user)
        self.restore(data_dir, target_type=target_type, target=target, set_label=set_label, repo=repo, scratch=True)
        cluster = Cluster(data_dir=data_dir, port=port or free_port(), socket_dir=data_dir.parent,
                          os_user=self.os_user, pg_bin=self.pg_bin, log_file=data_dir.parent / f"{data_dir.name}.log")
        _ensure_config_files(cluster)
        # hot_standby off: nobody reads the copy before recovery has reached its target and
        # promoted, and a production-sized max_connections need not fit beside production.
        cluster.configure({**cluster.local_settings(), "hot_standby": "off", "shared_buffers": "128MB",
                           "archive_mode": "off"})
        cluster.start(timeout=start_timeout)
        return cluster


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ensure_config_files(cluster: Cluster) -> None:
    """A restore brings back what was in the data directory; a cluster whose postgresql.conf and
    pg_hba.conf live elsewhere (Debian's /etc/postgresql) gets minimal loopback-only ones."""
    conf, hba = cluster.data_dir / "postgresql.conf", cluster.data_dir / "pg_hba.conf"
    if not conf.exists():
        _write_owned(conf, "# minimal configuration for a scratch restore\n", cluster.os_user, 0o600)
    if not hba.exists():
        _write_owned(hba, "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n", cluster.os_user, 0o600)


# -- restore points and manifests --------------------------------------------------------------

def user_tables(conn: sa.Connection) -> list[str]:
    """Every ordinary and partitioned table outside the system schemas, as quoted names, sorted."""
    rows = conn.execute(sa.text(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1")).scalars().all()
    return list(rows)


def table_digests(conn: sa.Connection, tables: Sequence[str] | None = None,
                  methods: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Row count and a digest of the rows of every table, as seen by conn's snapshot.

    The digest is the exact (numeric) sum of a 64-bit hash of each row, so it does not depend on
    the physical order of the heap, which a VACUUM FULL or a restore may change; a changed,
    missing or extra row changes it (but for a 2^-64 chance). PostgreSQL's own hash functions
    are used because they cost a fraction of md5 and parallelise; their values are stable within
    one major version and architecture, which is what a restore needs (pgBackRest restores only
    into the same major version); the manifest records the server version. Two row hashes:

    * ``record-hash/1`` (new manifests): ``hash_record_extended``, every column by its type's
      own hash, with no text rendering of the row (2-3x faster on JSON and timestamps). It sees
      values as the type's equality does (numeric 1.0 and 1.00 are one value).
    * ``row-text/1`` (manifests without ``digest``, and tables with a column type that has no
      hash function, e.g. json or point): ``hashtextextended`` of the row's text.

    methods: the manifest tables to verify against; each is digested as its entry says.
    """
    for name, value in _RENDER_SETTINGS.items():
        conn.execute(sa.text(f"SET LOCAL {name} = " + _literal(value)))
    found: dict[str, dict[str, Any]] = {}
    for table in tables if tables is not None else user_tables(conn):
        if methods is not None and table in methods:
            method = methods[table].get("digest", ROW_TEXT)
            if method not in _ROW_HASHES:
                raise IntegrityError(f"the manifest digests table {table} with {method!r}, which this version of "
                                     f"encaptio does not know ({ROW_HASH} or {ROW_TEXT}): verify it with the "
                                     "version that wrote it, or upgrade")
            count, total = _sum_row_hashes(conn, table, method)
        else:
            method, (count, total) = _new_row_hashes(conn, table)
        digest = hashlib.sha256(f"{count}:{total}".encode()).hexdigest()
        found[table] = {"rows": count, "sha256": digest, "digest": method}
    return found


def _new_row_hashes(conn: sa.Connection, table: str) -> tuple[str, tuple[int, str]]:
    """ROW_HASH, or ROW_TEXT for a table with a column type that has no extended hash function
    (the query fails; a savepoint keeps the snapshot's transaction usable)."""
    conn.execute(sa.text("SAVEPOINT encaptio_digest"))
    try:
        result = _sum_row_hashes(conn, table, ROW_HASH)
    except sa.exc.DBAPIError as exc:
        conn.execute(sa.text("ROLLBACK TO SAVEPOINT encaptio_digest"))
        if getattr(exc.orig, "sqlstate", None) != "42883":  # undefined_function
            raise
        return ROW_TEXT, _sum_row_hashes(conn, table, ROW_TEXT)
    conn.execute(sa.text("RELEASE SAVEPOINT encaptio_digest"))
    return ROW_HASH, result


def _sum_row_hashes(conn: sa.Connection, table: str, method: str) -> tuple[int, str]:
    # sum() of the bigint hashes is exact (PostgreSQL accumulates int8 in 128 bits and returns a
    # numeric): the same value and text as summing them cast to numeric, as manifests written
    # before did, without a numeric per row (6.8 M rows: 3.5-4.3 s instead of 5.2-5.6 s, serial).
    count, total = conn.execute(sa.text(
        f"SELECT count(*), coalesce(sum({_ROW_HASHES[method]}), 0)::text FROM {table} t")).one()
    return int(count), total


def server_version(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())


def capture_restore_point(engine: sa.Engine, name: str, *, lock_timeout_s: int = 30, attempts: int = 3,
                          alongside: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Create restore point `name` and the manifest of exactly what a restore to it holds.

    A SHARE lock on every table waits for running writers and holds new ones back for the
    moment it takes to export a snapshot and write the restore point record; so no commit to
    an application table falls between the two. The manifest is then computed in a second
    transaction that imports the snapshot, after the locks are gone: writers wait milliseconds,
    not for the length of a scan.

    alongside runs in this thread while the server computes the digests (waiting for the WAL
    archive, copying repository files: work that needs the restore point but not the digests);
    its result is returned as ``alongside``, its exception raised after the digests finish.
    """
    last_error: Exception | None = None
    for _ in range(attempts):
        locker = engine.connect()
        try:
            locker.execute(sa.text("BEGIN ISOLATION LEVEL REPEATABLE READ"))
            locker.execute(sa.text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'"))
            tables = user_tables(locker)
            if tables:
                locker.execute(sa.text(f"LOCK TABLE {', '.join(tables)} IN SHARE MODE"))
            snapshot = locker.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            lsn, created_at = locker.execute(sa.text(
                "SELECT pg_create_restore_point(:name)::text, clock_timestamp()"), {"name": name}).one()
            reader = engine.connect()
            try:
                reader.execute(sa.text("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
                reader.execute(sa.text(f"SET TRANSACTION SNAPSHOT {_literal(snapshot)}"))
                locker.execute(sa.text("COMMIT"))
                with ThreadPoolExecutor(max_workers=1) as pool:
                    digest_started = time.monotonic()
                    digesting = pool.submit(table_digests, reader, tables)
                    try:
                        beside = alongside() if alongside is not None else None
                    finally:
                        digests = digesting.result()
                        digest_seconds = round(time.monotonic() - digest_started, 3)
                reader.execute(sa.text("COMMIT"))
            finally:
                reader.close()
            return {"restore_point": name, "lsn": lsn, "created_at": created_at.astimezone(UTC).isoformat(),
                    "tables": digests, "digest_seconds": digest_seconds, "alongside": beside}
        except sa.exc.OperationalError as exc:  # lock timeout or deadlock: try again
            last_error = exc
        finally:
            locker.close()
    reason = str(getattr(last_error, "orig", last_error)).strip()
    raise PgBackRestError(f"could not create restore point {name}: {reason}")


def switch_and_wait_archived(engine: sa.Engine, timeout: float = 120) -> dict[str, Any]:
    """Close the current WAL segment and wait until the archiver has pushed it: everything
    committed before this call is then in both repositories."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        lsn = conn.execute(sa.text("SELECT pg_current_wal_lsn()")).scalar_one()
        wanted = conn.execute(sa.text("SELECT pg_walfile_name(:lsn)"), {"lsn": lsn}).scalar_one()
        conn.execute(sa.text("SELECT pg_switch_wal()"))
        started = time.monotonic()
        deadline = started + timeout
        while True:
            archived, failed = conn.execute(sa.text(
                "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")).one()
            # Segment names sort by timeline, then position; a .history file is no segment.
            if archived and len(archived) == 24 and archived >= wanted:
                return {"segment": wanted, "archived": archived}
            if time.monotonic() > deadline:
                raise PgBackRestError(f"WAL segment {wanted} was not archived within {timeout:.0f}s "
                                      f"(last archived {archived}, last failed {failed}): check archive_command")
            # archive-push of a just-switched segment into both repositories takes ~30 ms when the
            # host is quiet; at 100 ms polls the wait came out at 0.12 or 0.22 s: poll finely at first.
            time.sleep(0.01 if time.monotonic() - started < 1 else 0.1)


def server_now(engine: sa.Engine) -> datetime:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one().astimezone(UTC)


def last_replayed_transaction(engine: sa.Engine) -> datetime | None:
    """When the last transaction the recovery applied had committed (NULL for a cluster that was
    never recovered): the restored copy holds nothing committed after it."""
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT pg_last_xact_replay_timestamp()")).scalar_one()
    return value.astimezone(UTC) if value else None


def compare_tables(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable differences between two manifests' tables (empty when they agree)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"table {table} is not in the manifest")
        elif got is None:
            problems.append(f"table {table} is missing")
        elif want["rows"] != got["rows"]:
            problems.append(f"table {table} has {got['rows']} rows, the manifest says {want['rows']}")
        elif want["sha256"] != got["sha256"]:
            problems.append(f"table {table} rows differ from the manifest (digest mismatch)")
    return problems


def assert_manifest(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]], what: str) -> None:
    problems = compare_tables(expected, actual)
    if problems:
        raise IntegrityError(f"{what}: {'; '.join(problems[:5])}")
