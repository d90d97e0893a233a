"""Request bodies: small forms (actions) and uploaded images ("try it"), each read with a size
limit; an upload must decode as an image.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    Response,
)

from synthloop.errors import SynthloopError
from synthloop.ui.paint import paint_detections
from synthloop.ui.security import safe_path
from synthloop.ui.state import query_float, ui_of

MAX_UPLOAD = 8 << 20  # bytes
MAX_UPLOAD_PIXELS = 40_000_000


async def read_form(request: Request, limit: int = 65536) -> dict[str, str]:
    """A urlencoded form body (at most ``limit`` bytes) as a dict of first values."""
    from urllib.parse import parse_qs

    body = await read_body(request, limit)
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise HTTPException(400, "form is not UTF-8") from None
    return {k: v[0] for k, v in parsed.items()}


async def read_body(request: Request, limit: int) -> bytes:
    n = request.headers.get("content-length")
    if n and n.isdigit() and int(n) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_upload(data: bytes) -> np.ndarray:
    """Bytes of an uploaded image -> (H, W, 3) uint8 RGB, or HTTPException 415."""
    if not data:
        raise HTTPException(400, "empty upload")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_UPLOAD_PIXELS:
                raise HTTPException(413, f"image larger than {MAX_UPLOAD_PIXELS} pixels")
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise HTTPException(415, "the upload is not an image PIL can read") from None


async def try_model(request: Request) -> Response:
    """POST the raw bytes of an image: the model's detections and the image with them drawn."""
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    score = query_float(request, "score")
    score = 0.3 if score is None else min(max(score, 0.0), 1.0)
    rgb = decode_upload(await read_body(request, MAX_UPLOAD))
    try:
        dets, names = await run_in_threadpool(ui.detectors.detect, path, rgb, score)
    except SynthloopError as e:
        raise HTTPException(422, str(e)) from None
    img = paint_detections(rgb, dets, names)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return JSONResponse(
        {
            "detections": [
                {
                    "box": [round(float(v), 2) for v in b],
                    "score": round(float(s), 4),
                    "class": names.get(int(lab), str(lab)),
                }
                for b, s, lab in zip(dets.boxes, dets.scores, dets.labels, strict=True)
            ],
            "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
        }
    )
