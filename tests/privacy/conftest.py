from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pytest

from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.content.uploads import register_uploads, upload_key
from encaptio_data.db.enums import ConsentPurpose, EventType
from encaptio_data.db.models import Capsule, Consent, Interaction, InteractionEvent, utcnow
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform


class HashingEmbedder:
    """A deterministic stand-in for the model: erasure is about where bytes live, not about
    vector quality, and the real model's cost would buy nothing here. Search quality is
    covered with the real model in tests/search."""

    model_name = "test-hashing-embedder"
    dimension = 384

    def encode(self, texts, *, batch_size: int = 64) -> np.ndarray:  # type: ignore[no-untyped-def]
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                vectors[row, hash(word) % self.dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


@dataclass
class Subject:
    user_id: uuid.UUID
    email: str
    name: str
    canary: str
    organization_id: uuid.UUID
    capsule_id: uuid.UUID


def plant(platform: Platform, label: str, org_slug: str = "acme") -> Subject:
    """A creator with a capsule, a file, events, consents and cache entries, all carrying one canary."""
    canary = f"canary{label}{uuid.uuid4().hex[:10]}"
    with platform.db.session() as session:
        org = ensure_organization(session, name="Acme", slug=org_slug)
        user = add_user(session, email=f"{canary}@example.org", name=f"Name {canary}", organization_id=org.id,
                        role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=user.id, title=f"Notes of {canary}")
        session.add(capsule)
        session.flush()
        interaction = Interaction(capsule_id=capsule.id, user_id=user.id, session_id=f"s-{canary}",
                                  started_at=utcnow(), client={"ua": canary})
        session.add(interaction)
        session.flush()
        session.add(InteractionEvent(interaction_id=interaction.id, capsule_id=capsule.id, user_id=user.id,
                                     session_id=interaction.session_id, event_type=EventType.SEARCH,
                                     payload={"query": f"where is {canary}"}, occurred_at=utcnow()))
        session.add(Consent(user_id=user.id, purpose=ConsentPurpose.ANALYTICS, granted=True, version="2026-01"))
    text = f"# Diary\n\nThe private diary of {canary}. " + "It talks about sourdough and telescopes. " * 30
    platform.objects.put(upload_key(org.id, capsule.id, f"{canary}.md"), text.encode(), content_type="text/markdown",
                         metadata={"uploaded-by": str(user.id)})
    platform.cache.set(f"session:{canary}", canary.encode(), tags=[f"subject:{user.id}"])
    return Subject(user.id, user.email, user.name, canary, org.id, capsule.id)


def run_pipeline(platform: Platform) -> None:
    from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
    from encaptio_data.search.index import build_indexes, open_chunks_table

    keys = KeyStore(platform.settings.keys_dir)  # as the assets do: uploads are sealed, then read back
    register_uploads(platform.db, platform.objects, keys=keys)
    extract_content(platform.db, platform.objects, keys=keys)
    chunk_content(platform.db)
    embed_content(platform.db, platform.vectors, HashingEmbedder(), cache=platform.cache)
    build_indexes(open_chunks_table(platform.vectors))


@pytest.fixture
def officer(platform: Platform) -> str:
    with platform.db.session() as session:
        org = ensure_organization(session, name="Acme", slug="acme")
        return add_user(session, email="dpo@acme.test", name="DPO", organization_id=org.id,
                        role="privacy_officer").email
