"""Splitting process output into numbered lines, in bounded memory."""

from datetime import UTC, datetime

from domain.logs import LineAssembler, LogBatch, LogStream

T = datetime(2026, 11, 29, tzinfo=UTC)


def texts(*batches: LogBatch) -> list[tuple[int, str, str]]:
    return [(line.n, line.stream.value, line.text) for b in batches for line in b.lines()]


def test_lines_are_numbered_across_streams_in_arrival_order() -> None:
    a = LineAssembler()
    out = [a.feed(LogStream.STDOUT, b"one\ntwo\n", T), a.feed(LogStream.STDERR, b"err\n", T)]
    out.append(a.feed(LogStream.STDOUT, b"three\n", T))
    assert texts(*out) == [
        (0, "stdout", "one"),
        (1, "stdout", "two"),
        (2, "stderr", "err"),
        (3, "stdout", "three"),
    ]


def test_a_partial_line_waits_for_its_end() -> None:
    a = LineAssembler()
    assert texts(a.feed(LogStream.STDOUT, b"hel", T)) == []
    assert texts(a.feed(LogStream.STDOUT, b"lo\r\nx", T)) == [(0, "stdout", "hello")]
    assert texts(a.flush(T)) == [(1, "stdout", "x")]
    assert texts(a.flush(T)) == []


def test_partial_lines_of_two_streams_do_not_mix() -> None:
    a = LineAssembler()
    a.feed(LogStream.STDOUT, b"out-", T)
    a.feed(LogStream.STDERR, b"err-", T)
    out = [a.feed(LogStream.STDERR, b"end\n", T), a.feed(LogStream.STDOUT, b"end\n", T)]
    assert texts(*out) == [(0, "stderr", "err-end"), (1, "stdout", "out-end")]


def test_a_line_without_newline_is_split_at_the_cap() -> None:
    a = LineAssembler(max_line_bytes=4)
    out = a.feed(LogStream.STDOUT, b"abcdefghij", T)
    assert texts(out) == [(0, "stdout", "abcd"), (1, "stdout", "efgh")]
    assert texts(a.flush(T)) == [(2, "stdout", "ij")]


def test_invalid_utf8_and_nul_bytes_are_replaced_not_lost() -> None:
    a = LineAssembler()
    (line,) = a.feed(LogStream.STDOUT, b"ok \xff\xfe \x00 end\n", T).lines()
    assert line.text == "ok \ufffd\ufffd \ufffd end"


def test_system_lines_take_the_next_number() -> None:
    a = LineAssembler()
    a.feed(LogStream.STDOUT, b"x\n", T)
    (line,) = a.system("runwarden: killed", T).lines()
    assert (line.n, line.stream) == (1, LogStream.SYSTEM)
    assert a.next_n == 2
