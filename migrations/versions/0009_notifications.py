"""Notifications: an outbox written in the transaction that records a run's end.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

- ``notify_channels``, ``notify_tasks``, ``notify_settings``: the routing every daemon
  writes from its config at start (``domain.notifications.Routing``); channel task globs
  are stored as anchored regular expressions (``glob_regex``).
- ``notify_events``: what happened (``data`` = the run's facts, timestamps as integer
  microseconds); ``dedupe_key`` makes ``run.long_running`` and ``run.missed`` once-only.
- ``notify_deliveries``: one event to one channel; its id is the ``webhook-id``. Due ones
  (``pending``, ``retrying``, and ``sending`` whose lease ran out: ``next_attempt_at``
  holds the lease's end while sending) are claimed with ``FOR UPDATE SKIP LOCKED``.
- ``notify_attempts``: every try.
- ``notify_streams`` (coalescing windows per task and event) and ``notify_task_state``
  (whether the current failure streak was notified): held in the database, so a restart
  or another node agrees.

The trigger ``runs_outbox`` fires only when a row becomes ``ended`` (a WHEN clause, so the
other updates of the dispatch path never enter PL/pgSQL) and returns at once while no
channel is configured. It applies ``domain.notifications`` (``channels_for``,
``coalesce``, ``end_effects``); the contract tests run the same scenarios against the
in-memory fake that calls those functions.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FAILURE_EVENTS = "'run.failed', 'run.timeout', 'run.crashed', 'run.log_overflow'"

TABLES = [
    """
CREATE TABLE notify_channels (
    name text PRIMARY KEY,
    on_events text[] NOT NULL,
    task_regexes text[] NOT NULL
)""",
    """
CREATE TABLE notify_tasks (
    task_name text COLLATE "C" PRIMARY KEY,
    channels text[],
    warn_after interval
)""",
    """
CREATE TABLE notify_settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    coalesce_window interval NOT NULL
)""",
    """
CREATE TABLE notify_task_state (
    task_name text COLLATE "C" PRIMARY KEY,
    failure_notified boolean NOT NULL DEFAULT false
)""",
    """
CREATE TABLE notify_streams (
    task_name text COLLATE "C" NOT NULL,
    event text NOT NULL,
    window_started_at timestamptz NOT NULL,
    held integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    last_run_id text COLLATE "C",
    PRIMARY KEY (task_name, event)
)""",
    """
CREATE TABLE notify_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type text NOT NULL,
    task_name text COLLATE "C",
    run_id text COLLATE "C",
    data jsonb NOT NULL,
    count integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    dedupe_key text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
)""",
    """
CREATE TABLE notify_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Creation order (ids are random; many rows share one transaction's now()).
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    event_id uuid NOT NULL REFERENCES notify_events (id) ON DELETE CASCADE,
    type text NOT NULL,
    task_name text COLLATE "C",
    run_id text COLLATE "C",
    channel text NOT NULL,
    status text NOT NULL CHECK (status IN
        ('pending', 'sending', 'delivered', 'retrying', 'dead', 'suppressed')),
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    budget_from timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz,
    claimed_by uuid,
    delivered_at timestamptz,
    last_attempt_at timestamptz,
    last_status_code integer,
    last_error text,
    UNIQUE (event_id, channel),
    CONSTRAINT notify_due_has_time CHECK
        (status NOT IN ('pending', 'retrying', 'sending') OR next_attempt_at IS NOT NULL)
)""",
    """
CREATE TABLE notify_attempts (
    delivery_id uuid NOT NULL REFERENCES notify_deliveries (id) ON DELETE CASCADE,
    n integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    verdict text NOT NULL,
    status_code integer,
    error text,
    duration_ms integer NOT NULL DEFAULT 0,
    node_id uuid,
    PRIMARY KEY (delivery_id, n)
)""",
    "CREATE INDEX ix_notify_due ON notify_deliveries (next_attempt_at) "
    "WHERE status IN ('pending', 'retrying', 'sending')",
    "CREATE INDEX ix_notify_deliveries_run ON notify_deliveries (run_id)",
    "CREATE INDEX ix_notify_deliveries_event ON notify_deliveries (event_id)",
    "CREATE INDEX ix_notify_events_created ON notify_events (created_at)",
    "CREATE INDEX ix_notify_deliveries_task ON notify_deliveries (task_name, seq)",
    "CREATE INDEX ix_notify_deliveries_channel ON notify_deliveries (channel, status)",
]

FUNCTIONS = [
    # The channels an event of a task goes to (domain.notifications.channels_for).
    """
CREATE FUNCTION runwarden_notify_channels(p_task text, p_event text) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(c.name ORDER BY c.name COLLATE "C"), '{}')
      FROM notify_channels c
      LEFT JOIN notify_tasks t ON t.task_name = p_task
     WHERE regexp_replace(p_event, '^run\\.', '') = ANY (c.on_events)
       AND EXISTS (SELECT 1 FROM unnest(c.task_regexes) g WHERE p_task ~ g)
       AND (t.channels IS NULL OR c.name = ANY (t.channels))
$$""",
    # A run's facts for a message; timestamps as integer microseconds since the epoch.
    """
CREATE FUNCTION runwarden_notify_data(r runs) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'task', r.task_name, 'run_id', r.id, 'end_reason', r.end_reason,
        'exit_code', r.exit_code, 'attempt', r.retry_attempt,
        'triggered_by', r.triggered_by,
        'started_at', round(extract(epoch FROM r.start_at) * 1000000)::bigint,
        'ended_at', round(extract(epoch FROM r.end_at) * 1000000)::bigint))
$$""",
    # Record an event with one delivery per channel (none: no event, unless deduplicated).
    """
CREATE FUNCTION runwarden_notify_emit(
    p_type text, p_task text, p_run text, p_data jsonb, p_channels text[], p_status text,
    p_count integer, p_dedupe text
) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    ev uuid;
BEGIN
    IF coalesce(cardinality(p_channels), 0) = 0 AND p_dedupe IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO notify_events (type, task_name, run_id, data, count, dedupe_key)
    VALUES (p_type, p_task, p_run, p_data, p_count, p_dedupe)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id INTO ev;
    IF ev IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO notify_deliveries (event_id, type, task_name, run_id, channel, status,
                                   next_attempt_at)
    SELECT ev, p_type, p_task, p_run, c, p_status,
           CASE WHEN p_status = 'pending' THEN now() END
      FROM unnest(p_channels) AS c;
    RETURN ev;
END
$$""",
    # The summary of a stream's held repeats: the latest held run's facts, count = held.
    """
CREATE FUNCTION runwarden_notify_summary(p_task text, p_event text, p_held integer,
                                         p_run text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r runs;
    data jsonb;
BEGIN
    SELECT * INTO r FROM runs WHERE id = p_run;
    IF FOUND THEN
        data := runwarden_notify_data(r);
    ELSE
        data := jsonb_build_object('task', p_task, 'run_id', p_run);
    END IF;
    PERFORM runwarden_notify_emit(p_event, p_task, p_run, data || '{"summary": true}',
        runwarden_notify_channels(p_task, p_event), 'pending', p_held, NULL);
END
$$""",
    # Every window that closed with repeats held: summarise, empty (any node, once each).
    """
CREATE FUNCTION runwarden_notify_flush() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    win interval := coalesce((SELECT coalesce_window FROM notify_settings), '1 hour');
    s notify_streams;
    n integer := 0;
BEGIN
    FOR s IN SELECT * FROM notify_streams
              WHERE held > 0 AND window_started_at + win <= now()
              ORDER BY task_name, event FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM runwarden_notify_summary(s.task_name, s.event, s.held, s.last_run_id);
        UPDATE notify_streams SET held = 0, last_run_id = NULL
         WHERE task_name = s.task_name AND event = s.event;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$""",
    # One running run past its task's warn_after: run.long_running, once (dedupe key).
    """
CREATE FUNCTION runwarden_notify_long_running() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT runs AS run, t.warn_after FROM notify_tasks t
               JOIN runs ON runs.task_name = t.task_name AND runs.status = 'running'
              WHERE t.warn_after IS NOT NULL AND runs.start_at + t.warn_after <= now()
                AND NOT EXISTS (SELECT 1 FROM notify_events e
                                 WHERE e.dedupe_key = 'long_running:' || runs.id)
    LOOP
        IF runwarden_notify_emit('run.long_running', (r.run).task_name, (r.run).id,
               runwarden_notify_data(r.run) || jsonb_build_object(
                   'warn_after_seconds', extract(epoch FROM r.warn_after)),
               runwarden_notify_channels((r.run).task_name, 'run.long_running'), 'pending',
               1, 'long_running:' || (r.run).id) IS NOT NULL THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$""",
    # The outbox trigger: a run became ended.
    f"""
CREATE FUNCTION runs_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev text := 'run.' || NEW.end_reason;
    win interval;
    chans text[];
    notified boolean;
    s notify_streams;
    send text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notify_channels) THEN
        RETURN NULL;
    END IF;
    win := coalesce((SELECT coalesce_window FROM notify_settings), '1 hour');
    chans := runwarden_notify_channels(NEW.task_name, ev);
    IF NEW.end_reason IN ('success', 'failed', 'timeout', 'crashed', 'log_overflow') THEN
        -- The task's streak row first, then its streams, on every path: one lock order.
        INSERT INTO notify_task_state (task_name) VALUES (NEW.task_name)
        ON CONFLICT DO NOTHING;
        SELECT failure_notified INTO notified FROM notify_task_state
         WHERE task_name = NEW.task_name FOR UPDATE;
    END IF;
    IF cardinality(chans) > 0 THEN
        -- The row first (so racing ends of one task queue on its lock), then decide.
        INSERT INTO notify_streams (task_name, event, window_started_at)
        VALUES (NEW.task_name, ev, '-infinity') ON CONFLICT DO NOTHING;
        SELECT * INTO s FROM notify_streams
         WHERE task_name = NEW.task_name AND event = ev FOR UPDATE;
        -- The clock read under the lock, not the transaction's start (now()): an end
        -- whose transaction began before the one that opened the window committed must
        -- not count as inside it (with a window of 0 nothing is ever held).
        IF win > interval '0' AND clock_timestamp() < s.window_started_at + win THEN
            UPDATE notify_streams SET held = held + 1, last_run_id = NEW.id
             WHERE task_name = NEW.task_name AND event = ev;
            send := 'suppressed';
        ELSE
            IF s.held > 0 THEN
                PERFORM runwarden_notify_summary(NEW.task_name, ev, s.held, s.last_run_id);
            END IF;
            UPDATE notify_streams
               SET window_started_at = clock_timestamp(), held = 0, last_run_id = NULL
             WHERE task_name = NEW.task_name AND event = ev;
            send := 'pending';
        END IF;
        PERFORM runwarden_notify_emit(ev, NEW.task_name, NEW.id, runwarden_notify_data(NEW),
                                      chans, send, 1, NULL);
    END IF;
    IF NEW.end_reason IN ('failed', 'timeout', 'crashed', 'log_overflow')
       AND cardinality(chans) > 0 THEN
        IF NOT notified THEN
            UPDATE notify_task_state SET failure_notified = true
             WHERE task_name = NEW.task_name;
        END IF;
    ELSIF NEW.end_reason = 'success' THEN
        FOR s IN SELECT * FROM notify_streams
                  WHERE task_name = NEW.task_name AND event IN ({FAILURE_EVENTS})
                  ORDER BY event FOR UPDATE
        LOOP
            IF s.held > 0 THEN
                PERFORM runwarden_notify_summary(s.task_name, s.event, s.held, s.last_run_id);
            END IF;
        END LOOP;
        DELETE FROM notify_streams
         WHERE task_name = NEW.task_name AND event IN ({FAILURE_EVENTS});
        IF notified THEN
            UPDATE notify_task_state SET failure_notified = false
             WHERE task_name = NEW.task_name;
            PERFORM runwarden_notify_emit('run.recovered', NEW.task_name, NEW.id,
                runwarden_notify_data(NEW),
                runwarden_notify_channels(NEW.task_name, 'run.recovered'), 'pending', 1, NULL);
        END IF;
    END IF;
    RETURN NULL;
END
$$""",
]

TRIGGERS = [
    "CREATE TRIGGER runs_outbox_end AFTER UPDATE OF status ON runs FOR EACH ROW "
    "WHEN (NEW.status = 'ended' AND OLD.status <> 'ended') EXECUTE FUNCTION runs_outbox()",
    # Admissions store a turned-away trigger as ended ``skipped`` directly.
    "CREATE TRIGGER runs_outbox_insert AFTER INSERT ON runs FOR EACH ROW "
    "WHEN (NEW.status = 'ended') EXECUTE FUNCTION runs_outbox()",
]

_DROP_FUNCTIONS = [
    "runs_outbox()",
    "runwarden_notify_long_running()",
    "runwarden_notify_flush()",
    "runwarden_notify_summary(text, text, integer, text)",
    "runwarden_notify_emit(text, text, text, jsonb, text[], text, integer, text)",
    "runwarden_notify_data(runs)",
    "runwarden_notify_channels(text, text)",
]
_DROP_TABLES = [
    "notify_attempts",
    "notify_deliveries",
    "notify_events",
    "notify_streams",
    "notify_task_state",
    "notify_settings",
    "notify_tasks",
    "notify_channels",
]


def upgrade() -> None:
    """Create the outbox's tables, functions and triggers."""
    for sql in (*TABLES, *FUNCTIONS, *TRIGGERS):
        op.execute(sql)


def downgrade() -> None:
    """Undo ``upgrade``."""
    op.execute("DROP TRIGGER IF EXISTS runs_outbox_insert ON runs")
    op.execute("DROP TRIGGER IF EXISTS runs_outbox_end ON runs")
    for name in _DROP_FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name}")
    for name in _DROP_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {name}")
