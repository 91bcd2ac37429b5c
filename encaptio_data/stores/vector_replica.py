"""LanceDB with a durable copy on S3 and a local serving copy kept in sync.

Writers (the content pipeline, index maintenance, erasure, integrity checks) use the
store like any other ``VectorStore``: ``connect()`` and ``open_table()`` reach the
durable copy on S3, which every worker shares. Searches read ``serving``, a LanceDB
directory on the serving machine that ``sync()`` brings to the durable copy's latest
version, so a query costs local disk reads instead of S3 round trips and keeps working
while S3 is down (on the last synced copy, whose age ``freshness()`` reports).

Why a file mirror rather than re-creating the local table from the durable rows: a Lance
table is a directory of immutable files (data fragments, deletion files, index files,
transaction files) plus one manifest per version under ``_versions/``, and a version
becomes visible when its manifest appears. So ``sync()`` copies only the files the local
copy lacks, each written beside the table and renamed into place, and the manifests
last; a reader sees the previous version until the new manifest lands, never a half-copied
one, and the durable copy's indexes arrive with the data instead of being rebuilt on every
serving machine. Files the durable copy no longer has (older versions removed by
cleanup, fragments rewritten by an erasure's compaction) are then deleted locally, so an
erased row leaves the serving copy at the next sync, physically. A table the serving copy
has never held is assembled under ``.replica/staging`` and renamed into place whole.

The serving directory belongs to ``sync()``: nothing else may write to it (a stray local
commit would be deleted by the next sync, its manifest being unknown to the durable copy).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import boto3
import boto3.exceptions
import lancedb
import lancedb.table
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from filelock import FileLock, Timeout

from encaptio_data.errors import EncaptioError, SettingsError, StoreUnavailableError
from encaptio_data.settings import Settings
from encaptio_data.stores.cache import Cache
from encaptio_data.stores.vectors import LocalVectorStore, S3VectorStore, VectorStore, open_lancedb_store

log = logging.getLogger(__name__)

REPLICA_DIR = ".replica"  # inside the serving directory; LanceDB lists only '*.lance' entries
DEFAULT_COPY_WORKERS = 8
LOCK_TIMEOUT_SECONDS = 600.0
# SearchService caches candidate lists under "search:<organization>:<fingerprint>" (service.py);
# lists computed from the copy a sync just replaced may hold rows that are gone, erased ones included.
SEARCH_CACHE_PREFIX = "search:"

_TABLE_DIR = re.compile(r"([A-Za-z0-9_-]{1,128})\.lance")
_VERSIONS = "_versions/"
_U64_MAX = 2**64 - 1


def _manifest_version(relative: str) -> int:
    """Lance names manifests '<version>.manifest' (V1) or '<u64::MAX - version>.manifest' (V2)."""
    number = int(relative.removeprefix(_VERSIONS).removesuffix(".manifest"))
    return _U64_MAX - number if number > 2**63 else number


def _is_manifest(relative: str) -> bool:
    # _versions/ also holds latest_version_hint.json, which Lance rewrites in place; it is only a
    # hint (readers fall back to listing), so it is not copied: a stale hint is worse than none.
    return relative.startswith(_VERSIONS) and relative.endswith(".manifest")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


class _Remote(NamedTuple):
    key: str
    size: int
    etag: str


@dataclass
class TableSync:
    name: str
    action: str  # created | updated | unchanged | dropped
    version: int | None
    previous_version: int | None
    rows: int | None
    files_copied: int = 0
    bytes_copied: int = 0
    files_removed: int = 0


@dataclass
class SyncReport:
    durable: str
    local: str
    tables: list[TableSync]
    seconds: float
    synced_at: str
    cache_keys_dropped: int = 0

    @property
    def changed(self) -> bool:
        return any(table.action != "unchanged" for table in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"changed": self.changed}


@dataclass
class Freshness:
    """How current the serving copy is: it equalled the durable copy at ``synced_at``."""

    durable: str
    local: str
    synced_at: str | None
    age_seconds: float | None
    last_attempt_at: str | None
    last_error: str | None
    versions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SyncedVectorStore:
    """A ``VectorStore`` whose connection is the durable S3 copy, with ``serving`` for searches."""

    def __init__(self, durable: S3VectorStore, local_path: str | os.PathLike[str], *,
                 copy_workers: int = DEFAULT_COPY_WORKERS, client: Any = None) -> None:
        if not isinstance(durable, S3VectorStore):
            raise SettingsError("a synced vector store needs its durable copy on s3://BUCKET[/PREFIX]")
        self.durable = durable
        self.uri = durable.uri
        self.local_root = Path(os.path.expanduser(os.fspath(local_path))).resolve()
        self.serving: VectorStore = LocalVectorStore(self.local_root)
        parts = urlsplit(durable.uri)
        self._bucket = parts.netloc
        self._prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self._copy_workers = copy_workers
        self._client = client
        self._meta = self.local_root / REPLICA_DIR
        self._state_path = self._meta / "state.json"
        self._staging = self._meta / "staging"

    # --- the VectorStore protocol: the durable copy, which writers share ------------------

    def connect(self) -> lancedb.DBConnection:
        return self.durable.connect()

    def table_names(self) -> list[str]:
        return self.durable.table_names()

    def open_table(self, name: str) -> lancedb.table.Table:
        return self.durable.open_table(name)

    def count_rows(self) -> dict[str, int]:
        return self.durable.count_rows()

    def drop_table(self, name: str) -> None:
        self.durable.drop_table(name)

    def check(self) -> None:
        self.durable.check()

    def purge_history(self) -> int:
        # After an erasure the serving copy must lose the rows too, not at the next periodic sync.
        purged = self.durable.purge_history()
        self.sync()
        return purged

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, serving={str(self.local_root)!r})"

    # --- sync ----------------------------------------------------------------------------

    def sync(self, *, cache: Cache | None = None) -> SyncReport:
        """Bring the serving copy to the durable copy's latest version of every table.

        Idempotent (an unchanged table costs one S3 listing) and safe after a crash: files
        are renamed into place whole and manifests land last, so the previous version stays
        readable until the new one is complete, and a re-run finishes what a crash left.
        With ``cache``, search candidate lists are dropped when any table changed.
        Raises StoreUnavailableError (one line, naming the copy still served) when S3 fails.
        """
        started = time.monotonic()
        self._meta.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(self._meta / "sync.lock", timeout=LOCK_TIMEOUT_SECONDS):
                state = self._load_state()
                state["last_attempt_at"] = _iso(_now())
                try:
                    with self._errors(state):
                        tables = self._sync_all(state)
                except EncaptioError as exc:
                    state["last_error"] = str(exc)
                    self._save_state(state)
                    raise
                synced_at = _iso(_now())
                state |= {"durable": self.uri, "synced_at": synced_at, "last_error": None}
                self._save_state(state)
        except Timeout:
            raise StoreUnavailableError(f"vector sync into {self.local_root}: another sync has held the lock for "
                                        f"{LOCK_TIMEOUT_SECONDS:.0f}s") from None
        report = SyncReport(durable=self.uri, local=str(self.local_root), tables=tables,
                            seconds=round(time.monotonic() - started, 3), synced_at=synced_at)
        if cache is not None and report.changed:
            keys = cache.keys(SEARCH_CACHE_PREFIX)
            report.cache_keys_dropped = cache.delete(*keys) if keys else 0
        return report

    def freshness(self) -> Freshness:
        """The serving copy's age; readable without S3 and while a sync runs."""
        state = self._load_state()
        synced_at = datetime.fromisoformat(state["synced_at"]) if state.get("synced_at") else None
        return Freshness(
            durable=self.uri, local=str(self.local_root), synced_at=state.get("synced_at"),
            age_seconds=round((_now() - synced_at).total_seconds(), 3) if synced_at else None,
            last_attempt_at=state.get("last_attempt_at"), last_error=state.get("last_error"),
            versions={name: entry["version"] for name, entry in sorted(state["tables"].items())},
        )

    def _sync_all(self, state: dict[str, Any]) -> list[TableSync]:
        # Leftovers of a crashed sync: half-downloaded files and half-assembled tables.
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging.mkdir(parents=True)
        names = self._durable_tables() | self._local_tables() | set(state["tables"])
        return [table for name in sorted(names) if (table := self._sync_table(name, state)) is not None]

    def _sync_table(self, name: str, state: dict[str, Any]) -> TableSync | None:
        table_key = f"{self._prefix}{name}.lance/"
        local_dir = self.local_root / f"{name}.lance"
        recorded = state["tables"].get(name)
        previous = recorded["version"] if recorded else None
        # Manifests are listed before the other files: a version's files are all written before
        # its manifest, so every manifest seen here has its files in the second listing.
        manifests = {rel: obj for rel, obj in self._list(table_key + _VERSIONS, table_key).items() if _is_manifest(rel)}
        if not manifests:
            # Dropped on S3, or never there: a versioned bucket keeps listing a dropped table's
            # prefix while its keys are delete markers (moto does; see tests/stores/test_vectors.py).
            if not local_dir.exists() and not recorded:
                return None
            removed = self._retire(local_dir) if local_dir.exists() else 0
            state["tables"].pop(name, None)
            self._save_state(state)
            return TableSync(name, "dropped", None, previous, None, files_removed=removed)
        version = max(_manifest_version(rel) for rel in manifests)
        etags = {rel: obj.etag for rel, obj in manifests.items()}
        if recorded and recorded["manifests"] == etags and self._local_files(local_dir, manifests=True) == set(etags):
            return TableSync(name, "unchanged", version, previous, self._rows(name))

        files = {rel: obj for rel, obj in self._list(table_key, table_key).items() if not rel.startswith(_VERSIONS)}
        created = not local_dir.exists()
        target = self._staging / f"{name}.lance" if created else local_dir
        have = {rel: (target / rel).stat().st_size for rel in self._local_files(target, manifests=False)}
        missing = [obj for rel, obj in files.items() if have.get(rel) != obj.size]
        known = (recorded or {}).get("manifests", {})
        new_manifests = sorted((rel for rel, etag in etags.items()
                                if known.get(rel) != etag or not (target / rel).exists()), key=_manifest_version)
        copied = self._download_all(table_key, target, missing)
        for rel in new_manifests:  # in version order, so the newest becomes visible last
            copied += self._download(table_key, target, manifests[rel])
        removed = 0
        if created:
            os.rename(target, local_dir)
        else:
            # Newest first, so a reader moves back through versions that are still complete.
            for rel in sorted(self._local_files(local_dir, manifests=True) - set(etags), key=_manifest_version,
                              reverse=True):
                removed += self._remove(local_dir / rel)
            removed += self._remove(local_dir / _VERSIONS / "latest_version_hint.json")
            for rel in sorted(self._local_files(local_dir, manifests=False) - set(files)):
                removed += self._remove(local_dir / rel)
            _prune_empty_dirs(local_dir)
        state["tables"][name] = {"version": version, "manifests": etags, "synced_at": _iso(_now())}
        self._save_state(state)
        return TableSync(name, "created" if created else "updated", version, previous, self._rows(name),
                         files_copied=len(missing) + len(new_manifests), bytes_copied=copied, files_removed=removed)

    def _rows(self, name: str) -> int:
        return self.serving.open_table(name).count_rows()

    # --- S3 ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            options = self.durable.storage_options or {}
            endpoint = options.get("aws_endpoint")
            self._client = boto3.client(
                "s3", endpoint_url=endpoint, region_name=options.get("aws_region"),
                aws_access_key_id=options.get("aws_access_key_id"),
                aws_secret_access_key=options.get("aws_secret_access_key"),
                aws_session_token=options.get("aws_session_token"),
                config=Config(connect_timeout=5, read_timeout=60, retries={"total_max_attempts": 3, "mode": "standard"},
                              max_pool_connections=max(10, self._copy_workers),
                              s3={"addressing_style": "path"} if endpoint else None),
            )
        return self._client

    def _durable_tables(self) -> set[str]:
        names = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix,
                                                                          Delimiter="/"):
            for entry in page.get("CommonPrefixes", []):
                if match := _TABLE_DIR.fullmatch(entry["Prefix"][len(self._prefix):].rstrip("/")):
                    names.add(match.group(1))
        return names

    def _list(self, prefix: str, table_key: str) -> dict[str, _Remote]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    found[obj["Key"][len(table_key):]] = _Remote(obj["Key"], obj["Size"], obj["ETag"].strip('"'))
        return found

    def _download_all(self, table_key: str, target: Path, objects: list[_Remote]) -> int:
        if len(objects) <= 1:
            return sum(self._download(table_key, target, obj) for obj in objects)
        with ThreadPoolExecutor(max_workers=self._copy_workers) as pool:
            return sum(pool.map(lambda obj: self._download(table_key, target, obj), objects))

    def _download(self, table_key: str, target: Path, obj: _Remote) -> int:
        destination = target / obj.key[len(table_key):]
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = self._staging / f"part-{uuid.uuid4().hex}"
        try:
            self.client.download_file(self._bucket, obj.key, str(partial))
            # A manifest renamed into place must never point at bytes still in the page cache only.
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)
        return obj.size

    @contextmanager
    def _errors(self, state: dict[str, Any]) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError, boto3.exceptions.Boto3Error) as exc:
            served = (f"search serves the local copy synced at {state['synced_at']}" if state.get("synced_at")
                      else "there is no local copy yet")
            raise StoreUnavailableError(f"vector store {self.uri} is unavailable: {_brief(exc)}; {served}") from None
        except OSError as exc:
            raise StoreUnavailableError(f"vector sync into {self.local_root} failed: {exc.strerror or exc}") from None

    # --- the local side ------------------------------------------------------------------

    def _local_tables(self) -> set[str]:
        if not self.local_root.is_dir():
            return set()
        return {match.group(1) for entry in self.local_root.iterdir()
                if entry.is_dir() and (match := _TABLE_DIR.fullmatch(entry.name))}

    @staticmethod
    def _local_files(table_dir: Path, *, manifests: bool) -> set[str]:
        found = set()
        for directory, _, files in os.walk(table_dir):
            for name in files:
                rel = (Path(directory) / name).relative_to(table_dir).as_posix()
                if _is_manifest(rel) == manifests and rel != f"{_VERSIONS}latest_version_hint.json":
                    found.add(rel)
        return found

    def _retire(self, table_dir: Path) -> int:
        # One rename makes the whole table vanish for readers; the deletion happens out of sight.
        retired = self._staging / f"retired-{uuid.uuid4().hex}"
        os.rename(table_dir, retired)
        count = sum(len(files) for _, _, files in os.walk(retired))
        shutil.rmtree(retired)
        return count

    @staticmethod
    def _remove(path: Path) -> int:
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        return 1

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            state = {}
        if state.get("durable") not in (None, self.uri):
            # Another durable copy than the one recorded: nothing recorded about it holds.
            state = {}
        state.setdefault("tables", {})
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        partial = self._meta / f"state.json.{uuid.uuid4().hex}"
        partial.write_text(json.dumps(state | {"durable": self.uri}, indent=1, sort_keys=True))
        os.replace(partial, self._state_path)


def _prune_empty_dirs(root: Path) -> None:
    for directory, subdirs, files in os.walk(root, topdown=False):
        if directory != str(root) and not subdirs and not files:
            try:
                os.rmdir(directory)
            except OSError:
                pass


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return ": ".join(part for part in (error.get("Code"), error.get("Message")) if part) or str(exc)
    if isinstance(exc, EndpointConnectionError):
        parts = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        return f"cannot connect to {parts.scheme}://{parts.netloc}"
    return " ".join(str(exc).split())


def open_synced_vector_store(settings: Settings, local_copy: str | os.PathLike[str] | None) -> VectorStore:
    """The vector store the settings name, with a local serving copy when ``local_copy`` is set.

    ``local_copy`` is ENCAPTIO_LANCEDB_LOCAL_COPY: a directory, which only makes sense when
    ENCAPTIO_LANCEDB_URI is on S3 (a local LanceDB directory is already served locally).
    """
    store = open_lancedb_store(settings)
    if not local_copy:
        return store
    if not isinstance(store, S3VectorStore):
        raise SettingsError("ENCAPTIO_LANCEDB_LOCAL_COPY: needs ENCAPTIO_LANCEDB_URI=s3://BUCKET[/PREFIX]")
    local = Path(os.path.expanduser(os.fspath(local_copy))).resolve()
    if local.exists() and not local.is_dir():
        raise SettingsError(f"ENCAPTIO_LANCEDB_LOCAL_COPY: {local} is not a directory")
    return SyncedVectorStore(store, local)


def serving_store(vectors: VectorStore) -> VectorStore:
    """What searches should read: the local serving copy when there is one, else the store itself."""
    return vectors.serving if isinstance(vectors, SyncedVectorStore) else vectors


def sync_periodically(store: SyncedVectorStore, interval_seconds: float, stop: threading.Event, *,
                      cache: Cache | None = None,
                      on_result: Callable[[SyncReport | EncaptioError], None] | None = None) -> None:
    """Sync every ``interval_seconds`` until ``stop`` is set; a failed sync is logged, never fatal.

    Runs on the serving machine (a thread of the search service, or a sidecar process):
    the copy it refreshes is that machine's disk, which a Dagster run elsewhere cannot reach.
    """
    if interval_seconds <= 0:
        raise SettingsError("the vector sync interval must be positive")
    while not stop.is_set():
        result: SyncReport | EncaptioError
        try:
            result = store.sync(cache=cache)
            if result.changed:
                log.info("vector sync: %s", ", ".join(f"{t.name} {t.action} v{t.version}" for t in result.tables))
        except EncaptioError as exc:
            log.warning("vector sync failed: %s", exc)
            result = exc
        if on_result is not None:
            on_result(result)
        stop.wait(interval_seconds)
