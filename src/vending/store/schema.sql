-- The controller's embedded store. Applied at start-up; every statement is idempotent.

CREATE TABLE IF NOT EXISTS transactions (
    id              TEXT PRIMARY KEY,
    slot            INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'success', 'failed', 'unknown')),
    device_id       TEXT,
    communication   TEXT,
    reason          TEXT,
    message         TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,
    created_at      REAL NOT NULL,
    sent_at         REAL,
    finished_at     REAL,
    checked_at      REAL,
    check_note      TEXT
);

CREATE INDEX IF NOT EXISTS transactions_by_state ON transactions (state);
CREATE INDEX IF NOT EXISTS transactions_by_created ON transactions (created_at);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key             TEXT PRIMARY KEY,
    slot            INTEGER NOT NULL,
    transaction_id  TEXT NOT NULL REFERENCES transactions (id),
    created_at      REAL NOT NULL
);

CREATE INDEX IF NOT EXISTS idempotency_keys_by_created ON idempotency_keys (created_at);

CREATE TABLE IF NOT EXISTS slots (
    number          INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    stock           INTEGER CHECK (stock IS NULL OR stock >= 0),
    updated_at      REAL NOT NULL
);

-- WiFi boards the controller has seen: approval survives restarts. The board's secret is
-- not here but in a 0600 file under <data_dir>/device-keys/.
CREATE TABLE IF NOT EXISTS wifi_devices (
    device_id       TEXT PRIMARY KEY,
    approved        INTEGER NOT NULL DEFAULT 0,
    protocol        INTEGER NOT NULL DEFAULT 1,
    public_key      TEXT,
    server_key      TEXT,
    last_counter    INTEGER NOT NULL DEFAULT 0,
    first_seen      REAL NOT NULL,
    approved_at     REAL
);
