-- The fleet view's copy, built only from what machines publish. Every statement is idempotent.

-- One row per machine heard of: its last will / availability and its last retained status.
CREATE TABLE IF NOT EXISTS machines (
    machine_id      TEXT PRIMARY KEY,
    availability    TEXT,
    availability_at REAL,
    status          TEXT NOT NULL DEFAULT '{}',
    status_at       REAL,
    first_seen      REAL NOT NULL
);

-- Every event once: a redelivered (machine_id, seq) is ignored.
CREATE TABLE IF NOT EXISTS events (
    machine_id      TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    event           TEXT NOT NULL,
    time            REAL NOT NULL,
    body            TEXT NOT NULL,
    received_at     REAL NOT NULL,
    PRIMARY KEY (machine_id, seq)
);

CREATE INDEX IF NOT EXISTS events_by_kind ON events (machine_id, event, time);

-- Each slot as its newest event (by seq) left it.
CREATE TABLE IF NOT EXISTS slots (
    machine_id      TEXT NOT NULL,
    slot            INTEGER NOT NULL,
    name            TEXT,
    stock           INTEGER,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (machine_id, slot)
);
