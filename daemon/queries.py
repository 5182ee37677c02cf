"""Every statement of the claim, the completion and the DAG step, in one place.

Each rule is written once, as a fragment both dialects' statements are built from: when a blocked
item becomes ready, when a task is done, what an item's success writes (its row, its attempt, the
ledger, the slot), which money is spent, the fair order. A statement is one text with :named
parameters where the two dialects agree (`Sql`), else one text per dialect, and only where their
machinery differs: PostgreSQL runs the claim and the completion as one statement of data-modifying
CTEs (one round trip, row locks with SKIP LOCKED); SQLite, whose writers BEGIN IMMEDIATE serialises,
runs the same fragments one statement at a time. tests/integration/test_engine_paths.py runs random
DAGs through both and expects the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.db.driver import Sql
from services.states import OPERATOR

# Rules ---------------------------------------------------------------------------------------------


def unblockable(also: str = "") -> str:
    """A blocked item (`item`) whose dependencies have all succeeded may run. `also` narrows the
    dependencies looked at (PostgreSQL's completion statement leaves out the item it completes,
    which its one snapshot still shows running)."""
    return (
        "NOT EXISTS (SELECT 1 FROM item_edge e JOIN item d ON d.id = e.depends_on "
        f"WHERE e.item_id = item.id AND d.state <> 'succeeded'{also})"
    )


def unfinished(also: str = "") -> str:
    """The task (:task) still has an item that has not succeeded; a task with none is done."""
    return f"EXISTS (SELECT 1 FROM item WHERE task_id = :task AND state <> 'succeeded'{also})"


def gate_passes(data: dict[str, object], auto_approve: bool) -> bool:
    """A review gate that is ready passes by itself when it is off (or every gate, in the demo)."""
    return auto_approve or not data.get("on", True)


# Money that counts against a budget: every actual cost, and the reservations still open.
SPENT = "(entry = 'actual' OR (entry = 'reservation' AND open))"


# The DAG step -------------------------------------------------------------------------------------
# Every transaction that changes a task's items takes the task row first (on PostgreSQL; SQLite's
# BEGIN IMMEDIATE already serialises writers): under READ COMMITTED two clips finishing at once would
# each see the other running and leave the assembly blocked for ever.
LOCK_TASK = Sql(
    pg="SELECT id FROM task WHERE id = :task FOR UPDATE", sqlite="SELECT id FROM task WHERE id = :task"
)


def lock_completions_pg(held: Iterable[tuple[int, int]]) -> str:
    """PostgreSQL: what the completions of these (task, item) pairs in one transaction hold, taken
    with its BEGIN (a simple query: the ids are inlined as integers). One item: its task. Several:
    the tasks, then the items, each in id order, the order in which the heartbeat takes items too,
    so that none of them waits on another."""
    pairs = list(held)
    if len(pairs) == 1:
        return LOCK_TASK.inlined(task=pairs[0][0])
    tasks = ", ".join(str(int(t)) for t in sorted({t for t, _ in pairs}))
    items = ", ".join(str(int(i)) for i in sorted({i for _, i in pairs}))
    return (
        f"SELECT id FROM task WHERE id IN ({tasks}) ORDER BY id FOR UPDATE; "
        f"SELECT id FROM item WHERE id IN ({items}) ORDER BY id FOR UPDATE"
    )


_UNBLOCK = (
    "UPDATE item SET state = 'ready', next_attempt_at = :now, updated_at = :now "
    "WHERE task_id = :task AND state = 'blocked' AND {rule}"
)
UNBLOCK = Sql(_UNBLOCK.format(rule=unblockable()))
READY_GATES = Sql(
    f"SELECT id, input FROM item WHERE task_id = :task AND state = 'ready' AND provider = '{OPERATOR}'"
)
PASS_GATES = Sql(
    pg="UPDATE item SET state = 'succeeded', finished_at = :now, updated_at = :now "
    "WHERE id = ANY (:ids::int[]) AND state = 'ready'",
    sqlite="UPDATE item SET state = 'succeeded', finished_at = :now, updated_at = :now "
    "WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'ready'",
)
APPROVE = Sql(
    "UPDATE item SET state = 'succeeded', finished_at = :now, updated_at = :now "
    "WHERE task_id = :task AND kind = :gate AND state = 'ready' RETURNING id"
)
FINISH_TASK = Sql(
    "UPDATE task SET state = 'done', updated_at = :now "
    f"WHERE id = :task AND state = 'active' AND NOT {unfinished()}"
)


# The completion -----------------------------------------------------------------------------------
# What an item's success writes, each fenced by its lease token; {guard} ties a PostgreSQL CTE to the
# fenced update having matched (SQLite runs them only after it did). :usage is JSON text, :final the
# item's output, :cost the attempt's cost, :day the budget day it counts against.
_SUCCEED = (
    "UPDATE item SET state = 'succeeded', output_path = :final, cost_micros = cost_micros + :cost, "
    "lease_expires_at = NULL, finished_at = :now, updated_at = :now, error = NULL "
    "WHERE id = :item AND lease_token = :token AND state = 'running' RETURNING id"
)
_ATTEMPT_SUCCEEDED = (
    "UPDATE attempt SET outcome = 'succeeded', exit_code = 0, usage = :usage, cost_micros = :cost, "
    "finished_at = :now WHERE item_id = :item AND lease_token = :token{guard}"
)
_RESERVATION_CLOSED = (
    "UPDATE ledger SET open = false "
    "WHERE item_id = :item AND attempt_no = :attempt AND entry = 'reservation'{guard}"
)
# Once per attempt (the ledger's unique key): a retried commit is counted once.
_COST_BOOKED = (
    "INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open, "
    "created_at) {values} ON CONFLICT (item_id, attempt_no, entry) DO NOTHING"
)
_COST = ":task, :item, :attempt, :channel, 'actual', :cost, :day, false, :now"
_SLOT_FREED = (
    "UPDATE provider_slot SET item_id = NULL, lease_token = NULL, expires_at = NULL "
    "WHERE lease_token = :token{guard}"
)

SUCCEED = Sql(_SUCCEED)
ATTEMPT_SUCCEEDED = Sql(_ATTEMPT_SUCCEEDED.format(guard=""))
RESERVATION_CLOSED = Sql(_RESERVATION_CLOSED.format(guard=""))
COST_BOOKED = Sql(_COST_BOOKED.format(values=f"VALUES ({_COST})"))
SLOT_FREED = Sql(_SLOT_FREED.format(guard=""))
VIDEO_PATH = Sql("UPDATE task SET final_video_path = :final WHERE id = :task")
ITEM_LEASE = Sql("SELECT state, lease_token FROM item WHERE id = :item")

# PostgreSQL: the same writes and the DAG step in one statement, sent after BEGIN and the task lock.
# Its parts share one snapshot, in which this item still runs: the dependency and done checks leave
# it out explicitly. Items it makes ready are still blocked in that snapshot (so the done check
# stays right and no gate is listed twice). It returns the item's state (for 'already' or
# 'fenced') and the gates now ready, which daemon/dag.py passes when they are off. :video is the
# final cut's path (an assembly) or NULL.
_DONE = " AND EXISTS (SELECT 1 FROM done)"
COMPLETE_PG = Sql(
    pg=f"""
WITH done AS ({_SUCCEED}),
att AS ({_ATTEMPT_SUCCEEDED.format(guard=_DONE)} RETURNING 1),
reservation AS ({_RESERVATION_CLOSED.format(guard=_DONE)} RETURNING 1),
booked AS ({_COST_BOOKED.format(values=f"SELECT {_COST} FROM done")} RETURNING 1),
freed AS ({_SLOT_FREED.format(guard=_DONE)} RETURNING 1),
unblocked AS (
    {_UNBLOCK.format(rule=unblockable(" AND d.id <> :item"))}{_DONE}
    RETURNING item.id, item.provider, item.input
),
pending AS (SELECT {unfinished(" AND id <> :item")} AS left_over),
finished AS (
    UPDATE task SET
        final_video_path = coalesce(:video::text, task.final_video_path),
        state = CASE WHEN task.state = 'active' AND NOT (SELECT left_over FROM pending)
                     THEN 'done' ELSE task.state END,
        updated_at = CASE WHEN task.state = 'active' AND NOT (SELECT left_over FROM pending)
                          THEN :now ELSE task.updated_at END
    WHERE task.id = :task AND EXISTS (SELECT 1 FROM done)
      AND (:video::text IS NOT NULL OR (task.state = 'active' AND NOT (SELECT left_over FROM pending)))
    RETURNING task.id
)
SELECT EXISTS (SELECT 1 FROM done) AS done, i.state, i.lease_token,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(g.id, g.input)), '[]'::jsonb)
        FROM (SELECT id, input FROM unblocked WHERE provider = '{OPERATOR}'
              UNION ALL
              SELECT id, input FROM item
              WHERE task_id = :task AND state = 'ready' AND provider = '{OPERATOR}') g) AS gates
FROM item i WHERE i.id = :item
""",
    sqlite="-- SQLite completes with SUCCEED and the statements after it",
)


# Which of the given providers have a ready item due in an active task: the worker claims only
# there. One indexed probe per provider (ix_item_ready), however long the backlog.
_DUE = (
    "EXISTS (SELECT 1 FROM item i JOIN task t ON t.id = i.task_id "
    "WHERE i.provider = {p} AND i.state = 'ready' AND i.next_attempt_at <= :now AND t.state = 'active')"
)
READY_PROVIDERS = Sql(
    pg=f"SELECT p FROM unnest(:providers::text[]) p WHERE {_DUE.format(p='p')}",
    sqlite=f"SELECT value FROM json_each(:providers) WHERE {_DUE.format(p='value')}",
)


# The claim ----------------------------------------------------------------------------------------
# A claim takes up to `limit` items (the caller's free places for the provider) at once. Both
# dialects take the same decisions, with the fewest round trips each database allows:
#   slots:   the lowest free slot rows of the provider (holder NULL or its lease expired);
#   items:   the fairest eligible items (ready, due, in an active task), by fair_key (the channel's
#            effective turn, one stride further for each of its items picked before), then
#            priority, task, item; the k-th item goes to the k-th slot;
#   budget:  an item whose channel has a budget is claimed alone: the items before it are claimed,
#            and when it comes first, under the channel-day lock the video's and the day's
#            spent-or-reserved money plus the estimate must fit, or the task is noted over budget
#            and skipped (at most BUDGET_TRIES tasks per claim), and the estimate is reserved;
#   writes:  the lease on slot and item, attempts + 1, each channel's turn moved on by 1/weight per
#            item it got, the attempt row with its idempotency key and output path; the claim
#            returns the items, in the fair order, with their dependencies' outputs.
# The fair order is read from the front of ix_item_fair instead of by sorting the whole ready
# backlog: the channels with ready items (a loose index scan), then each channel's first eligible
# items in (priority, task, id) order. The cost does not grow with the backlog.
CLAIM_LIMIT = 8  # the most items one claim takes (each channel offers this many candidates)


def fair_key(turn: str, floor: str, greatest: str, rank: str, stride: str) -> str:
    """The fair order's first key for a channel's `rank`-th eligible item (0 its first): the
    channel's effective turn (its turn lifted to the floor, the lowest turn among channels with
    eligible items; a channel never served goes just below the floor) plus one stride (1/weight)
    for each of its items picked before, which is the turn those picks leave behind. A claim of
    several items so takes what as many claims of one would take, but that a never-served channel
    starts from the floor the claim began with. `greatest` is the dialect's two-argument maximum
    (PostgreSQL's greatest() skips NULLs where SQLite's max() returns NULL: hence the CASE)."""
    return (
        f"CASE WHEN {turn} IS NULL THEN "
        f"(CASE WHEN {rank} = 0 THEN {floor} - 0.5 ELSE {floor} + {rank} * {stride} END) "
        f"ELSE {greatest}({turn}, {floor}) + {rank} * {stride} END"
    )


# PostgreSQL ------------------------------------------------------------------------------------------
# One statement of data-modifying CTEs, run in autocommit (its own transaction: one round trip):
# lock the slots (SKIP LOCKED), choose the items and lock them (SKIP LOCKED), write everything,
# return the claims. Each channel offers its first CLAIM_LIMIT eligible items, so that items other
# claims hold locked are passed over.
#
# Nothing is written for the chosen items from the first whose channel has a budget ($8) on: when
# it is the first, the budgeted claim follows, in a transaction that takes the channel-day lock
# first (a new snapshot must see the money other claims reserved before it). Nothing is written
# either ("blind") when a channel's first {window} ready items are all ineligible (a paused task's
# backlog, a provider's backoff): its first eligible item, further on, is not known, and the claim
# looks again with the next, wider window.
WINDOWS = (64, 4096, 2**31 - 1)  # the last one holds every backlog: never blind

_STRIDE_PG = "coalesce(($6::jsonb ->> {channel})::float8, 1.0)"

# The chosen items' leases, attempts and turns, once `go` holds (id, floor, slot_no, n) of locked
# items and slots, n their place in the fair order; $2 now, $3 token, $4 expires, $5 owner,
# $6 strides, $7 extensions. An item's lease token is $3 and its place: one claim, one token per
# item. A slot is held a grace (half the TTL, lease.grace) longer than the lease.
_CLAIM_WRITES_PG = f"""
taken AS (
    UPDATE provider_slot s SET item_id = go.id, lease_token = $3 || '-' || go.n,
                               expires_at = $4::timestamptz + ($4::timestamptz - $2::timestamptz) / 2
    FROM go WHERE s.provider = $1 AND s.slot_no = go.slot_no
    RETURNING s.slot_no
),
run AS (
    UPDATE item i SET state = 'running', lease_owner = $5, lease_token = $3 || '-' || go.n,
                      lease_expires_at = $4, attempts = i.attempts + 1, updated_at = $2
    FROM go WHERE i.id = go.id
    RETURNING i.id, i.task_id, i.channel_id, i.kind, i.key, i.input, i.input_hash, i.attempts,
              i.provider_job_id, i.generation, i.estimate_micros, i.lease_token, go.floor, go.n
),
named AS (
    SELECT r.*,
        left(r.slug, 16) || '-' || left(r.key, 24) || '-g' || r.generation || '-'
            || left(encode(sha256(convert_to(concat_ws('/', r.channel_id, r.slug, r.key,
                                                       r.input_hash, r.generation), 'UTF8')),
                           'hex'), 12) AS idempotency_key,
        'channels/' || r.channel_id || '/projects/' || r.slug || '/attempts/' || r.key
            || '-a' || r.attempts || coalesce($7::jsonb ->> r.kind, '') AS attempt_output
    FROM (SELECT run.*, (SELECT t.project_slug FROM task t WHERE t.id = run.task_id) AS slug
          FROM run OFFSET 0) r
),
att AS (
    INSERT INTO attempt (item_id, number, idempotency_key, output_path, lease_token, owner, outcome,
                         started_at, cost_micros)
    SELECT id, attempts, idempotency_key, attempt_output, lease_token, $5, 'running', $2, 0 FROM named
    RETURNING id
),
moved AS (
    SELECT channel_id, min(floor) AS floor, count(*) * {_STRIDE_PG.format(channel="channel_id")} AS by
    FROM run GROUP BY channel_id
),
share AS (
    INSERT INTO channel_share AS cs (provider, channel_id, turn)
    SELECT $1, channel_id, floor + by FROM moved
    ON CONFLICT (provider, channel_id) DO UPDATE
    SET turn = greatest(cs.turn + (SELECT m.by FROM moved m WHERE m.channel_id = excluded.channel_id),
                        excluded.turn)
    RETURNING 1
)"""

_CLAIMED_COLUMNS_PG = """
       named.id, named.task_id, named.channel_id, named.kind, named.key, named.input,
       named.input_hash, named.attempts, named.provider_job_id, named.generation, named.slug,
       named.lease_token, named.idempotency_key, named.attempt_output,
       (SELECT coalesce(jsonb_object_agg(d.key, d.output_path), '{}'::jsonb)
        FROM item_edge e CROSS JOIN LATERAL (
            SELECT d.key, d.output_path FROM item d WHERE d.id = e.depends_on OFFSET 0) d
        WHERE e.item_id = named.id AND d.output_path <> '') AS deps"""


# $1 provider, $2 now, $3 token, $4 expires, $5 owner, $6 strides, $7 extensions, $8 channels with
# a budget, $9 tasks skipped (over budget); {window} the window, {limit} the most items to take.
def _claim_pg(window: int, limit: int) -> str:
    return f"""
WITH RECURSIVE chans(channel_id) AS (
    SELECT min(channel_id) FROM item WHERE provider = $1 AND state = 'ready'
  UNION ALL
    SELECT (SELECT min(i.channel_id) FROM item i
            WHERE i.provider = $1 AND i.state = 'ready' AND i.channel_id > c.channel_id)
    FROM chans c WHERE c.channel_id IS NOT NULL
),
slot AS (
    SELECT slot_no FROM provider_slot
    WHERE provider = $1 AND (item_id IS NULL OR expires_at < $2)
    ORDER BY slot_no LIMIT {limit}
    FOR UPDATE SKIP LOCKED
),
slots AS (SELECT slot_no, row_number() OVER (ORDER BY slot_no) AS n FROM slot),
live AS (
    SELECT channel_id FROM chans WHERE channel_id IS NOT NULL AND EXISTS (SELECT FROM slot)
),
cand AS (
    SELECT x.id, x.channel_id, x.rank FROM live CROSS JOIN LATERAL (
        SELECT w.id, w.channel_id, row_number() OVER (ORDER BY w.priority, w.task_id, w.id) - 1 AS rank
        FROM (
            SELECT i.id, i.channel_id, i.priority, i.task_id, i.next_attempt_at FROM item i
            WHERE i.provider = $1 AND i.channel_id = live.channel_id AND i.state = 'ready'
            ORDER BY i.priority, i.task_id, i.id
            LIMIT {window}
        ) w
        WHERE w.next_attempt_at <= $2 AND w.task_id <> ALL ($9::int[])
          AND (SELECT t.state FROM task t WHERE t.id = w.task_id) = 'active'
        ORDER BY w.priority, w.task_id, w.id
        LIMIT {CLAIM_LIMIT}
    ) x
),
blind AS (
    SELECT FROM live
    WHERE CASE WHEN EXISTS (SELECT FROM cand WHERE cand.channel_id = live.channel_id) THEN false
               ELSE (SELECT count(*) FROM (
                        SELECT FROM item i
                        WHERE i.provider = $1 AND i.channel_id = live.channel_id AND i.state = 'ready'
                        LIMIT {window}) w) = {window} END
),
fl AS (
    SELECT coalesce(min(cs.turn), 0)::float8 AS f
    FROM channel_share cs
    WHERE cs.provider = $1 AND cs.channel_id IN (SELECT channel_id FROM cand)
),
pick AS (
    SELECT i.id, i.channel_id, i.task_id, i.key, i.estimate_micros, i.priority,
           (SELECT f FROM fl) AS floor, k.fair
    FROM item i
    LEFT JOIN channel_share cs ON cs.provider = $1 AND cs.channel_id = i.channel_id
    CROSS JOIN LATERAL (
        SELECT {
        fair_key(
            "cs.turn",
            "(SELECT f FROM fl)",
            "greatest",
            "(SELECT c.rank FROM cand c WHERE c.id = i.id)",
            _STRIDE_PG.format(channel="i.channel_id"),
        )
    } AS fair
    ) k
    WHERE i.id = ANY (ARRAY(SELECT id FROM cand)) AND i.state = 'ready' AND i.next_attempt_at <= $2
      AND NOT EXISTS (SELECT FROM blind)
    ORDER BY k.fair, i.priority, i.task_id, i.id
    LIMIT {limit}
    FOR UPDATE OF i SKIP LOCKED
),
picks AS (SELECT pick.*, row_number() OVER (ORDER BY fair, priority, task_id, id) AS n FROM pick),
go AS (
    SELECT p.id, p.floor, s.slot_no, p.n FROM picks p JOIN slots s ON s.n = p.n
    WHERE p.n < coalesce((SELECT min(b.n) FROM picks b WHERE b.channel_id = ANY ($8::text[])),
                         {limit} + 1)
),{_CLAIM_WRITES_PG}
SELECT EXISTS (SELECT FROM blind) AS blind, first.id AS picked, first.channel_id AS picked_channel,
       first.task_id AS picked_task, first.key AS picked_key, first.estimate_micros AS picked_estimate,
       first.floor AS picked_floor,{_CLAIMED_COLUMNS_PG}
FROM (SELECT) one LEFT JOIN (SELECT * FROM picks WHERE n = 1) first ON true LEFT JOIN named ON true
ORDER BY named.n
"""


# The window and the limit are written into the statement, one text for each: as a parameter the
# window made the planner choose a generic plan that cost a quarter of the claim throughput.
CLAIM_PG = {
    (window, limit): _claim_pg(window, limit) for window in WINDOWS for limit in range(1, CLAIM_LIMIT + 1)
}


# The budgeted claim of the one item CLAIM_PG chose first, in the transaction that holds its
# channel-day lock: this statement's snapshot sees every reservation made before the lock was ours.
# Nothing is written unless the estimate fits, and the item is still ready and free, and a slot is
# free. $1-$7 as CLAIM_PG, $8 item, $9 floor, $10 estimate, $11 day, $12 per-video limit,
# $13 per-day limit, $14 channel, $15 task.
CLAIM_BUDGETED_PG = f"""
WITH spent AS (
    SELECT
        (SELECT coalesce(sum(amount_micros), 0) FROM ledger
         WHERE task_id = $15 AND {SPENT})::bigint AS task_spent,
        (SELECT coalesce(sum(amount_micros), 0) FROM ledger
         WHERE channel_id = $14 AND day = $11 AND {SPENT})::bigint AS day_spent
),
fits AS (
    SELECT task_spent + $10 <= $12 AND day_spent + $10 <= $13 AS ok FROM spent
),
slot AS (
    SELECT slot_no FROM provider_slot
    WHERE provider = $1 AND (item_id IS NULL OR expires_at < $2) AND (SELECT ok FROM fits)
    ORDER BY slot_no LIMIT 1
    FOR UPDATE SKIP LOCKED
),
pick AS (
    SELECT i.id FROM item i
    WHERE i.id = $8 AND i.state = 'ready' AND i.next_attempt_at <= $2 AND EXISTS (SELECT FROM slot)
      AND (SELECT t.state FROM task t WHERE t.id = i.task_id) = 'active'
    FOR UPDATE SKIP LOCKED
),
go AS (
    SELECT pick.id, $9::float8 AS floor, slot.slot_no, 1::bigint AS n FROM pick, slot
),{_CLAIM_WRITES_PG},
reserved AS (
    INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open,
                        created_at)
    SELECT task_id, id, attempts, channel_id, 'reservation', $10, $11, true, $2 FROM run
    RETURNING 1
)
SELECT spent.task_spent, spent.day_spent, (SELECT ok FROM fits) AS fits,{_CLAIMED_COLUMNS_PG}
FROM spent LEFT JOIN named ON true
"""


# SQLite: the same decisions one statement at a time. BEGIN IMMEDIATE serialises every writer, so
# nothing comes in between: no row locks, and each channel's first eligible items are exact.
# :limit items at most; {strides} the channels' strides, as bound values (picks_sqlite). Each
# channel's items are read from the front of ix_item_fair, named: without statistics SQLite's
# planner took ix_item_claim for the correlated list and sorted the channel's whole backlog.
_PICKS_SQLITE = """
WITH RECURSIVE chans(channel_id) AS (
    SELECT (SELECT min(channel_id) FROM item WHERE provider = :provider AND state = 'ready')
  UNION ALL
    SELECT (SELECT min(i.channel_id) FROM item i
            WHERE i.provider = :provider AND i.state = 'ready' AND i.channel_id > c.channel_id)
    FROM chans c WHERE c.channel_id IS NOT NULL
),
firsts AS (
    SELECT i.id, i.channel_id, i.priority, i.task_id,
           row_number() OVER (PARTITION BY i.channel_id ORDER BY i.priority, i.task_id, i.id) - 1 AS rank
    FROM chans c JOIN item i ON i.id IN (
        SELECT e.id FROM item e INDEXED BY ix_item_fair
        WHERE e.provider = :provider AND e.channel_id = c.channel_id AND e.state = 'ready'
          AND e.next_attempt_at <= :now
          AND e.task_id NOT IN (SELECT value FROM json_each(:skipped))
          AND (SELECT t.state FROM task t WHERE t.id = e.task_id) = 'active'
        ORDER BY e.priority, e.task_id, e.id LIMIT :limit)
    WHERE c.channel_id IS NOT NULL
),
strides(channel_id, stride) AS ({strides}),
cand AS (
    SELECT f.id, f.channel_id, f.priority, f.task_id, f.rank, cs.turn,
           coalesce((SELECT s.stride FROM strides s WHERE s.channel_id = f.channel_id), 1.0) AS stride
    FROM firsts f
    LEFT JOIN channel_share cs ON cs.provider = :provider AND cs.channel_id = f.channel_id
),
fl AS (SELECT coalesce(min(turn), 0.0) AS f FROM cand)
SELECT i.id, i.task_id, i.channel_id, i.kind, i.key, i.input, i.input_hash, i.attempts,
       i.provider_job_id, i.estimate_micros, i.generation,
       (SELECT t.project_slug FROM task t WHERE t.id = i.task_id),
       (SELECT f FROM fl),
       (SELECT json_group_object(d.key, d.output_path) FROM item_edge e JOIN item d ON d.id = e.depends_on
        WHERE e.item_id = i.id AND d.output_path <> '')
FROM cand JOIN item i ON i.id = cand.id
ORDER BY {fair}, cand.priority, cand.task_id, cand.id
LIMIT :limit
"""


def picks_sqlite(strides: int) -> str:
    """SQLite's pick of up to :limit items, for `strides` channels with a stride (bound as :c0,
    :s0, :c1, :s1...: as values, not text, so both databases add the same doubles)."""
    values = ", ".join(f"(:c{n}, :s{n})" for n in range(strides)) or "SELECT NULL, NULL WHERE 0"
    return _PICKS_SQLITE.format(
        strides=f"VALUES {values}" if strides else values,
        fair=fair_key("cand.turn", "(SELECT f FROM fl)", "max", "cand.rank", "cand.stride"),
    )


SPENT_SQLITE = f"""
SELECT (SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE task_id = ? AND {SPENT}),
       (SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE channel_id = ? AND day = ? AND {SPENT})
"""
RESERVE_SQLITE = """
INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open, created_at)
VALUES (?, ?, ?, ?, 'reservation', ?, ?, 1, ?)
"""
FREE_SLOTS_SQLITE = (
    "SELECT slot_no FROM provider_slot WHERE provider = ? AND (item_id IS NULL OR expires_at < ?) "
    "ORDER BY slot_no LIMIT ?"
)
SLOT_TAKEN_SQLITE = (
    "UPDATE provider_slot SET item_id = ?, lease_token = ?, expires_at = ? WHERE provider = ? AND slot_no = ?"
)
ITEM_TAKEN_SQLITE = (
    "UPDATE item SET state = 'running', lease_owner = ?, lease_token = ?, lease_expires_at = ?, "
    "attempts = ?, updated_at = ? WHERE id = ?"
)
# The channel's turn: lifted to the floor, then moved on by its stride for each item it got.
PASS_ADVANCED_SQLITE = (
    "INSERT INTO channel_share (provider, channel_id, turn) VALUES (?, ?, ?) "
    "ON CONFLICT (provider, channel_id) DO UPDATE SET turn = max(turn, ?) + ?"
)
ATTEMPT_STARTED_SQLITE = (
    "INSERT INTO attempt (item_id, number, idempotency_key, output_path, lease_token, owner, "
    "outcome, started_at, cost_micros) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, 0)"
)
