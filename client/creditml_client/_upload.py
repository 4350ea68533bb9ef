"""A streaming multipart/form-data body for S3's presigned POST.

The file is read in chunks while it is sent (never whole into memory), the body's exact
length is known up front (S3 refuses a POST without Content-Length), and a progress
callback hears about every chunk.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

Progress = Callable[[int, int], None]
_CHUNK = 256 * 1024


def _quote(value: str) -> str:
    # RFC 7578: names and filenames are quoted strings; keep them on one line.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")


class MultipartUpload:
    """The body of one presigned POST: the form `fields`, then the file as `file`.

    `chunks()` makes a fresh iterator each time it is called, so a retried request sends
    the body again from the start.
    """

    def __init__(
        self, fields: Mapping[str, str], path: Path, progress: Progress | None = None
    ) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._progress = progress
        boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in fields.items()
        )
        self._head = (
            head
            + (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{_quote(path.name)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        self._tail = f"\r\n--{boundary}--\r\n".encode()

    @property
    def content_length(self) -> int:
        """The body's exact length in bytes."""
        return len(self._head) + self.size + len(self._tail)

    def headers(self) -> dict[str, str]:
        """Content-Type and Content-Length of the body."""
        return {"Content-Type": self.content_type, "Content-Length": str(self.content_length)}

    def chunks(self) -> Iterator[bytes]:
        """The body, from the start, reporting the file bytes sent so far."""
        yield self._head
        done = 0
        self._report(done)
        with self.path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                done += len(chunk)
                yield chunk
                self._report(done)
        if done != self.size:
            raise OSError(f"{self.path} changed size while it was being uploaded")
        yield self._tail

    def _report(self, done: int) -> None:
        if self._progress is not None:
            self._progress(done, self.size)
