"""The client's error: an error answer from the server, with its message and hint."""

from __future__ import annotations

import httpx


class APIError(Exception):
    """An error answer from the server: its status code, type, message and hint."""

    def __init__(self, status_code: int, error_type: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.hint = hint


def raise_for(response: httpx.Response) -> None:
    """Turn an error answer into an `APIError` with the server's message and hint."""
    if response.status_code < 400:
        return
    try:
        err = response.json()["error"]
        error = APIError(response.status_code, err["type"], err["message"], err.get("hint", ""))
    except (ValueError, KeyError, TypeError):
        error = APIError(response.status_code, "http_error", response.text)
    raise error
