"""The journal of a bulk map: which job runs each input and what it returned.

One JSON object per line, appended as things happen, so a map that was interrupted (Ctrl-C,
`kill -9`, a reboot of the client) resumes where it stopped: finished inputs are not run again,
submitted ones are polled rather than submitted again. The first line says which map it belongs
to (endpoint and a hash of the inputs); then, per input `i` and attempt `a`:

    {"i": 7, "a": 0, "id": "<job id>"}          submitted
    {"i": 7, "a": 0, "result": {...}}           finished (the output line, without "index")
    {"i": 7, "a": 1, "retry": true}             run again (`--retry-failed`)

Each input's job is submitted with an idempotency key derived from the journal's run id, the
index and the attempt, so a job whose id never reached the journal (the client died between the
server's answer and the write) is found again by submitting the same key, not duplicated.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

JOURNAL_FORMAT = "coldbrew-map/1"
_MAX_SHOWN_PROBLEMS = 5


class MapError(Exception):
    """A map refused before it started, with a message and a hint that says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(MapError):
    """Some inputs are unusable; `problems` are (where, what) pairs, e.g. ("line 7", "not JSON")."""

    def __init__(self, problems: Sequence[tuple[str, str]], hint: str) -> None:
        shown = [f"{where}: {what}" for where, what in problems[:_MAX_SHOWN_PROBLEMS]]
        if len(problems) > _MAX_SHOWN_PROBLEMS:
            shown.append(f"… and {len(problems) - _MAX_SHOWN_PROBLEMS} more")
        super().__init__("; ".join(shown), hint)
        self.problems = list(problems)


class JournalMismatch(MapError):
    """The journal on disk belongs to another map (other endpoint or other inputs)."""


def inputs_sha256(inputs: Sequence[dict[str, Any]]) -> str:
    """A hash of the inputs, independent of key order and whitespace in the file they came from."""
    digest = hashlib.sha256()
    for value in inputs:
        digest.update(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class Entry:
    """What the journal knows about one input."""

    attempt: int = 0
    job_id: str | None = None
    result: dict[str, Any] | None = None  # set once the input finished (any final status)

    @property
    def failed(self) -> bool:
        return self.result is not None and self.result.get("status") != "COMPLETED"


@dataclass
class Journal:
    """The state of one map, kept in memory and, with a `path`, appended to a file."""

    endpoint: str
    sha256: str
    run_id: str
    entries: list[Entry]
    path: Path | None = None
    _file: BinaryIO | None = field(default=None, repr=False)
    _header: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path | None, endpoint: str, inputs: Sequence[dict[str, Any]]) -> Journal:
        """Resume the journal at `path`, or start one (in memory only when `path` is None; the
        file is written from the first event on, so a map refused before it starts leaves none).

        Refuses a journal written for another endpoint or other inputs.
        """
        sha = inputs_sha256(inputs)
        if path is not None and path.exists():
            journal = cls._load(path, endpoint, sha, len(inputs))
        else:
            entries = [Entry() for _ in inputs]
            journal = cls(endpoint, sha, secrets.token_hex(8), entries, path)
            journal._header = {
                "journal": JOURNAL_FORMAT,
                "endpoint": endpoint,
                "inputsSha256": sha,
                "inputs": len(inputs),
                "runId": journal.run_id,
            }
        return journal

    @classmethod
    def _load(cls, path: Path, endpoint: str, sha: str, count: int) -> Journal:
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a line cut by a kill is dropped
        lines = complete.splitlines()
        header = _parse(path, 1, lines[0]) if lines else {}
        if header.get("journal") != JOURNAL_FORMAT:
            raise MapError(
                f"{path} is not a coldbrew map journal",
                hint="delete it, or choose another --out",
            )
        if header.get("endpoint") != endpoint or header.get("inputsSha256") != sha:
            raise JournalMismatch(
                f"{path} belongs to another map: endpoint {header.get('endpoint')!r} over "
                f"{header.get('inputs')} inputs (sha256 {str(header.get('inputsSha256'))[:12]}…), "
                f"not {endpoint!r} over {count} inputs (sha256 {sha[:12]}…)",
                hint="resume it with its own endpoint and input file, delete it to start over, "
                "or choose another --out",
            )
        journal = cls(endpoint, sha, str(header["runId"]), [Entry() for _ in range(count)], path)
        for number, line in enumerate(lines[1:], start=2):
            try:
                journal._replay(_parse(path, number, line))
            except (KeyError, IndexError, TypeError):
                raise MapError(
                    f"line {number} of {path} is damaged", hint="delete the journal to start over"
                ) from None
        if len(complete) != len(data):
            with path.open("r+b") as file:
                file.truncate(len(complete))
        return journal

    def _replay(self, event: dict[str, Any]) -> None:
        entry = self.entries[event["i"]]
        attempt = event["a"]
        if event.get("retry") and attempt > entry.attempt:
            self.entries[event["i"]] = Entry(attempt=attempt)
        elif attempt != entry.attempt:
            return  # an event of an earlier attempt
        elif "id" in event:
            entry.job_id = event["id"]
        elif "result" in event:
            entry.result = event["result"]

    def key(self, index: int) -> str:
        """The idempotency key of input `index`'s current attempt."""
        return f"map-{self.run_id}-{index}-{self.entries[index].attempt}"

    def submitted(self, index: int, job_id: str) -> None:
        entry = self.entries[index]
        entry.job_id = job_id
        self._append({"i": index, "a": entry.attempt, "id": job_id})

    def finished(self, index: int, result: dict[str, Any]) -> None:
        entry = self.entries[index]
        entry.result = result
        self._append({"i": index, "a": entry.attempt, "result": result})

    def retry(self, index: int) -> None:
        """Start a new attempt of input `index`: a new key, so a new job."""
        attempt = self.entries[index].attempt + 1
        self.entries[index] = Entry(attempt=attempt)
        self._append({"i": index, "a": attempt, "retry": True})

    def _append(self, event: dict[str, Any]) -> None:
        if self.path is None:
            return
        if self._file is None:
            self._file = self.path.open("ab", buffering=0)
        if self._header is not None:  # a new journal's file appears with its first event
            self._file.write(orjson.dumps(self._header) + b"\n")
            self._header = None
        # One write of one whole line: a kill leaves at most a cut last line, dropped on load.
        # Not fsynced: the page cache outlives the client process; a power loss may lose the tail.
        self._file.write(orjson.dumps(event) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Close and delete the journal file (the map is done and its output written)."""
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _parse(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        raise MapError(
            f"line {number} of {path} is damaged", hint="delete the journal to start over"
        )
    return event


def read_inputs(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The inputs of a JSON-lines file and the line number of each (blank lines are skipped).

    Every line is checked before anything runs: a line that is not a JSON object is refused with
    its number.
    """
    inputs: list[dict[str, Any]] = []
    numbers: list[int] = []
    problems: list[tuple[str, str]] = []
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                problems.append((f"line {number}", f"not JSON ({exc})"))
                continue
            if not isinstance(value, dict):
                problems.append((f"line {number}", f"a JSON {_json_kind(value)}, not an object"))
                continue
            inputs.append(value)
            numbers.append(number)
    if problems:
        raise InputError(problems, hint='each line must be one JSON object: a job\'s "input"')
    if not inputs:
        raise InputError([(str(path), "no inputs")], hint="write one JSON object per line")
    return inputs, numbers


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)
