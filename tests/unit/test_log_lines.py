"""Splitting process output into numbered lines, in bounded memory."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_crlf_is_one_line_end_even_across_reads() -> None:
    a = LineAssembler()
    out = [a.feed(LogStream.STDOUT, b"one\r", T), a.feed(LogStream.STDOUT, b"\ntwo\r\r\n", T)]
    out.append(a.feed(LogStream.STDOUT, b"th\rree\r\n", T))
    assert texts(*out) == [(0, "stdout", "one"), (1, "stdout", "two\r"), (2, "stdout", "th\rree")]


def test_a_character_split_between_reads_is_decoded_whole() -> None:
    a = LineAssembler()
    out = [a.feed(LogStream.STDOUT, b"caf\xc3", T), a.feed(LogStream.STDOUT, b"\xa9\n", T)]
    assert texts(*out) == [(0, "stdout", "café")]


def test_long_lines_among_short_ones_are_split_at_the_cap_in_utf8_bytes() -> None:
    a = LineAssembler(max_line_bytes=4)
    batch = a.feed(LogStream.STDOUT, "ab\nabcdefghij\néééé\nx\n".encode(), T)
    assert texts(batch) == [
        (0, "stdout", "ab"),
        (1, "stdout", "abcd"),
        (2, "stdout", "efgh"),
        (3, "stdout", "ij"),
        (4, "stdout", "éé"),
        (5, "stdout", "éé"),
        (6, "stdout", "x"),
    ]
    assert batch.size == sum(len(line.text.encode()) for line in batch.lines())


def test_one_read_of_many_lines_is_one_joined_segment() -> None:
    a = LineAssembler()
    batch = a.feed(LogStream.STDERR, b"x\n" * 1000 + b"tail", T)
    (segment,) = batch.segments
    assert (batch.first_n, segment.count, segment.size, segment.stream) == (
        0,
        1000,
        1000,
        LogStream.STDERR,
    )
    assert segment.texts == "\n".join(["x"] * 1000)
    assert a.next_n == 1000


def reference(chunks: list[tuple[LogStream, bytes]], cap: int) -> list[tuple[int, str, str]]:
    """The line rules applied one line at a time: what the assembler must equal."""
    out: list[tuple[LogStream, str]] = []
    partial: dict[LogStream, bytes] = {}

    def decode(raw: bytes) -> str:
        return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")

    def pieces(raw: bytes) -> list[str]:
        return [decode(raw[i : i + cap]) for i in range(0, max(len(raw), 1), cap)]

    for stream, data in chunks:
        buf = partial.get(stream, b"") + data
        *complete, rest = buf.split(b"\n")
        for raw in complete:
            text = decode(raw)
            text = text[:-1] if text.endswith("\r") else text
            encoded = text.encode()
            found = [text] if len(encoded) <= cap else pieces(encoded)
            out += [(stream, piece) for piece in found]
        while len(rest) >= cap:
            out += [(stream, piece) for piece in pieces(rest[:cap])]
            rest = rest[cap:]
        partial[stream] = rest
    for stream, rest in partial.items():
        if rest:
            out += [(stream, piece) for piece in pieces(rest)]
    return [(n, stream.value, text) for n, (stream, text) in enumerate(out)]


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(
            st.sampled_from([LogStream.STDOUT, LogStream.STDERR]),
            st.lists(
                st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b"\xc3\xa9", b"\xc3"])
                | st.sampled_from([b"\xff", b"\x00", "日".encode(), b"\xf0\x9f\x9a\x80", b"z" * 9]),
                max_size=30,
            ).map(b"".join),
        ),
        max_size=8,
    ),
    cap=st.sampled_from([4, 5, 8, 64]),
)
def test_batches_hold_the_lines_the_rules_give_one_line_at_a_time(
    chunks: list[tuple[LogStream, bytes]], cap: int
) -> None:
    a = LineAssembler(max_line_bytes=cap)
    batches = [a.feed(stream, data, T) for stream, data in chunks] + [a.flush(T)]
    assert texts(*batches) == reference(chunks, cap)
    assert a.next_n == len(reference(chunks, cap))
    for batch in batches:
        assert batch.size == sum(len(line.text.encode()) for line in batch.lines())


def test_a_window_of_a_batch_splits_only_the_segments_it_cuts() -> None:
    a = LineAssembler()
    parts = [
        a.feed(LogStream.STDOUT, b"".join(b"%d\n" % i for i in range(k, k + 10)), T)
        for k in (0, 10, 20)
    ]
    batch = LogBatch(0, [segment for part in parts for segment in part.segments])
    everything = batch.lines()
    for first in range(-2, 32):
        for limit in (0, 1, 3, 10, 15, 40):
            window = batch.window(first, limit)
            assert window.lines() == [x for x in everything if first <= x.n < first + limit]
            assert window.first_n == max(first, 0)
    assert batch.window(5, 20).segments[1] is parts[1].segments[0], "whole segments are kept"
