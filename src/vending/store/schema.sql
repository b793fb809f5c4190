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

-- Alerts an operator must hear about; kept until deleted by hand, acknowledged from the page.
CREATE TABLE IF NOT EXISTS alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    subject         TEXT NOT NULL DEFAULT '',
    message         TEXT NOT NULL,
    data            TEXT NOT NULL DEFAULT '{}',
    created_at      REAL NOT NULL,
    acknowledged_at REAL,
    acknowledged_by TEXT
);

CREATE INDEX IF NOT EXISTS alerts_unacknowledged ON alerts (acknowledged_at);

-- One row per alert and webhook URL, so a delivery interrupted by a restart resumes.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    alert_id        INTEGER NOT NULL REFERENCES alerts (id),
    url             TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    delivered_at    REAL,
    PRIMARY KEY (alert_id, url)
);

CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);

-- Operator actions, allowed or refused: who, when, from where.
CREATE TABLE IF NOT EXISTS audit (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    time            REAL NOT NULL,
    action          TEXT NOT NULL,
    who             TEXT NOT NULL,
    source          TEXT NOT NULL DEFAULT '',
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time);

-- Per-slot low-stock level for alerts; a slot without a row uses the configured default.
CREATE TABLE IF NOT EXISTS slot_alert_levels (
    slot            INTEGER PRIMARY KEY,
    low_stock_level INTEGER NOT NULL CHECK (low_stock_level >= 0)
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

-- A second claim on the id of a WiFi board that waits for approval: another key, or the
-- other protocol. Kept (the first one only) until an operator chooses, so neither claim
-- is approved by a race (docs/protocol-wifi.md, "Approval and conflicts").
CREATE TABLE IF NOT EXISTS wifi_conflicts (
    device_id       TEXT PRIMARY KEY REFERENCES wifi_devices (device_id) ON DELETE CASCADE,
    protocol        INTEGER NOT NULL,
    public_key      TEXT,
    source          TEXT,
    detail          TEXT NOT NULL,
    seen_at         REAL NOT NULL
);

-- The business side (issue 16). Money is always an integer number of minor units (cents)
-- of the one configured currency, never a float.

-- What the machine sells.
CREATE TABLE IF NOT EXISTS products (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    sku             TEXT,
    default_price   INTEGER NOT NULL CHECK (default_price >= 0),
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);

-- The planogram: each slot's product, price (NULL: the product's default), capacity and par.
-- A table of its own, so the slots table and its readers stay as they were.
CREATE TABLE IF NOT EXISTS planogram (
    slot            INTEGER PRIMARY KEY REFERENCES slots (number),
    product_id      INTEGER REFERENCES products (id),
    price           INTEGER CHECK (price IS NULL OR price >= 0),
    capacity        INTEGER CHECK (capacity IS NULL OR capacity >= 0),
    par             INTEGER CHECK (par IS NULL OR par >= 0)
);

-- The product and price in force when a vend was asked for, written with the vend row: a
-- price changed while the vend runs (or before an unknown vend is settled) changes nothing.
CREATE TABLE IF NOT EXISTS vend_prices (
    transaction_id  TEXT PRIMARY KEY REFERENCES transactions (id),
    product_id      INTEGER,
    product_name    TEXT,
    price           INTEGER NOT NULL CHECK (price >= 0)
);

-- A collection closes a period: the cash box was emptied or the machine refilled.
CREATE TABLE IF NOT EXISTS collections (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    time            REAL NOT NULL,
    who             TEXT NOT NULL,
    note            TEXT NOT NULL DEFAULT '',
    sales_count     INTEGER NOT NULL,
    sales_value     INTEGER NOT NULL
);

-- The sales ledger: one row per successful vend, written in the same database transaction
-- that records the success. collection_id stays NULL until a collection closes the period.
CREATE TABLE IF NOT EXISTS sales (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id  TEXT NOT NULL UNIQUE REFERENCES transactions (id),
    slot            INTEGER NOT NULL,
    product_id      INTEGER,
    product_name    TEXT,
    price           INTEGER NOT NULL CHECK (price >= 0),
    sold_at         REAL NOT NULL,
    collection_id   INTEGER REFERENCES collections (id)
);

CREATE INDEX IF NOT EXISTS sales_by_time ON sales (sold_at);
CREATE INDEX IF NOT EXISTS sales_by_collection ON sales (collection_id);

-- Events for the MQTT bridge, written in the same transaction as the change they report.
-- seq is this machine's event number: AUTOINCREMENT so a number is never reused, even after
-- delivered rows are pruned. delivered_at is set on the broker's PUBACK.
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event           TEXT NOT NULL,
    topic           TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      REAL NOT NULL,
    delivered_at    REAL
);

CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox (delivered_at, seq);

-- One row rewritten to learn whether the database can commit again after a failure.
CREATE TABLE IF NOT EXISTS store_probe (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    at              REAL NOT NULL
);
