"""The map journal: what survives an interruption, what a resume refuses, and the input file."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from coldbrew import Client
from coldbrew.sdk.bulk import MapProgress, check_inputs, result_line
from coldbrew.sdk.journal import (
    InputError,
    Journal,
    JournalMismatch,
    MapError,
    inputs_sha256,
    read_inputs,
)
from coldbrew.sdk.progress import ProgressBar, render

INPUTS: list[dict[str, Any]] = [{"x": i} for i in range(4)]
DONE = {"id": "j0", "status": "COMPLETED", "output": {"y": 0}}
FAILED = {"id": "j2", "status": "FAILED", "error": "boom"}


def events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_new_journal_writes_its_file_with_the_first_event(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.partial"
    journal = Journal.open(path, "echo", INPUTS)
    assert not path.exists()  # a map refused before it starts leaves no journal

    journal.submitted(0, "j0")
    journal.close()

    header, submitted = events(path)
    assert header == {
        "journal": "coldbrew-map/1",
        "endpoint": "echo",
        "inputsSha256": inputs_sha256(INPUTS),
        "inputs": 4,
        "runId": journal.run_id,
    }
    assert submitted == {"i": 0, "a": 0, "id": "j0"}


def test_a_resumed_journal_knows_what_was_submitted_and_what_finished(tmp_path: Path) -> None:
    path = tmp_path / "j"
    first = Journal.open(path, "echo", INPUTS)
    for index in range(3):
        first.submitted(index, f"j{index}")
    first.finished(0, DONE)
    first.finished(2, FAILED)
    first.close()

    again = Journal.open(path, "echo", INPUTS)

    assert again.run_id == first.run_id
    assert [e.job_id for e in again.entries] == ["j0", "j1", "j2", None]
    assert [e.result for e in again.entries] == [DONE, None, FAILED, None]
    assert [e.failed for e in again.entries] == [False, False, True, False]
    assert [again.key(i) for i in range(4)] == [first.key(i) for i in range(4)]


def test_keys_differ_per_input_per_attempt_and_per_journal(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "a", "echo", INPUTS)
    other = Journal.open(tmp_path / "b", "echo", INPUTS)
    before = journal.key(2)
    journal.retry(2)
    journal.close()
    assert len({journal.key(1), before, journal.key(2), other.key(2)}) == 4


def test_a_retry_starts_the_input_over_and_outlives_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path, "echo", INPUTS)
    journal.submitted(2, "j2")
    journal.finished(2, FAILED)
    journal.retry(2)
    journal.close()

    again = Journal.open(path, "echo", INPUTS)
    entry = again.entries[2]
    assert (entry.attempt, entry.job_id, entry.result) == (1, None, None)
    assert again.key(2) == journal.key(2)


def test_events_of_an_earlier_attempt_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path, "echo", INPUTS)
    journal.submitted(1, "old")
    journal.close()
    with path.open("ab") as file:  # the first attempt's result, written after the retry line
        file.write(b'{"i": 1, "a": 1, "retry": true}\n')
        file.write(b'{"i": 1, "a": 0, "result": {"id": "old", "status": "FAILED"}}\n')

    entry = Journal.open(path, "echo", INPUTS).entries[1]
    assert (entry.attempt, entry.job_id, entry.result) == (1, None, None)


def test_a_line_cut_by_a_kill_is_dropped_and_the_journal_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path, "echo", INPUTS)
    journal.submitted(0, "j0")
    journal.close()
    with path.open("ab") as file:
        file.write(b'{"i": 0, "a": 0, "result": {"id": "j0", "sta')

    resumed = Journal.open(path, "echo", INPUTS)
    assert resumed.entries[0].result is None
    resumed.finished(0, DONE)
    resumed.close()

    assert events(path)[-1] == {"i": 0, "a": 0, "result": DONE}
    assert Journal.open(path, "echo", INPUTS).entries[0].result == DONE


def test_a_journal_of_another_endpoint_or_other_inputs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path, "echo", INPUTS)
    journal.submitted(0, "j0")
    journal.close()
    before = path.read_bytes()

    with pytest.raises(JournalMismatch) as other_endpoint:
        Journal.open(path, "embeddings", INPUTS)
    with pytest.raises(JournalMismatch) as other_inputs:
        Journal.open(path, "echo", [*INPUTS, {"x": 9}])

    assert "endpoint 'echo' over 4 inputs" in other_endpoint.value.message
    assert "not 'embeddings' over 4 inputs" in other_endpoint.value.message
    assert "not 'echo' over 5 inputs" in other_inputs.value.message
    assert "delete it to start over" in other_inputs.value.hint
    assert path.read_bytes() == before


def test_the_same_inputs_written_differently_match_the_journal(tmp_path: Path) -> None:
    assert inputs_sha256([{"a": 1, "b": [1, 2]}]) == inputs_sha256([{"b": [1, 2], "a": 1}])
    assert inputs_sha256([{"a": 1}]) != inputs_sha256([{"a": 2}])
    assert inputs_sha256([{"a": 1}, {"a": 2}]) != inputs_sha256([{"a": 2}, {"a": 1}])


def test_a_file_that_is_not_a_journal_or_is_damaged_is_refused(tmp_path: Path) -> None:
    stranger = tmp_path / "results.jsonl.partial"
    stranger.write_text('{"index": 0}\n')
    with pytest.raises(MapError, match="is not a coldbrew map journal"):
        Journal.open(stranger, "echo", INPUTS)

    damaged = tmp_path / "damaged"
    journal = Journal.open(damaged, "echo", INPUTS)
    journal.submitted(0, "j0")
    journal.close()
    with damaged.open("ab") as file:
        file.write(b"garbage\n" + b'{"i": 1, "a": 0, "id": "j1"}\n')
    with pytest.raises(MapError, match=r"line 3 of .* is damaged"):
        Journal.open(damaged, "echo", INPUTS)


def test_a_journal_without_a_path_lives_in_memory(tmp_path: Path) -> None:
    journal = Journal.open(None, "echo", INPUTS)
    journal.submitted(0, "j0")
    journal.finished(0, DONE)
    journal.remove()
    assert journal.entries[0].result == DONE
    assert list(tmp_path.iterdir()) == []


# the input file


def test_inputs_come_with_their_line_numbers_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"x": 1}\n\n  \n{"x": 2, "y": "z"}\n{}')
    inputs, lines = read_inputs(path)
    assert inputs == [{"x": 1}, {"x": 2, "y": "z"}, {}]
    assert lines == [1, 4, 5]


def test_every_bad_line_is_named_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"x": 1}\n[1, 2]\n{"x": \nnull\n"text"\n7\n{"x": 3}\n')
    with pytest.raises(InputError) as refused:
        read_inputs(path)
    assert [(where, what.split(" (")[0]) for where, what in refused.value.problems] == [
        ("line 2", "a JSON array, not an object"),
        ("line 3", "not JSON"),
        ("line 4", "a JSON null, not an object"),
        ("line 5", "a JSON string, not an object"),
        ("line 6", "a JSON number, not an object"),
    ]
    assert "one JSON object" in refused.value.hint


def test_an_empty_input_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n\n")
    with pytest.raises(InputError, match="no inputs"):
        read_inputs(path)


def test_inputs_are_checked_against_the_endpoint_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "tag": {"type": "string"}},
        "required": ["x"],
        "additionalProperties": False,
    }
    check_inputs("square", schema, [{"x": 1}, {"x": 2, "tag": "a"}], lambda i: f"line {i + 1}")
    with pytest.raises(InputError) as refused:
        check_inputs(
            "square",
            schema,
            [{"x": 1}, {"x": "two"}, {"tag": 3}, [1]],
            lambda i: f"line {i + 1}",
        )
    problems = dict(refused.value.problems)
    assert problems["line 2"] == "input.x: 'two' is not of type 'integer'"
    assert "input.tag: 3 is not of type 'string'" in problems["line 3"]
    assert "'x' is a required property" in problems["line 3"]
    assert problems["line 4"] == "a list, not an object"
    assert "line 1" not in problems
    assert refused.value.hint == "endpoint 'square' takes: x (integer), tag (string)"


def test_many_bad_inputs_are_summed_up_in_the_message() -> None:
    error = InputError([(f"line {i}", "not JSON") for i in range(1, 9)], hint="fix them")
    assert error.message.endswith("line 5: not JSON; … and 3 more")
    assert len(error.problems) == 8


# results and progress


def test_a_result_line_has_the_output_or_the_error() -> None:
    completed = {"id": "a", "status": "COMPLETED", "output": [1], "delayTime": 3, "workerId": "w"}
    failed = {
        "id": "b",
        "status": "FAILED",
        "error": "boom",
        "errorDetail": {"type": "RuntimeError", "message": "boom"},
        "executionTime": 2,
    }
    assert result_line(completed) == {"id": "a", "status": "COMPLETED", "output": [1]}
    assert result_line(failed) == {
        "id": "b",
        "status": "FAILED",
        "error": "boom",
        "errorDetail": {"type": "RuntimeError", "message": "boom"},
    }
    cancelled = result_line({"id": "c", "status": "CANCELLED"})
    assert cancelled == {"id": "c", "status": "CANCELLED", "error": "the job ended CANCELLED"}


def progress(**fields: Any) -> MapProgress:
    values: dict[str, Any] = {
        "endpoint": "toy",
        "total": 200,
        "done": 123,
        "failed": 3,
        "in_flight": 64,
        "resumed": 0,
        "elapsed_s": 3.0,
    }
    values.update(fields)
    return MapProgress(**values)


def test_rate_and_eta_count_only_this_runs_work() -> None:
    state = progress(done=150, resumed=50, elapsed_s=4.0)
    assert state.rate_per_s == 25.0
    assert state.eta_s == 2.0
    assert progress(done=50, resumed=50).eta_s is None
    assert progress(elapsed_s=0.0).rate_per_s == 0.0


def test_the_progress_line_reads_like_tqdm() -> None:
    assert render(progress()) == (
        "toy  62% [##############----------] 123/200 [00:03<00:01, 41.0/s] 3 failed, 64 in flight"
    )
    final = progress(done=200, failed=0, in_flight=0, resumed=80, elapsed_s=3725.0, finished=True)
    assert render(final) == (
        "toy 100% [########################] 200/200 [1:02:05, 0.0/s] 80 from the journal"
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def frames(self) -> list[str]:
        """Each state the terminal showed, as plain text (redraws start with a carriage return,
        escape codes removed)."""
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.getvalue())
        return [frame.strip() for frame in re.split(r"[\r\n]", plain) if frame.strip()]


def test_the_bar_redraws_in_place_on_a_terminal_and_ends_its_line() -> None:
    screen = Terminal()
    bar = ProgressBar(screen)
    bar(progress(elapsed_s=0.0))
    bar(progress(elapsed_s=0.05))  # too soon: not drawn
    bar(progress(done=150, elapsed_s=0.2))
    bar(progress(done=200, failed=0, in_flight=0, elapsed_s=0.21, finished=True))
    bar.close()
    frames = screen.frames()
    assert [f.split()[3] for f in frames[:3]] == ["123/200", "150/200", "200/200"]  # not 0.05 s
    assert frames[-1].startswith("toy 100%") and frames[-1].endswith("200/200 [00:00, 952.4/s]")
    assert screen.getvalue().removesuffix("\x1b[?25h").endswith("\n")


def test_an_interrupted_bar_on_a_terminal_is_closed_with_a_newline() -> None:
    screen = Terminal()
    bar = ProgressBar(screen)
    bar(progress())
    bar.close()
    bar.close()
    assert screen.frames()[-1].endswith("123/200 [00:03<00:01, 41.0/s] 3 failed, 64 in flight")
    assert screen.getvalue().removesuffix("\x1b[?25h").endswith("\n")


def test_the_bar_writes_a_line_every_few_seconds_to_a_log() -> None:
    log = io.StringIO()
    bar = ProgressBar(log)
    for step in range(21):
        bar(progress(done=step * 5, elapsed_s=step * 0.5))
    bar(progress(done=200, elapsed_s=10.2, finished=True))
    lines = log.getvalue().splitlines()
    assert [line.split("] ")[1].split(" ")[0] for line in lines] == [
        "0/200",
        "50/200",
        "100/200",
        "200/200",
    ]


def test_client_map_inside_an_event_loop_points_to_map_async() -> None:
    async def inside() -> None:
        with Client("http://127.0.0.1:9", "cb_unused") as client:
            client.map("echo", [{}])

    with pytest.raises(RuntimeError, match=r"await client.map_async\(\.\.\.\)"):
        asyncio.run(inside())
