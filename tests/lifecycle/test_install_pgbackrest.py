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
