"""Protobuf: ``kubectl create namespace`` sends its body as application/vnd.kubernetes.protobuf."""

from __future__ import annotations

from collections.abc import Iterable

from pidmap.sandbox.api.errors import bad_request
from pidmap.sandbox.api.meta import Obj

PROTOBUF = "application/vnd.kubernetes.protobuf"
_PROTOBUF_MAGIC = b"k8s\x00"


def _protobuf_fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    """(field number, value) of one protobuf message; length-delimited values stay bytes."""
    offset = 0

    def varint() -> int:
        nonlocal offset
        value = shift = 0
        while True:
            if offset >= len(data):
                raise bad_request("the body of the request was in an unknown format: truncated protobuf")
            byte = data[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while offset < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            length = varint()
            yield number, data[offset : offset + length]
            offset += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, data[offset : offset + size]
            offset += size
        else:
            raise bad_request(f"the body of the request was in an unknown format: protobuf wire type {wire}")


def _protobuf_map(entries: list[bytes]) -> dict[str, str]:
    result: dict[str, str] = {}
    for entry in entries:
        fields = {number: value for number, value in _protobuf_fields(entry)}
        key, value = fields.get(1, b""), fields.get(2, b"")
        if isinstance(key, bytes) and isinstance(value, bytes):
            result[key.decode()] = value.decode()
    return result


def decode_protobuf_metadata_object(body: bytes) -> Obj:
    """apiVersion, kind and metadata (name, generateName, namespace, labels, annotations) of an
    object sent as Kubernetes protobuf (magic ``k8s\\0`` + runtime.Unknown). Enough for objects
    whose spec the sandbox ignores, such as Namespace."""
    if not body.startswith(_PROTOBUF_MAGIC):
        raise bad_request("the body of the request was in an unknown format: missing protobuf magic")
    api_version = kind = ""
    raw = b""
    for number, value in _protobuf_fields(body[len(_PROTOBUF_MAGIC) :]):
        if number == 1 and isinstance(value, bytes):  # TypeMeta
            for type_number, type_value in _protobuf_fields(value):
                if isinstance(type_value, bytes):
                    api_version = type_value.decode() if type_number == 1 else api_version
                    kind = type_value.decode() if type_number == 2 else kind
        elif number == 2 and isinstance(value, bytes):
            raw = value
    meta: Obj = {}
    labels: list[bytes] = []
    annotations: list[bytes] = []
    for number, value in _protobuf_fields(raw):
        if number != 1 or not isinstance(value, bytes):  # field 1 of every object is ObjectMeta
            continue
        for meta_number, meta_value in _protobuf_fields(value):
            if not isinstance(meta_value, bytes):
                continue
            if meta_number in (1, 2, 3):
                meta[("name", "generateName", "namespace")[meta_number - 1]] = meta_value.decode()
            elif meta_number == 11:
                labels.append(meta_value)
            elif meta_number == 12:
                annotations.append(meta_value)
    if labels:
        meta["labels"] = _protobuf_map(labels)
    if annotations:
        meta["annotations"] = _protobuf_map(annotations)
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}
