"""The one error type users see for bad input."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """Bad input that stops a stage. The message names the file, the id and the field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        item: str | None = None,
        field: str | None = None,
    ) -> None:
        parts = [p for p in (file, item, field) if p]
        where = ": ".join(parts)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.item = item
        self.field = field
