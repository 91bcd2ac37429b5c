"""scripts/install-pgbackrest takes a binary from another Debian release only through the chain
Debian signs: a mirror whose InRelease does not verify is refused and nothing is installed."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lifecycle.conftest import REPOSITORY

SCRIPT = REPOSITORY / "scripts" / "install-pgbackrest"
LINK = Path("/usr/local/bin/pgbackrest")


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str]

    def do_GET(self) -> None:
        self.requested.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A Debian mirror on loopback serving whatever the test puts under its root, and the paths asked for."""
    requested: list[str] = []
    handler = type("Handler", (_RecordingHandler,), {"requested": requested})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path, requested
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs as root; as another user it stops before")
def test_a_mirror_whose_release_file_is_not_signed_by_debian_is_refused(
        mirror: tuple[str, Path, list[str]]) -> None:
    url, root, requested = mirror
    dists = root / "dists" / "trixie"
    dists.mkdir(parents=True)
    # A Release that names a package index, clear-signed by nobody Debian's keyring knows.
    (dists / "InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: stable\nSHA256:\n"
        f" {'0' * 64} 123 main/binary-amd64/Packages.xz\n-----BEGIN PGP SIGNATURE-----\n\n"
        "iQIzBAEBCAAdFiEEAAAAAAAAAAAAAAAAAAAAAAAAAAAFAmAAAAAACgkQAAAAAAAAAAA=\n"
        "-----END PGP SIGNATURE-----\n")
    before = os.readlink(LINK) if LINK.is_symlink() else None
    result = subprocess.run(["bash", str(SCRIPT), "--from-suite"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "ENCAPTIO_DEBIAN_MIRROR": url})
    assert result.returncode != 0
    assert "does not carry a good signature" in result.stderr
    assert requested == ["/dists/trixie/InRelease"]  # nothing it names was fetched
    assert (os.readlink(LINK) if LINK.is_symlink() else None) == before


def _unsigned_release(root: Path) -> None:
    dists = root / "dists" / "trixie"
    dists.mkdir(parents=True)
    (dists / "InRelease").write_text("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: stable\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs as root; as another user it stops before")
def test_a_fallback_is_remembered_for_a_day_so_later_runs_neither_fetch_nor_print(
        mirror: tuple[str, Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> None:
    url, root, requested = mirror
    _unsigned_release(root)
    # Stand-ins for an old pgBackRest and for apt-get: the real fallback would change this
    # machine's packages. Everything else (the mirror, gpgv, the marker) is the real thing.
    bin_dir = tmp_path_factory.mktemp("bin")
    apt_log = bin_dir / "apt-get.log"
    (bin_dir / "pgbackrest").write_text("#!/bin/sh\necho 'pgBackRest 2.45'\n")
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {apt_log}\n")
    for tool in ("pgbackrest", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    marker = bin_dir / "fallback"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENCAPTIO_DEBIAN_MIRROR": url,
           "ENCAPTIO_PGBACKREST_FALLBACK_MARKER": str(marker)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env=env)

    first = run()
    assert first.returncode == 0 and "installing Debian trixie's package" in first.stdout
    assert "does not carry a good signature" in first.stderr and "installing this system's" in first.stderr
    assert apt_log.read_text().splitlines() == ["update -qq", "install -y -qq pgbackrest"]
    assert "from Debian trixie failed at" in marker.read_text() and len(requested) == 1

    second = run()
    assert second.returncode == 0 and second.stdout == "" and "--retry" in second.stderr
    assert "older than 2.54: installing it from Debian trixie failed at" in second.stderr
    assert len(requested) == 1 and len(apt_log.read_text().splitlines()) == 2

    assert run("--retry").returncode == 0 and len(requested) == 2
    day_ago = marker.stat().st_mtime - 25 * 3600
    os.utime(marker, (day_ago, day_ago))
    assert "installing Debian trixie's package" in run().stdout and len(requested) == 3
