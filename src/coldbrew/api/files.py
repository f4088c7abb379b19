"""Uploaded files (Replicate's `/v1/files`): kept under `$COLDBREW_HOME/files/<id>/`.

Each file belongs to the account that uploaded it. Workers fetch a file through a signed
download URL (`/v1/files/{id}/download?expiry=...&signature=...`) that the gateway puts into a
job's input in place of the file's API URL, so no API key ever reaches a worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from coldbrew.api.auth import KeyCache
from coldbrew.api.responses import json_response
from coldbrew.clock import Clock
from coldbrew.crypto import Sealer
from coldbrew.errors import InvalidRequest, NotFound
from coldbrew.wire import iso

_CHUNK_BYTES = 1 << 20


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
    """One file taken out of a multipart body, read from `source` in chunks."""

    name: str
    content_type: str
    source: BinaryIO
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
        """Copy the upload to disk in chunks, hashing as it goes (blocking: run in a thread)."""
        file_id = str(uuid.uuid4())
        tmp = self.root / f".{file_id}.tmp"
        tmp.mkdir()
        sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        try:
            with open(tmp / "content", "wb") as out:
                while chunk := upload.source.read(_CHUNK_BYTES):
                    sha256.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            record = StoredFile(
                id=file_id,
                account=account,
                name=upload.name,
                content_type=upload.content_type,
                size=size,
                sha256=sha256.hexdigest(),
                md5=md5.hexdigest(),
                created_at=now,
                metadata=upload.metadata,
            )
            (tmp / "meta.json").write_bytes(orjson.dumps(asdict(record)))
            os.rename(tmp, self.root / record.id)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
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


async def read_upload(request: Request) -> tuple[Upload, FormData]:
    """The `content` file (and `metadata` JSON) of a multipart/form-data upload.

    Starlette's parser (python-multipart) streams the body: the file part is spooled to a
    temporary file past 1 MB, never held whole, and `BodyLimits` stops the body at
    `upload_max_mb`. Close the returned form when done.
    """
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidRequest(
            "upload files as multipart/form-data",
            hint="send the file in a form field named 'content'",
        )
    try:
        form = await request.form(max_files=1, max_fields=16)
    except MultiPartException as exc:
        raise InvalidRequest(
            f"the upload is not valid multipart/form-data: {exc.message}",
            hint="send one file in a form field named 'content'",
        ) from None
    content = form.get("content")
    if not isinstance(content, UploadFile):
        await form.close()
        raise InvalidRequest(
            "the upload has no 'content' file", hint="send the file in a form field named 'content'"
        )
    metadata: Any = {}
    raw = form.get("metadata")
    if isinstance(raw, str) and raw:
        try:
            metadata = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await form.close()
            raise InvalidRequest("metadata must be a JSON object") from None
    upload = Upload(
        name=content.filename or "file",
        content_type=content.content_type or "application/octet-stream",
        source=content.file,
        metadata=metadata if isinstance(metadata, dict) else {},
    )
    return upload, form


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
        upload, form = await read_upload(request)
        try:
            stored = await asyncio.to_thread(files.create, principal.account, upload, clock.time())
        finally:
            await form.close()
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
        return FileResponse(  # streamed from disk, never read whole
            files.content_path(stored.id),
            media_type=stored.content_type,
            headers={"content-disposition": f'attachment; filename="{stored.name}"'},
        )
