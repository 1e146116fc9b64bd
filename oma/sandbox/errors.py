"""The sandbox's one error type: an API answer other than success."""

from __future__ import annotations


class ApiError(Exception):
    """An API answer other than success: the server turns it into `status {"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
