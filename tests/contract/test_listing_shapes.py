"""Queries that differ only in their values (task, search, window) each get their own page.

The PostgreSQL listing compiles one statement per shape of query and binds the values of
each request: a value leaking from one query into the next would show here.
"""

from __future__ import annotations

from domain.listing import RunQuery, parse_status_filter
from domain.ports import RunRepository
from tests.contract.test_run_repository import TASKS, by_hand, ids, seed


async def test_each_query_of_one_shape_answers_with_its_own_values(repo: RunRepository) -> None:
    made = await seed(repo)
    ended = parse_status_filter("ended")
    for _ in range(2):  # the second round reuses every statement of the first
        for task in TASKS:
            for offset, limit in ((0, 5), (3, 2)):
                expected = [r for r in made if r.task_name == task and ended.matches(r)]
                query = RunQuery(task_name=task, status=ended, offset=offset, limit=limit)
                page = await repo.list(query)
                assert page.total == len(expected), (task, offset)
                wanted = by_hand(expected, "created_at", descending=True)
                assert ids(page.runs) == wanted[offset : offset + limit], (task, offset)
            needle = task[-4:].upper()
            found = await repo.list(RunQuery(search=needle, limit=1000))
            matching = [r for r in made if needle.lower() in r.task_name.lower()]
            assert ids(found.runs) == by_hand(matching, "created_at", descending=True)
            assert found.total == len(matching)
    empty = await repo.list(RunQuery(task_name="nobody", status=ended))
    assert (list(empty.runs), empty.total) == ([], 0)


async def test_offsets_up_to_the_largest_int64_give_empty_pages_with_the_total(
    repo: RunRepository,
) -> None:
    made = await seed(repo)
    for offset in (2**31, 2**63 - 1):
        for query in (RunQuery(offset=offset), RunQuery(task_name=TASKS[0], offset=offset)):
            page = await repo.list(query)
            expected = [r for r in made if query.task_name in (None, r.task_name)]
            assert (list(page.runs), page.total) == ([], len(expected))
