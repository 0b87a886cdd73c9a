"""schemas/asyncapi.yaml tells producer teams the truth: our topics, keys, schemas, headers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from app.config import Settings
from app.contracts import SCHEMAS_DIR, load_schema
from app.domain.vocabulary import EVENT_KINDS
from app.stream.records import DeadLetter, Record

DOCUMENT: dict[str, Any] = yaml.safe_load((SCHEMAS_DIR / "asyncapi.yaml").read_text("utf-8"))
KIND_OF_CHANNEL = {
    "userRegistered": "user_registered",
    "commentLiked": "comment_liked",
    "mailing": "mailing",
}


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOCUMENT
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_it_is_an_asyncapi_3_document_whose_references_all_resolve() -> None:
    assert DOCUMENT["asyncapi"] == "3.0.0"
    for ref in _refs(DOCUMENT):
        if ref.startswith("#/"):
            assert _resolve(ref) is not None, ref
        else:
            assert (SCHEMAS_DIR / ref).is_file(), ref


def test_the_channels_are_our_topics_by_default() -> None:
    settings = Settings(_env_file=None)
    addresses = {name: channel["address"] for name, channel in DOCUMENT["channels"].items()}
    assert sorted(addresses.values()) == sorted(
        [*settings.input_topics, settings.topic_dead_letter]
    )
    assert set(KIND_OF_CHANNEL.values()) == set(EVENT_KINDS)


def test_each_input_message_names_its_json_schema_and_the_user_id_key() -> None:
    for channel_name, kind in KIND_OF_CHANNEL.items():
        channel = DOCUMENT["channels"][channel_name]
        (message_ref,) = [m["$ref"] for m in channel["messages"].values()]
        message = _resolve(message_ref)
        schema_file = Path(message["payload"]["schema"]["$ref"]).name
        assert load_schema(kind) == load_schema(schema_file.removesuffix(".json"))
        assert load_schema(kind)["title"] == channel["address"]
        key = _resolve(message["key"]["$ref"])
        assert key == {**key, "type": "string", "format": "uuid"}


def test_the_dead_letter_headers_are_the_ones_we_write() -> None:
    record = Record("auth.user_registered", 2, 41, b"k", b"v")
    written = [name for name, _value in DeadLetter(record, "bad", "schema", uuid.uuid4()).headers()]
    documented = _resolve("#/components/messages/deadLetter")["headers"]
    assert documented["required"] == written
    assert set(documented["properties"]) == set(written)
