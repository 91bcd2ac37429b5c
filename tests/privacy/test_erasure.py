"""Erasure reaches every store: the canary test, on the embedded default and the production stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.audit import verify_chain
from encaptio_data.db.enums import HoldScope
from encaptio_data.content.uploads import upload_key
from encaptio_data.db.models import AuditEntry, ErasureLedger, LegalHold, User
from encaptio_data.db.sealing import ERASED
from encaptio_data.keys import KeyDestroyedError, KeyStore
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import LegalHoldError, replay_ledger, scan_directory, verify_erased
from encaptio_data.privacy.process import RequestProcessor, verify_receipt
from encaptio_data.privacy.requests import Requests
from encaptio_data.search.index import open_chunks_table
from tests.privacy.conftest import plant, run_pipeline


def _erase(platform: Platform, email: str, officer: str) -> dict:
    requests = Requests(platform)
    submitted = requests.submit(type="erasure", email=email)
    assert submitted.request["status"] == "identity_verified"
    requests.approve(submitted.request["id"], operator=officer)
    return RequestProcessor(platform).process(submitted.request["id"], operator=officer)


def test_canary_leaves_no_byte_anywhere_and_others_are_untouched(platform: Platform, officer: str) -> None:
    victim, bystander = plant(platform, "victim"), plant(platform, "bystander")
    run_pipeline(platform)
    KeyStore(platform.settings.keys_dir).encrypt_for(str(victim.user_id), b"backup of victim")
    table = open_chunks_table(platform.vectors)
    assert table.search().where(f"text LIKE '%{victim.canary}%'").to_list(), "planting failed"

    before = verify_erased(platform, None, [victim.canary])
    assert not before.passed and before.findings

    result = _erase(platform, victim.email, officer)
    assert result["status"] == "completed", result["status_reason"]
    receipt = result["receipt"]
    assert receipt["verification"]["passed"] and verify_receipt(KeyStore(platform.settings.keys_dir), receipt)
    assert victim.canary not in str(receipt) and victim.email not in str(receipt)

    after = verify_erased(platform, None, [victim.canary, str(victim.user_id), victim.user_id.hex])
    assert after.passed, after.findings
    if platform.settings.profile == "embedded":
        assert after.scanned["files"] > 10
    with pytest.raises(KeyDestroyedError):
        KeyStore(platform.settings.keys_dir).decrypt_for(str(victim.user_id), b"ENC1" + b"\0" * 40)

    untouched = verify_erased(platform, None, [bystander.canary])
    assert not untouched.passed, "the bystander's data must still be there"
    with platform.db.session() as session:
        assert session.get(User, bystander.user_id) is not None
    assert platform.cache.get(f"session:{bystander.canary}") == bystander.canary.encode()
    assert verify_chain(platform.db).valid


def test_a_name_in_someone_elses_document_is_left_for_review_but_an_email_fails(platform: Platform,
                                                                                officer: str) -> None:
    named, emailed, author = plant(platform, "named"), plant(platform, "emailed"), plant(platform, "author")
    notes = f"# Meeting notes\n\nMet {named.name} about telescopes. Write to {emailed.email} about sourdough."
    platform.objects.put(upload_key(author.organization_id, author.capsule_id, "meeting-notes.md"), notes.encode(),
                         content_type="text/markdown", metadata={"uploaded-by": str(author.user_id)})
    run_pipeline(platform)

    # A name is shared: the author's notes keep it, and the request completes with the places counted.
    result = _erase(platform, named.email, officer)
    assert result["status"] == "completed", result["status_reason"]
    mentions = result["receipt"]["verification"]["mentions_for_review"]
    assert mentions["object"] >= 1 and mentions["vector"] == 1, mentions  # the notes, and their chunks
    assert named.name not in str(result) and verify_receipt(KeyStore(platform.settings.keys_dir), result["receipt"])
    left = verify_erased(platform, None, [], [named.name])
    assert left.passed and left.mentions and not left.findings, "the author's notes are theirs: untouched"
    with platform.db.session() as session:
        reviewed = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "erasure.mentions_for_review")).one()
    assert reviewed.target == result["id"] and reviewed.details["mentions"] == mentions

    # An email is the subject's alone: the same notes hold it, so that erasure fails, naming the places.
    failed = _erase(platform, emailed.email, officer)
    assert failed["status"] == "failed" and "verification found data left" in failed["status_reason"]
    assert "vector table" in failed["status_reason"]


def test_second_erasure_of_the_same_subject_is_a_clear_answer(platform: Platform, officer: str) -> None:
    victim = plant(platform, "twice")
    assert _erase(platform, victim.email, officer)["status"] == "completed"
    from encaptio_data.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no data subject"):
        Requests(platform).submit(type="erasure", email=victim.email)


def test_legal_hold_blocks_erasure_with_its_reason(platform: Platform, officer: str) -> None:
    held = plant(platform, "held")
    with platform.db.session() as session:
        session.add(LegalHold(organization_id=held.organization_id, scope=HoldScope.USER, scope_id=held.user_id,
                              reason="litigation 2026-17", placed_by="counsel@acme.test"))
    result = _erase(platform, held.email, officer)
    assert result["status"] == "failed" and "litigation 2026-17" in result["status_reason"]
    with platform.db.session() as session:
        assert session.get(User, held.user_id) is not None


def test_crash_in_the_middle_of_an_erasure_converges(platform: Platform, officer: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    victim = plant(platform, "crash")
    run_pipeline(platform)
    requests = Requests(platform)
    request_id = requests.submit(type="erasure", email=victim.email).request["id"]
    requests.approve(request_id, operator=officer)
    import encaptio_data.privacy.erasure as erasure

    with monkeypatch.context() as patch:
        patch.setattr(erasure, "purge_vectors", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
        with pytest.raises(KeyboardInterrupt):
            RequestProcessor(platform).process(request_id, operator=officer)
    with platform.db.session() as session:
        assert session.get(User, victim.user_id) is not None, "rows go last, so a crash keeps them"
    result = RequestProcessor(platform).process(request_id, operator=officer)
    assert result["status"] == "completed"
    assert verify_erased(platform, victim.user_id, [victim.canary]).passed


def test_restore_from_an_old_copy_then_replaying_the_ledger_erases_again(tmp_path: Path, officer: str) -> None:
    from encaptio_data.bootstrap import initialize
    from encaptio_data.settings import get_settings

    platform = Platform(get_settings(data_dir=tmp_path / "restore"))
    initialize(platform)
    with platform.db.session() as session:
        from encaptio_data.accounts import add_user, ensure_organization

        org = ensure_organization(session, name="Acme", slug="acme")
        officer = add_user(session, email="dpo@acme.test", name="DPO", organization_id=org.id,
                           role="privacy_officer").email
    victim = plant(platform, "restored")
    database_file = Path(platform.db.engine.url.database)
    platform.db.compact_deleted()
    backup = tmp_path / "backup.sqlite3"
    shutil.copy(database_file, backup)
    assert _erase(platform, victim.email, officer)["status"] == "completed"
    with platform.db.session() as session:
        ledger = session.scalars(sa.select(ErasureLedger.subject_hash)).all()
    platform.close()

    shutil.copy(backup, database_file)
    for suffix in ("-wal", "-shm"):
        Path(f"{database_file}{suffix}").unlink(missing_ok=True)
    restored = Platform(get_settings(data_dir=tmp_path / "restore"))
    with restored.db.session() as session:
        returned = session.get(User, victim.user_id)
        assert returned is not None, "the old copy brings the subject's row back"
        # ...but not who they were: their data key is destroyed, so the sealed identity is unreadable.
        assert (returned.email, returned.name, returned.metadata_) == (ERASED, ERASED, {})
        session.add(ErasureLedger(subject_hash=ledger[0]))  # the ledger travels outside the restored copy
    assert victim.email.encode() not in backup.read_bytes()
    # What they typed was sealed under the same key when it was written: not in the copy either.
    assert f"where is {victim.canary}".encode() not in backup.read_bytes()
    assert replay_ledger(restored) == [f"shredded:{victim.user_id}"]
    with restored.db.session() as session:
        assert session.get(User, victim.user_id) is None
    assert scan_directory(tmp_path / "restore", [victim.canary], {}, skip={restored.settings.keys_dir}) == []


def test_dagster_runs_keep_no_personal_data_in_the_instance(tmp_path: Path) -> None:
    """The pipeline run through Dagster (real model), then erasure: the scan covers DAGSTER_HOME too."""
    from encaptio_data.accounts import add_user, ensure_organization
    from encaptio_data.bootstrap import initialize
    from encaptio_data.content.uploads import capsule_ids
    from encaptio_data.jobs.run import materialize_all

    platform = Platform()
    initialize(platform)
    with platform.db.session() as session:
        org = ensure_organization(session, name="Acme", slug="acme")
        officer = add_user(session, email="dpo@acme.test", name="DPO", organization_id=org.id,
                           role="privacy_officer").email
    victim = plant(platform, "dagster")
    run = materialize_all(platform.settings, dynamic_partitions={"capsules": capsule_ids(platform.db)})
    assert run.success, run.failures
    assert _erase(platform, victim.email, officer)["status"] == "completed"
    found = scan_directory(platform.settings.root, [victim.canary, victim.email], {},
                           skip={platform.settings.keys_dir.resolve()})
    assert found == []
