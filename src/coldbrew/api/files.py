"""Uploaded files (Replicate's `/v1/files`): kept under `$COLDBREW_HOME/files/<id>/`.

Each file belongs to the account that uploaded it. Workers fetch a file through a signed
download URL (`/v1/files/{id}/download?expiry=...&signature=...`) that the gateway puts into a
job's input in place of the file's API URL, so no API key ever reaches a worker.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldbrew.api.auth import KeyCache
from coldbrew.api.invoke import json_response
from coldbrew.api.wire import iso
from coldbrew.clock import Clock
from coldbrew.crypto import Sealer
from coldbrew.errors import InvalidRequest, NotFound

MAX_FILE_BYTES = 100 << 20


@dataclass
class StoredFile:
    """What is known about one uploaded file."""

    id: str
    account: str
    name: str
    content_type: str
    size: int
    sha256: str
    md5: str
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Upload:
    """One file taken out of a multipart body."""

    name: str
    content_type: str
    data: bytes
    metadata: dict[str, Any]


class FileStore:
    """Files on disk, one directory each, with a JSON record beside the bytes."""

    def __init__(self, root: Path, sealer: Sealer) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # sealed at rest; survives restarts: signed URLs in queued jobs stay valid
        self._key = sealer.file_secret(root / ".signing-key", "file-signing key").encode()

    def _dir(self, file_id: str) -> Path | None:
        try:
            uuid.UUID(file_id)
        except ValueError:
            return None
        return self.root / file_id

    def create(self, account: str, upload: Upload, now: float) -> StoredFile:
        if len(upload.data) > MAX_FILE_BYTES:
            raise InvalidRequest(
                f"the file is {len(upload.data)} bytes; the limit is {MAX_FILE_BYTES}",
                hint="upload a smaller file",
            )
        record = StoredFile(
            id=str(uuid.uuid4()),
            account=account,
            name=upload.name,
            content_type=upload.content_type,
            size=len(upload.data),
            sha256=hashlib.sha256(upload.data).hexdigest(),
            md5=hashlib.md5(upload.data, usedforsecurity=False).hexdigest(),
            created_at=now,
            metadata=upload.metadata,
        )
        tmp = self.root / f".{record.id}.tmp"
        tmp.mkdir()
        (tmp / "content").write_bytes(upload.data)
        (tmp / "meta.json").write_bytes(orjson.dumps(asdict(record)))
        os.rename(tmp, self.root / record.id)
        return record

    def get(self, file_id: str, account: str | None) -> StoredFile | None:
        """The file, or None when it does not exist or is another account's."""
        directory = self._dir(file_id)
        if directory is None or not (directory / "meta.json").is_file():
            return None
        record = StoredFile(**orjson.loads((directory / "meta.json").read_bytes()))
        if account is not None and record.account != account:
            return None
        return record

    def content_path(self, file_id: str) -> Path:
        directory = self._dir(file_id)
        assert directory is not None
        return directory / "content"

    def list(self, account: str) -> list[StoredFile]:
        found = [self.get(p.name, account) for p in self.root.iterdir() if p.is_dir()]
        return sorted((f for f in found if f), key=lambda f: f.created_at, reverse=True)

    def delete(self, file_id: str, account: str) -> bool:
        if self.get(file_id, account) is None:
            return False
        directory = self._dir(file_id)
        assert directory is not None
        shutil.rmtree(directory, ignore_errors=True)
        return True

    def signature(self, file_id: str, expiry: int) -> str:
        return hmac.new(self._key, f"{file_id}.{expiry}".encode(), hashlib.sha256).hexdigest()

    def check_signature(self, file_id: str, expiry: int, signature: str, now: float) -> bool:
        return expiry >= now and hmac.compare_digest(self.signature(file_id, expiry), signature)


def parse_multipart(content_type: str, body: bytes) -> Upload:
    """The `content` file (and `metadata` JSON) of a multipart/form-data upload."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest(
            "upload files as multipart/form-data",
            hint="send the file in a form field named 'content'",
        )
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    upload: Upload | None = None
    metadata: dict[str, Any] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "content":
            upload = Upload(
                name=part.get_filename() or "file",
                content_type=part.get_content_type() or "application/octet-stream",
                data=data,
                metadata={},
            )
        elif name == "metadata" and data:
            try:
                metadata = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise InvalidRequest("metadata must be a JSON object") from None
    if upload is None:
        raise InvalidRequest(
            "the upload has no 'content' file", hint="send the file in a form field named 'content'"
        )
    upload.metadata = metadata if isinstance(metadata, dict) else {}
    return upload


def file_json(stored: StoredFile, base: str) -> dict[str, Any]:
    """A file record as the client's `File` model reads it."""
    return {
        "id": stored.id,
        "name": stored.name,
        "content_type": stored.content_type,
        "size": stored.size,
        "etag": stored.md5,
        "checksums": {"sha256": stored.sha256, "md5": stored.md5},
        "metadata": stored.metadata,
        "created_at": iso(stored.created_at),
        "expires_at": None,
        "urls": {"get": f"{base}/v1/files/{stored.id}"},
    }


def add_routes(routes: APIRouter, files: FileStore, keys: KeyCache, clock: Clock) -> None:
    """`/files` routes on `routes` (Replicate's shapes and errors)."""

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @routes.post("/files", summary="Upload a file to pass as an input (multipart 'content')")
    async def create_file(request: Request) -> Response:
        principal = await keys.resolve(request)
        upload = parse_multipart(request.headers.get("content-type", ""), await request.body())
        stored = files.create(principal.account, upload, clock.time())
        return json_response(file_json(stored, base(request)), 201)

    @routes.get("/files", summary="Your uploaded files")
    async def list_files(request: Request) -> Response:
        principal = await keys.resolve(request)
        results = [file_json(f, base(request)) for f in files.list(principal.account)]
        return json_response({"previous": None, "next": None, "results": results})

    @routes.get("/files/{file_id}", summary="An uploaded file's record")
    async def get_file(file_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        stored = files.get(file_id, principal.account)
        if stored is None:
            raise NotFound(f"no file {file_id!r}")
        return json_response(file_json(stored, base(request)))

    @routes.delete("/files/{file_id}", summary="Delete an uploaded file")
    async def delete_file(file_id: str, request: Request) -> Response:
        principal = await keys.resolve(request)
        if not files.delete(file_id, principal.account):
            raise NotFound(f"no file {file_id!r}")
        return Response(status_code=204)

    @routes.get("/files/{file_id}/download", summary="A file's bytes (API key or signed URL)")
    @routes.get("/files/{file_id}/download/{filename}", include_in_schema=False)
    async def download_file(
        file_id: str, request: Request, expiry: int | None = None, signature: str | None = None
    ) -> Response:
        if expiry is not None and signature is not None:
            signed = files.check_signature(file_id, expiry, signature, clock.time())
            stored = files.get(file_id, None) if signed else None
        else:
            stored = files.get(file_id, (await keys.resolve(request)).account)
        if stored is None:
            raise NotFound(f"no file {file_id!r}", hint="the link may have expired")
        content = files.content_path(stored.id).read_bytes()
        return Response(
            content,
            media_type=stored.content_type,
            headers={"content-disposition": f'attachment; filename="{stored.name}"'},
        )
