"""A deterministic demo corpus: organisations, users, capsules, files, usage and consents.

Pure data generation with no database or orchestration dependencies; loaders elsewhere
decide how the records reach storage. File bytes are rendered lazily from each file's
recipe (`CorpusFile.data`), so a corpus can be streamed without holding every file.
"""

from encaptio_data.corpus.compose import Document, Section
from encaptio_data.corpus.generator import CORPUS_NAMESPACE, CorpusSpec, corpus_uuid, generate
from encaptio_data.corpus.model import (
    Capsule,
    Consent,
    Corpus,
    CorpusFile,
    Event,
    Interaction,
    LabelledQuery,
    Organization,
    User,
    iter_file_bytes,
)
from encaptio_data.corpus.render import FileRecipe
from encaptio_data.corpus.topics import TOPICS, Facet, Topic

__all__ = [
    "CORPUS_NAMESPACE",
    "TOPICS",
    "Capsule",
    "Consent",
    "Corpus",
    "CorpusFile",
    "CorpusSpec",
    "Document",
    "Event",
    "Facet",
    "FileRecipe",
    "Interaction",
    "LabelledQuery",
    "Organization",
    "Section",
    "Topic",
    "User",
    "corpus_uuid",
    "generate",
    "iter_file_bytes",
]
