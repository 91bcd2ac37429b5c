from __future__ import annotations

import uuid

import pytest

from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.errors import InvalidInputError, NotFoundError
from encaptio_data.platform import Platform


def test_add_user_is_idempotent_and_normalizes_email(platform: Platform) -> None:
    with platform.db.session() as session:
        first = add_user(session, email="  Ada@Example.COM ", name="Ada", role="creator")
        again = add_user(session, email="ada@example.com", name="Ada L.")
    assert first.created and not again.created
    assert first.id == again.id and first.email == "ada@example.com"


def test_same_email_in_two_organizations(platform: Platform) -> None:
    with platform.db.session() as session:
        one = ensure_organization(session, name="One", slug="one")
        two = ensure_organization(session, name="Two", slug="two")
        a = add_user(session, email="x@example.com", name="X", organization_id=one.id)
        b = add_user(session, email="x@example.com", name="X", organization_id=two.id)
    assert a.id != b.id


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"email": "not-an-email", "name": "N"}, "invalid email"),
    ({"email": "a@b.co", "name": "  "}, "name must not be empty"),
    ({"email": "a@b.co", "name": "N", "role": "overlord"}, "unknown role"),
    ({"email": "a@b.co", "name": "N", "organization_id": "nope"}, "not a valid id"),
    ({"email": "a@b.co'; DROP TABLE users; --", "name": "N"}, "invalid email"),
])
def test_bad_input_is_refused_with_one_line(platform: Platform, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        with platform.db.session() as session:
            add_user(session, **kwargs)
    assert "\n" not in str(raised.value)


def test_unknown_organization(platform: Platform) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        with platform.db.session() as session:
            add_user(session, email="a@b.co", name="N", organization_id=str(uuid.uuid4()))


def test_several_organizations_need_an_explicit_one(platform: Platform) -> None:
    with platform.db.session() as session:
        ensure_organization(session, name="One", slug="one")
        ensure_organization(session, name="Two", slug="two")
    with pytest.raises(InvalidInputError, match="--org"):
        with platform.db.session() as session:
            add_user(session, email="a@b.co", name="N")
