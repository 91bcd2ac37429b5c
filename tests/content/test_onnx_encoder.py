"""The int8 ONNX encoder: fidelity to the fp32 model, its export cache, the setting that picks
it, and retrieval quality on the labelled demo queries. Everything runs the real models."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from pydantic import Field

from encaptio_data.content.chunking import chunk_extraction
from encaptio_data.content.embedding import (
    MODEL_NAME,
    SentenceTransformerEmbedder,
    check_corpus_model,
    embedder_kind,
    embedder_model_name,
    load_embedder,
    load_query_embedder,
)
from encaptio_data.content.extract import extract
from encaptio_data.content.onnx_encoder import (
    CACHE_DIRNAME,
    DIGEST_FILE,
    INT8_MODEL_NAME,
    MODEL_FILE,
    OnnxInt8Embedder,
    cache_key,
    ensure_int8_model,
)
from encaptio_data.corpus import CorpusSpec, generate
from encaptio_data.errors import SettingsError
from encaptio_data.settings import Settings, get_settings

if "embedder" in Settings.model_fields:
    EmbedderSettings = Settings
else:
    class EmbedderSettings(Settings):  # type: ignore[no-redef]
        """Settings with the ENCAPTIO_EMBEDDER field as settings.py declares it once wired."""

        embedder: Literal["onnx-int8", "torch"] = Field(default="onnx-int8")


@pytest.fixture(scope="module")
def chunk_texts() -> list[str]:
    """Real chunk texts: demo corpus documents through the real extractor and chunker."""
    corpus = generate(CorpusSpec(seed=7, organizations=1, capsules_per_organization=1, files_per_capsule=8,
                                 events_per_capsule=0))
    texts: list[str] = []
    for file in corpus.files:
        if file.is_document:
            extraction = extract(file.data, file.content_type, mime_type=file.mime_type, filename=file.filename)
            texts += [c.text for c in chunk_extraction(extraction, content_id=str(file.id), content_sha256="s")]
    assert len(texts) >= 20
    return texts[:48]


@pytest.fixture(scope="module")
def int8(tmp_path_factory: pytest.TempPathFactory) -> OnnxInt8Embedder:
    # Module fixtures run before the per-test environment isolation: name a data dir explicitly
    # (the process-wide encoder exports into the data dir of its first load).
    embedder = load_embedder(get_settings(data_dir=tmp_path_factory.mktemp("int8") / "data"), kind="onnx-int8")
    assert isinstance(embedder, OnnxInt8Embedder)
    return embedder


def _cached_copy(embedder: OnnxInt8Embedder, data_dir: Path) -> Path:
    """A copy of the process's export in another data dir's cache; returns the model file."""
    target = data_dir / "models" / CACHE_DIRNAME / cache_key()
    shutil.copytree(embedder.model_path.parent, target)
    return target / MODEL_FILE


def test_int8_vectors_stay_within_cosine_099_of_fp32(int8: OnnxInt8Embedder, chunk_texts: list[str]) -> None:
    fp32 = load_embedder(kind="torch")
    quantized, reference = int8.encode(chunk_texts, batch_size=16), fp32.encode(chunk_texts)
    assert quantized.shape == reference.shape == (len(chunk_texts), 384) and quantized.dtype == np.float32
    assert np.allclose(np.linalg.norm(quantized, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(quantized * reference, axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, f"mean {cosine.mean():.4f}, min {cosine.min():.4f}"
    # A text's vector does not depend on the other texts of the call (order, batch size), so a
    # query embeds exactly as the same chunk text did.
    assert np.allclose(int8.encode(chunk_texts[::-1], batch_size=64)[::-1], quantized, atol=1e-6)
    assert np.allclose(int8.encode([chunk_texts[5]])[0], quantized[5], atol=1e-6)


def test_tokenization_is_the_sentence_transformers_one(int8: OnnxInt8Embedder) -> None:
    assert isinstance(fp32 := load_embedder(kind="torch"), SentenceTransformerEmbedder)
    texts = ["  leading and trailing spaces  ", "word " * 400, "Ünïcödé, 日本語 and emoji 🙂", "short"]
    expected = fp32._model.tokenizer([t.strip() for t in texts], padding=True, truncation="longest_first",
                                     max_length=fp32._model.max_seq_length, return_tensors="np")
    ours = int8.tokenize(texts)
    assert int8.max_seq_length == fp32._model.max_seq_length == 256
    assert ours["input_ids"].shape[1] == 256
    for name in ("input_ids", "attention_mask"):
        assert np.array_equal(ours[name], expected[name])


def test_encode_refuses_one_string_and_accepts_no_texts(int8: OnnxInt8Embedder) -> None:
    with pytest.raises(TypeError):
        int8.encode("one text")
    assert int8.encode([]).shape == (0, 384)


def test_a_valid_export_is_reused_not_exported_again(int8: OnnxInt8Embedder, tmp_path: Path) -> None:
    model = _cached_copy(int8, tmp_path / "data")
    before = model.stat()
    cached = ensure_int8_model(tmp_path / "data")
    assert not cached.exported and cached.path == model
    loaded = OnnxInt8Embedder(tmp_path / "data", threads=1)
    after = model.stat()
    assert loaded.model_path == model
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_truncated_export_is_detected_and_exported_again(int8: OnnxInt8Embedder, chunk_texts: list[str],
                                                           tmp_path: Path) -> None:
    model = _cached_copy(int8, tmp_path / "data")
    size = model.stat().st_size
    with open(model, "r+b") as handle:
        handle.truncate(size // 3)
    cached = ensure_int8_model(tmp_path / "data")
    assert cached.exported and model.stat().st_size == size
    recorded = (model.parent / DIGEST_FILE).read_text().split()[0]
    import hashlib

    assert hashlib.sha256(model.read_bytes()).hexdigest() == recorded
    again = OnnxInt8Embedder(tmp_path / "data", threads=1)
    assert np.sum(again.encode(chunk_texts[:8]) * int8.encode(chunk_texts[:8]), axis=1).min() > 0.9999


def _race(data_dir: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    barrier.wait(timeout=300)
    cached = ensure_int8_model(Path(data_dir))
    import hashlib

    results.put((os.getpid(), cached.exported, hashlib.sha256(cached.data).hexdigest()))


def test_two_processes_racing_the_first_export_make_one_good_file(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_race, args=(str(tmp_path / "data"), barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=1200) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(exported for _, exported, _ in outcomes) == [False, True]
    root = tmp_path / "data" / "models" / CACHE_DIRNAME
    recorded = (root / cache_key() / DIGEST_FILE).read_text().split()[0]
    assert {digest for _, _, digest in outcomes} == {recorded}
    # Nothing half-written is left: one export directory, no staging directories.
    assert [p.name for p in root.iterdir() if p.is_dir()] == [cache_key()]


def test_the_setting_chooses_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert embedder_kind(EmbedderSettings()) == "onnx-int8"
    assert isinstance(load_embedder(EmbedderSettings()), OnnxInt8Embedder)
    assert embedder_model_name(EmbedderSettings()) == INT8_MODEL_NAME != MODEL_NAME
    query = load_query_embedder(EmbedderSettings())
    assert isinstance(query, OnnxInt8Embedder) and query.threads == 1
    assert load_query_embedder(EmbedderSettings()) is query

    monkeypatch.setenv("ENCAPTIO_EMBEDDER", "torch")
    assert embedder_kind(EmbedderSettings()) == "torch"
    assert isinstance(load_embedder(EmbedderSettings()), SentenceTransformerEmbedder)
    assert load_query_embedder(EmbedderSettings()) is load_embedder(EmbedderSettings())
    assert embedder_model_name(EmbedderSettings()) == MODEL_NAME

    class Unchecked:  # what an unvalidated value would look like to the factory
        embedder = "onnx-fp16"

    with pytest.raises(SettingsError, match="ENCAPTIO_EMBEDDER: must be one of onnx-int8, torch"):
        embedder_kind(Unchecked())  # type: ignore[arg-type]


def test_switching_encoders_re_embeds_and_mixed_queries_are_refused(int8: OnnxInt8Embedder,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import encaptio_data.content.embedding as embedding

    # A passed check is trusted for a minute in production; here every check must look again.
    monkeypatch.setattr(embedding, "CORPUS_CHECK_TTL_SECONDS", 0.0)
    from encaptio_data.accounts import add_user, ensure_organization
    from encaptio_data.bootstrap import initialize
    from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
    from encaptio_data.content.uploads import register_uploads, upload_key
    from encaptio_data.db.models import Capsule
    from encaptio_data.platform import Platform

    with Platform(get_settings()) as platform:
        initialize(platform)
        with platform.db.session() as session:
            org = ensure_organization(session, name="Bakery", slug=f"bakery-{uuid.uuid4().hex[:6]}")
            owner = add_user(session, email="baker@bakery.test", name="Baker", organization_id=org.id, role="creator")
            capsule = Capsule(organization_id=org.id, owner_id=owner.id, title="Bread")
            session.add(capsule)
        platform.objects.put(upload_key(org.id, capsule.id, "starter.txt"),
                             b"Sourdough starters need regular feeding with flour and water.", content_type="text/plain")
        register_uploads(platform.db, platform.objects)
        extract_content(platform.db, platform.objects)
        chunk_content(platform.db)
        assert embed_content(platform.db, platform.vectors, int8).processed == 1
        check_corpus_model(platform.db, INT8_MODEL_NAME)
        with pytest.raises(SettingsError, match="ENCAPTIO_EMBEDDER: the search index holds vectors of .*onnx-int8pc"
                                                ".* queries would be embedded with sentence-transformers/all-MiniLM-L6-v2:"
                                                " run the content pipeline to re-embed, or set ENCAPTIO_EMBEDDER=onnx-int8"):
            check_corpus_model(platform.db, MODEL_NAME)
        # The pipeline re-embeds what another model embedded; then the torch queries are accepted.
        assert embed_content(platform.db, platform.vectors, load_embedder(kind="torch")).processed == 1
        assert embed_content(platform.db, platform.vectors, load_embedder(kind="torch")).processed == 0
        check_corpus_model(platform.db, MODEL_NAME)
        with pytest.raises(SettingsError, match="or set ENCAPTIO_EMBEDDER=torch"):
            check_corpus_model(platform.db, INT8_MODEL_NAME)


def test_retrieval_quality_of_int8_is_within_one_percent_of_fp32(int8: OnnxInt8Embedder, tmp_path: Path) -> None:
    """A subset of the labelled set (one organization): nDCG@10 of semantic and hybrid search."""
    from bench.retrieval import DEFAULT_SPEC, run_retrieval_bench

    spec = CorpusSpec(**(DEFAULT_SPEC | {"organizations": 1, "capsules_per_organization": 3, "files_per_capsule": 8}))
    fp32 = run_retrieval_bench(data_dir=tmp_path, spec=spec, variants=False, embedder=load_embedder(kind="torch"))
    quantized = run_retrieval_bench(data_dir=tmp_path, spec=spec, variants=False, embedder=int8)
    assert quantized["model"] == INT8_MODEL_NAME and fp32["model"] == MODEL_NAME
    assert quantized["corpus"]["queries"] == fp32["corpus"]["queries"] >= 20
    for mode in ("semantic", "hybrid"):
        reference, measured = fp32[mode]["all"]["ndcg_at_10"], quantized[mode]["all"]["ndcg_at_10"]
        assert measured >= 0.99 * reference, f"{mode}: int8 nDCG@10 {measured} vs fp32 {reference}"
