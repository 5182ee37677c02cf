"""File uploads (Direct Upload): create, send (multipart/form-data), complete, retrieve, list; and
what attaching an upload means to blocks, files properties and covers.

An upload is `pending` until its bytes are in (one send, or every part and then `complete`), then
`uploaded`; one left unattached past its expiry (an hour) is `expired` and can no longer be sent
to or attached. Attaching clears the expiry: the file stays with what it is attached to, and one
upload can be attached many times. Sizes are checked against Notion's part limits and the
workspace's cap (`users/me` -> bot.workspace_limits, the `notion_upload_cap` setting). The bytes
live in the state folder, served read-only under /_sandbox/files/ as Notion serves signed URLs.
"""

from __future__ import annotations

import email.parser
import email.policy
import mimetypes
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from sandbox.http import Request, Response
from sandbox.notion.errors import body_validation, not_found, validation
from sandbox.notion.objects import normalize_id, now, user_ref
from sandbox.notion.state import FILE_UPLOAD, Call, Handler, Notion

SINGLE_PART_MAX = 20 * 1024 * 1024
PART_MIN = 5 * 1024 * 1024
MAX_PARTS = 1000
SIGNED_URL_S = 3600.0
# What Notion takes, by extension; a file's declared type must be its extension's.
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".srt": "text/plain",
    ".json": "application/json",
}
# Media block types and the content types each shows; a file block takes any.
MEDIA_BLOCKS = {"image": "image/", "video": "video/", "audio": "audio/", "pdf": "application/pdf", "file": ""}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def status_of(doc: dict[str, Any]) -> str:
    if doc["status"] in ("pending", "uploaded") and doc.get("expires_at") and now() > doc["expires_at"]:
        return "expired"
    return str(doc["status"])


def render(n: Notion, doc: dict[str, Any]) -> dict[str, Any]:
    status = status_of(doc)
    base = f"{n.app.base_url}/notion/v1/file_uploads/{doc['id']}"
    out: dict[str, Any] = {
        "object": "file_upload",
        "id": doc["id"],
        "created_time": _iso(doc["created_at"]),
        "created_by": {**user_ref(doc["created_by"]), "type": "bot"},
        "last_edited_time": _iso(doc["edited_at"]),
        "archived": False,
        "in_trash": False,
        "expiry_time": _iso(doc["expires_at"]) if doc.get("expires_at") else None,
        "status": status,
        "filename": doc["filename"],
        "content_type": doc["content_type"],
        "content_length": doc.get("content_length"),
        "upload_url": f"{base}/send" if status == "pending" else None,
    }
    if doc["mode"] == "multi_part":
        out["complete_url"] = f"{base}/complete" if status == "pending" else None
        out["number_of_parts"] = {"total": doc["parts_total"], "sent_count": len(doc["parts"])}
    return out


def workspace_cap(n: Notion) -> int:
    return int(n.app.config.notion_upload_cap)


def _type_for(filename: str) -> str | None:
    return CONTENT_TYPES.get(PurePosixPath(filename).suffix.lower())


# Handlers ----------------------------------------------------------------------------------------
def create(n: Notion, call: Call) -> dict[str, Any]:
    body = call.body()
    mode = body.get("mode", "single_part")
    if mode == "external_url":
        raise validation("The sandbox does not import external URLs: send the file (mode single_part).")
    if mode not in ("single_part", "multi_part"):
        raise body_validation("body.mode", "should be one of single_part, multi_part, external_url", mode)
    filename = body.get("filename")
    if filename is not None and (
        not isinstance(filename, str) or not filename.strip() or len(filename) > 900
    ):
        raise body_validation(
            "body.filename", "should be a non-empty string of at most 900 characters", filename
        )
    declared = body.get("content_type")
    if declared is not None and not isinstance(declared, str):
        raise body_validation("body.content_type", "should be a string", declared)
    by_name = _type_for(filename) if filename else None
    if filename and by_name is None:
        raise validation(f"The file extension of {filename!r} is not supported.")
    if declared and by_name and declared.split(";")[0].strip() != by_name:
        raise validation(
            f"The content type {declared} does not match the file extension of {filename!r} ({by_name})."
        )
    parts_total: Any = 1
    if mode == "multi_part":
        if not filename:
            raise body_validation("body.filename", "should be defined for mode multi_part", None)
        parts_total = body.get("number_of_parts")
        if (
            not isinstance(parts_total, int)
            or isinstance(parts_total, bool)
            or not 1 <= parts_total <= MAX_PARTS
        ):
            raise body_validation(
                "body.number_of_parts", f"should be a number from 1 to {MAX_PARTS}", parts_total
            )
    elif body.get("number_of_parts") is not None:
        raise body_validation("body.number_of_parts", "should be not present for mode single_part", None)
    doc = n.new_doc(
        "file_upload",
        call.actor,
        mode=mode,
        filename=filename or "file",
        content_type=(declared or by_name or None),
        content_length=None,
        status="pending",
        parts_total=parts_total,
        parts={},
        expires_at=now() + float(n.app.config.notion_upload_expiry_s),
    )
    n.put(FILE_UPLOAD, doc)
    return render(n, doc)


def _require(n: Notion, call: Call) -> dict[str, Any]:
    upload_id = call.id("file_upload_id")
    doc = n.get(FILE_UPLOAD, upload_id)
    if doc is None:
        raise not_found("file upload", upload_id)
    return doc


def retrieve(n: Notion, call: Call) -> dict[str, Any]:
    return render(n, _require(n, call))


def list_uploads(n: Notion, call: Call) -> dict[str, Any]:
    from sandbox.notion.blocks import page_size

    wanted = call.arg("status")
    if wanted is not None and wanted not in ("pending", "uploaded", "expired", "failed"):
        raise body_validation("query.status", "should be one of pending, uploaded, expired, failed", wanted)
    size = page_size(call.arg("page_size"), "query.page_size")
    docs = sorted(n.store.all(FILE_UPLOAD), key=lambda d: d["seq"], reverse=True)  # newest first
    docs = [d for d in docs if wanted is None or status_of(d) == wanted]
    start = 0
    cursor = call.arg("start_cursor")
    if cursor:
        ids = [d["id"] for d in docs]
        cursor_id = normalize_id(cursor, "query.start_cursor")
        if cursor_id not in ids:
            raise validation(f"The start_cursor provided is invalid: {cursor}")
        start = ids.index(cursor_id)
    window = docs[start : start + size]
    more = start + size < len(docs)
    return {
        "object": "list",
        "results": [render(n, d) for d in window],
        "next_cursor": docs[start + size]["id"] if more else None,
        "has_more": more,
        "type": "file_upload",
        "file_upload": {},
    }


def _form(request: Request) -> dict[str, tuple[str | None, str, bytes]]:
    """The multipart/form-data fields: name -> (filename, content type, bytes)."""
    ctype = request.header("content-type")
    if not ctype.lower().startswith("multipart/form-data"):
        raise validation("The request must be multipart/form-data with the file under the key `file`.")
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    fields: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        fields[name] = (
            part.get_filename(),
            part.get_content_type(),
            payload if isinstance(payload, bytes) else b"",
        )
    return fields


def send(n: Notion, call: Call) -> dict[str, Any]:
    doc = _require(n, call)
    status = status_of(doc)
    if status == "expired":
        raise validation(f"File upload {doc['id']} has expired. Create a new file upload.")
    if status != "pending":
        raise validation(f"File upload {doc['id']} is {status}: only a pending upload takes a file.")
    fields = _form(call.request)
    if "file" not in fields:
        raise body_validation("body.file", "should be defined", None)
    filename, part_type, data = fields["file"]
    expected = doc["content_type"] or _type_for(filename or "") or part_type
    if part_type not in ("application/octet-stream", "text/plain") and part_type != expected:
        raise validation(f"The file's content type {part_type} does not match the upload's ({expected}).")
    cap = workspace_cap(n)
    folder = n.app.state_dir / "notion-files"
    folder.mkdir(exist_ok=True)
    if doc["mode"] == "single_part":
        if "part_number" in fields:
            raise body_validation("body.part_number", "should be not present for mode single_part", None)
        if len(data) > SINGLE_PART_MAX:
            raise validation(
                f"The file is {len(data)} bytes: a single part upload takes at most {SINGLE_PART_MAX}."
            )
        if len(data) > cap:
            raise validation(f"The file is {len(data)} bytes, over this workspace's limit of {cap} bytes.")
        (folder / doc["id"]).write_bytes(data)
        doc.update(status="uploaded", content_length=len(data), content_type=expected)
    else:
        raw = fields.get("part_number", (None, "", b""))[2].decode(errors="replace").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= doc["parts_total"]:
            raise body_validation(
                "body.part_number", f"should be a number from 1 to {doc['parts_total']}", raw
            )
        number = int(raw)
        last = number == doc["parts_total"]
        if len(data) > SINGLE_PART_MAX or (not last and len(data) < PART_MIN):
            raise validation(
                f"Part {number} is {len(data)} bytes: parts are {PART_MIN} to {SINGLE_PART_MAX} bytes "
                "(the last may be smaller)."
            )
        others = sum(size for key, size in doc["parts"].items() if key != str(number))
        if others + len(data) > cap:
            raise validation(f"The file is over this workspace's limit of {cap} bytes.")
        (folder / f"{doc['id']}.part{number}").write_bytes(data)
        doc["parts"][str(number)] = len(data)
        doc["content_type"] = expected
    n.touch(doc, call.actor)
    n.put(FILE_UPLOAD, doc)
    return render(n, doc)


def complete(n: Notion, call: Call) -> dict[str, Any]:
    doc = _require(n, call)
    status = status_of(doc)
    if doc["mode"] != "multi_part":
        raise validation("Only a multi_part file upload is completed.")
    if status != "pending":
        raise validation(f"File upload {doc['id']} is {status}: only a pending upload can be completed.")
    missing = [i for i in range(1, doc["parts_total"] + 1) if str(i) not in doc["parts"]]
    if missing:
        raise validation(f"Parts not sent yet: {', '.join(map(str, missing[:20]))}.")
    folder = n.app.state_dir / "notion-files"
    with (folder / doc["id"]).open("wb") as out:
        for i in range(1, doc["parts_total"] + 1):
            part = folder / f"{doc['id']}.part{i}"
            out.write(part.read_bytes())
            part.unlink()
    doc.update(status="uploaded", content_length=sum(doc["parts"].values()))
    n.touch(doc, call.actor)
    n.put(FILE_UPLOAD, doc)
    return render(n, doc)


# Attaching ---------------------------------------------------------------------------------------
def attach(n: Notion, ref: object, where: str, accepts: str = "") -> dict[str, Any]:
    """A file reference as given to a block, a files property or a cover, checked and stored:
    `{"type": "file_upload", "file_upload": {"id"}}` (the upload then no longer expires) or
    `{"type": "external", "external": {"url"}}`. `accepts`: the content-type prefix the holder shows."""
    if not isinstance(ref, dict):
        raise body_validation(where, "should be an object", ref)
    kind = ref.get("type") or (
        "file_upload" if "file_upload" in ref else "external" if "external" in ref else None
    )
    if kind == "external":
        url = (ref.get("external") or {}).get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise body_validation(f"{where}.external.url", "should be a URL", url)
        return {"type": "external", "external": {"url": url}}
    if kind != "file_upload":
        raise body_validation(f"{where}.type", "should be `file_upload` or `external`", kind)
    upload_id = normalize_id((ref.get("file_upload") or {}).get("id"), f"{where}.file_upload.id")
    doc = n.get(FILE_UPLOAD, upload_id)
    if doc is None:
        raise validation(f"Could not find file upload with ID: {upload_id}.")
    status = status_of(doc)
    if status != "uploaded":
        raise validation(f"File upload {upload_id} is {status}: only an uploaded file can be attached.")
    if accepts and not str(doc["content_type"]).startswith(accepts):
        raise validation(f"A file of type {doc['content_type']} cannot be shown here ({where}).")
    if doc.get("expires_at") is not None:
        doc["expires_at"] = None
        n.put(FILE_UPLOAD, doc)
    return {"type": "file_upload", "file_upload": {"id": upload_id}}


def file_url(n: Notion, upload_id: str) -> str:
    doc = n.get(FILE_UPLOAD, upload_id)
    name = doc["filename"] if doc else "file"
    return f"{n.app.base_url}/_sandbox/files/{upload_id}/{quote(name)}"


def shown(n: Notion, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored reference as Notion answers it: an upload becomes a signed URL with its expiry."""
    if not stored or stored.get("type") != "file_upload":
        return stored
    return {
        "type": "file",
        "file": {"url": file_url(n, stored["file_upload"]["id"]), "expiry_time": _iso(now() + SIGNED_URL_S)},
    }


def serve_file(n: Notion, request: Request) -> Response:
    """The bytes of an uploaded file (what a signed URL gives), with Range support for <video>."""
    try:
        upload_id = normalize_id(request.params.get("upload_id", ""))
    except Exception:
        return Response(404, b"no such file", {"Content-Type": "text/plain"})
    doc = n.get(FILE_UPLOAD, upload_id)
    path = n.app.state_dir / "notion-files" / upload_id
    if doc is None or status_of(doc) != "uploaded" or not path.exists():
        return Response(404, b"no such file", {"Content-Type": "text/plain"})
    data = path.read_bytes()
    ctype = doc["content_type"] or mimetypes.guess_type(doc["filename"])[0] or "application/octet-stream"
    headers = {"Content-Type": ctype, "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    wanted = request.header("range")
    if wanted.startswith("bytes="):
        first, _, last = wanted[6:].split(",")[0].partition("-")
        start = int(first) if first.strip() else max(0, len(data) - int(last or 0))
        end = min(len(data) - 1, int(last)) if first.strip() and last.strip() else len(data) - 1
        if start >= len(data) or start > end:
            return Response(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(206, data[start : end + 1], headers)
    return Response(200, data, headers)


def sent_upload(request: Request) -> str:
    """The call log's identity of a send: the upload it sends to."""
    return request.params.get("file_upload_id", "")


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/v1/file_uploads", "file_uploads.create", create),
    ("GET", "/v1/file_uploads", "file_uploads.list", list_uploads),
    ("GET", "/v1/file_uploads/{file_upload_id}", "file_uploads.retrieve", retrieve),
    ("POST", "/v1/file_uploads/{file_upload_id}/send", "file_uploads.send", send),
    ("POST", "/v1/file_uploads/{file_upload_id}/complete", "file_uploads.complete", complete),
]
