from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from encaptio_data.corpus import Corpus
from encaptio_data.authz import Grant, Permission, Principal
from encaptio_data.errors import InvalidInputError
from encaptio_data.platform import Platform
from encaptio_data.search.service import SearchMode, SearchRequest, SearchService, SortOrder

MODES = list(SearchMode)
# A principal allowed to search every organization: these tests are about search, not about roles
# (tests/test_authz.py covers those).
SEARCHER = Principal("system:test-search", (Grant(frozenset({Permission.SEARCH_ORG}), None),), system=True)


@pytest.fixture(scope="module")
def service(built: tuple[Platform, Corpus]) -> SearchService:
    platform, _ = built
    return SearchService(platform.vectors, platform.cache, principal=SEARCHER, db=platform.db)


def _org(corpus: Corpus, index: int = 0) -> str:
    return str(corpus.organizations[index].id)


@pytest.mark.parametrize("mode", MODES)
def test_labelled_queries_find_their_documents(built: tuple[Platform, Corpus], service: SearchService,
                                               mode: SearchMode) -> None:
    _, corpus = built
    titles = {file.id: file.title for file in corpus.files}
    found = 0
    queries = [q for q in corpus.queries if q.capsule_id is None]
    for labelled in queries:
        page = service.search(SearchRequest(str(labelled.organization_id), labelled.text, mode=mode, limit=10))
        relevant_titles = {titles[f] for f in labelled.relevant_file_ids}
        found += any(hit.title in relevant_titles for hit in page.hits)
    assert found / len(queries) >= 0.8, f"{mode}: only {found}/{len(queries)} queries found a relevant document"


def test_results_carry_what_callers_need(built: tuple[Platform, Corpus], service: SearchService) -> None:
    _, corpus = built
    query = next(q for q in corpus.queries if q.capsule_id is None)
    hit = service.search(SearchRequest(str(query.organization_id), query.text)).hits[0]
    assert hit.text and hit.score > 0 and hit.organization_id == str(query.organization_id)
    uuid.UUID(hit.content_id), uuid.UUID(hit.capsule_id)


def test_randomized_cross_organization_isolation(built: tuple[Platform, Corpus], service: SearchService) -> None:
    _, corpus = built
    rng = random.Random(5)
    vocabulary = [word for q in corpus.queries for word in q.text.split()]
    for _ in range(40):
        org = rng.choice(corpus.organizations)
        text = " ".join(rng.sample(vocabulary, 3))
        page = service.search(SearchRequest(str(org.id), text, mode=rng.choice(MODES), limit=50))
        assert all(hit.organization_id == str(org.id) for hit in page.hits)
    stranger = str(uuid.uuid4())
    for mode in MODES:
        assert service.search(SearchRequest(stranger, "bread starter telescope", mode=mode)).hits == []


@pytest.mark.parametrize("bad", [
    {"organization_id": "x' OR '1'='1"},
    {"organization_id": "00000000-0000-0000-0000-000000000000' OR 1=1 --"},
    {"capsule_ids": ("') OR organization_id != '",)},
    {"content_types": ("pdf' OR 1=1 --",)},
    {"created_from": datetime(2026, 1, 1)},
    {"query": ""},
    {"query": "x" * 5000},
    {"limit": 0},
    {"limit": 10_000},
    {"offset": -1},
    {"mode": "sql"},
    {"sort": "organization_id"},
    {"cursor": "not a cursor"},
])
def test_injection_and_bad_filters_are_refused(built: tuple[Platform, Corpus], service: SearchService,
                                               bad: dict[str, object]) -> None:
    _, corpus = built
    request = SearchRequest(**({"organization_id": _org(corpus), "query": "bread"} | bad))
    with pytest.raises(InvalidInputError) as raised:
        service.search(request)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", ["' OR 1=1 --", 'organization_id != "x"', "AND OR NOT ( ) * ~ : ^", "\"unclosed"])
def test_query_text_is_only_text(built: tuple[Platform, Corpus], service: SearchService, mode: SearchMode,
                                 query: str) -> None:
    _, corpus = built
    page = service.search(SearchRequest(_org(corpus), query, mode=mode, limit=100))
    assert all(hit.organization_id == _org(corpus) for hit in page.hits)


@pytest.mark.parametrize("mode", MODES)
def test_pagination_has_no_gaps_or_repeats(built: tuple[Platform, Corpus], service: SearchService,
                                           mode: SearchMode) -> None:
    _, corpus = built
    request = SearchRequest(_org(corpus), "how to get started", mode=mode, limit=7)
    seen, cursor, pages = [], None, 0
    while True:
        page = service.search(SearchRequest(**(request.__dict__ | {"cursor": cursor})))
        seen += [hit.chunk_id for hit in page.hits]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    everything = service.search(SearchRequest(**(request.__dict__ | {"limit": 100})))
    assert pages > 1
    assert len(seen) == len(set(seen)) == everything.total_candidates
    assert seen == [hit.chunk_id for hit in everything.hits]


def test_cursor_from_another_query_is_refused(built: tuple[Platform, Corpus], service: SearchService) -> None:
    _, corpus = built
    page = service.search(SearchRequest(_org(corpus), "garden", limit=2))
    assert page.next_cursor
    with pytest.raises(InvalidInputError, match="different query"):
        service.search(SearchRequest(_org(corpus), "telescope", limit=2, cursor=page.next_cursor))


def test_filters_narrow_results(built: tuple[Platform, Corpus], service: SearchService) -> None:
    _, corpus = built
    org = corpus.organizations[0]
    capsule = next(c for c in corpus.capsules if c.organization_id == org.id)
    for mode in MODES:
        page = service.search(SearchRequest(str(org.id), capsule.topic, mode=mode, capsule_ids=(str(capsule.id),),
                                            limit=50))
        assert page.hits and {hit.capsule_id for hit in page.hits} == {str(capsule.id)}
        pdfs = service.search(SearchRequest(str(org.id), capsule.topic, mode=mode, content_types=("pdf",), limit=50))
        assert {hit.content_type for hit in pdfs.hits} <= {"pdf"}
        future = datetime.now(UTC) + timedelta(days=365)
        assert service.search(SearchRequest(str(org.id), capsule.topic, mode=mode, created_from=future)).hits == []


def test_sorting_by_date(built: tuple[Platform, Corpus], service: SearchService) -> None:
    _, corpus = built
    newest = service.search(SearchRequest(_org(corpus), "guide", sort=SortOrder.NEWEST, limit=50)).hits
    dates = [hit.created_at for hit in newest]
    assert dates == sorted(dates, reverse=True)


def test_repeated_queries_are_served_from_the_cache(built: tuple[Platform, Corpus], service: SearchService) -> None:
    _, corpus = built
    request = SearchRequest(_org(corpus), "a question nobody asked before", mode=SearchMode.HYBRID)
    assert not service.search(request).cached
    assert service.search(request).cached


def test_pages_of_a_cached_list_survive_compaction(built: tuple[Platform, Corpus]) -> None:
    """The cached candidate list keeps row addresses; compaction moves rows, and later pages
    must still show the right chunks (read again by id), never another row."""
    from encaptio_data.search.index import open_chunks_table
    from encaptio_data.stores.cache import MemoryCache

    platform, corpus = built
    cached_service = SearchService(platform.vectors, MemoryCache(namespace="compaction-test"), principal=SEARCHER,
                                   db=platform.db)
    request = SearchRequest(_org(corpus), "guide", mode=SearchMode.FULLTEXT, limit=5)
    first = cached_service.search(request)
    assert first.total_candidates > 10 and not first.cached
    table = open_chunks_table(platform.vectors)
    rows_before = {r["_rowid"]: r["id"] for r in table.search().select(["id"]).with_row_id(True).to_arrow().to_pylist()}
    # The pipeline leaves one compact fragment per batch, stored by organization; another
    # organization's row written again leaves two small fragments for compaction to merge.
    other = table.search().where(f"organization_id != '{_org(corpus)}'").limit(1).to_arrow()
    table.delete(f"id = '{other.column('id')[0].as_py()}'")
    table.add(other)
    table.to_lance().optimize.compact_files()
    table.checkout_latest()
    rows_after = {r["_rowid"]: r["id"] for r in table.search().select(["id"]).with_row_id(True).to_arrow().to_pylist()}
    assert rows_before != rows_after, "compaction should have moved rows for this test to mean anything"
    later = cached_service.search(SearchRequest(_org(corpus), "guide", mode=SearchMode.FULLTEXT, limit=5, offset=5))
    fresh = SearchService(platform.vectors, None, principal=SEARCHER, db=platform.db).search(
        SearchRequest(_org(corpus), "guide", mode=SearchMode.FULLTEXT, limit=5, offset=5))
    assert later.cached
    assert [(h.chunk_id, h.text, h.content_id) for h in later.hits] == [(h.chunk_id, h.text, h.content_id)
                                                                         for h in fresh.hits]
    again = cached_service.search(request)
    assert again.cached and [h.chunk_id for h in again.hits] == [h.chunk_id for h in first.hits]


def test_a_chunk_deleted_after_caching_does_not_come_back(built: tuple[Platform, Corpus]) -> None:
    """Later pages of a cached list read rows at the version it was ranked on; a chunk deleted
    since (here without the cache invalidation the pipeline does) must not reappear."""
    from lancedb.expr import col, lit

    from encaptio_data.search.index import open_chunks_table
    from encaptio_data.stores.cache import MemoryCache

    platform, corpus = built
    cached_service = SearchService(platform.vectors, MemoryCache(namespace="deletion-test"), principal=SEARCHER,
                                   db=platform.db)
    cached_service.search(SearchRequest(_org(corpus), "guide", mode=SearchMode.HYBRID, limit=5))
    second_page = SearchRequest(_org(corpus), "guide", mode=SearchMode.HYBRID, limit=5, offset=5)
    doomed = SearchService(platform.vectors, None, principal=SEARCHER, db=platform.db).search(second_page).hits[0]
    table = open_chunks_table(platform.vectors)
    before = table.version
    table.delete(col("id") == lit(doomed.chunk_id))
    try:
        later = cached_service.search(second_page)
        assert later.cached
        assert doomed.chunk_id not in [hit.chunk_id for hit in later.hits]
        assert len(later.hits) == 4
    finally:
        table.restore(before)
