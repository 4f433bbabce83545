"""Ids from user input: one parser (``sdk_base.parse_uuid``) for every kind of id, and
its error reads as a sentence for each."""

from __future__ import annotations

from uuid import UUID

import pytest

from hodei.errors import InvalidInput
from hodei.sdk_base import parse_job_id, parse_uuid

ID = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("worker id", "not a worker id: 'nope'"),
        ("job id", "not a job id: 'nope'"),
        ("aggregate id", "not an aggregate id: 'nope'"),
    ],
)
def test_a_bad_id_is_named_with_its_article(what: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_uuid("nope", what)
    assert str(caught.value) == message


def test_an_id_is_taken_as_typed() -> None:
    assert parse_uuid(f" {ID} ", "worker id") == ID
    assert parse_uuid(ID, "worker id") is ID
    assert parse_job_id(str(ID).upper()) == ID
    with pytest.raises(InvalidInput, match=r"^not a job id: 'x'$"):
        parse_job_id("x")
