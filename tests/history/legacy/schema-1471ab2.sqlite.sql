-- The history schema as gridctl created it before points were keyed by site (commit 1471ab2),
-- for sqlite: what `gridctl db upgrade` must migrate without losing a row. Frozen: never edit.

CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);

-- 1: point catalogue and readings
CREATE TABLE sites (
                id TEXT PRIMARY KEY,
                timezone TEXT NOT NULL,
                raw_retention_days INTEGER NOT NULL
            );
CREATE TABLE points (
                id INTEGER PRIMARY KEY,
                address TEXT NOT NULL UNIQUE,
                site_id TEXT REFERENCES sites (id),
                unit TEXT NOT NULL DEFAULT '',
                kind TEXT NOT NULL DEFAULT 'measurement',
                energy_factor_kwh REAL,
                counter_max REAL
            );
CREATE TABLE dwellings (
                site_id TEXT NOT NULL REFERENCES sites (id),
                id TEXT NOT NULL,
                meter_point_id INTEGER NOT NULL REFERENCES points (id),
                PRIMARY KEY (site_id, id)
            );
CREATE TABLE readings (
                point_id INTEGER NOT NULL,
                ts INTEGER NOT NULL,
                value REAL,
                quality INTEGER NOT NULL,
                PRIMARY KEY (point_id, ts)
            ) WITHOUT ROWID;
INSERT INTO schema_migrations VALUES (1, 'point catalogue and readings', '2026-11-01T00:00:00+00:00');

-- 2: rollups and quarantine
CREATE TABLE rollup_dirty (
                id INTEGER PRIMARY KEY,
                point_id INTEGER NOT NULL,
                first_ts INTEGER NOT NULL,
                last_ts INTEGER NOT NULL
            );
CREATE TABLE rollup_hourly (
                point_id INTEGER NOT NULL,
                bucket INTEGER NOT NULL,
                sample_count INTEGER NOT NULL DEFAULT 0,
                value_avg REAL,
                value_min REAL,
                value_max REAL,
                value_last REAL,
                energy_kwh REAL,
                PRIMARY KEY (point_id, bucket)
            ) WITHOUT ROWID;
CREATE TABLE rollup_daily (
                point_id INTEGER NOT NULL,
                bucket INTEGER NOT NULL,
                sample_count INTEGER NOT NULL DEFAULT 0,
                value_avg REAL,
                value_min REAL,
                value_max REAL,
                value_last REAL,
                energy_kwh REAL,
                PRIMARY KEY (point_id, bucket)
            ) WITHOUT ROWID;
CREATE TABLE readings_quarantine (
                id INTEGER PRIMARY KEY,
                address TEXT NOT NULL,
                ts INTEGER NOT NULL,
                value REAL,
                quality INTEGER NOT NULL,
                error TEXT,
                received_at INTEGER NOT NULL,
                reason TEXT NOT NULL
            );
INSERT INTO schema_migrations VALUES (2, 'rollups and quarantine', '2026-11-01T00:00:00+00:00');

-- 100: api users and consent
CREATE TABLE api_users (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                scope TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                revoked_at INTEGER
            );
CREATE TABLE consent_events (
                id INTEGER PRIMARY KEY,
                user_id INTEGER NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
                site_id TEXT NOT NULL,
                dwelling_id TEXT NOT NULL,
                purpose TEXT NOT NULL,
                granted INTEGER NOT NULL,
                at INTEGER NOT NULL
            );
CREATE INDEX consent_events_subject ON consent_events (user_id, site_id, dwelling_id, purpose, id);
CREATE TABLE erasures (
                id INTEGER PRIMARY KEY,
                requested_at INTEGER NOT NULL,
                dwellings INTEGER NOT NULL
            );
INSERT INTO schema_migrations VALUES (100, 'api users and consent', '2026-11-01T00:00:00+00:00');

-- 101: write audit
CREATE TABLE write_audit (
                id INTEGER PRIMARY KEY,
                ts INTEGER NOT NULL,
                site_id TEXT NOT NULL,
                address TEXT NOT NULL,
                device_id TEXT NOT NULL,
                actor TEXT NOT NULL,
                reason TEXT NOT NULL,
                schedule_id TEXT,
                policy_version INTEGER,
                old_value TEXT,
                requested_value TEXT,
                written_value TEXT,
                priority INTEGER,
                lease_until INTEGER,
                outcome TEXT NOT NULL,
                read_back TEXT,
                error TEXT,
                clamped INTEGER NOT NULL,
                ramped INTEGER NOT NULL,
                unit TEXT NOT NULL
            );
CREATE INDEX write_audit_site_ts ON write_audit (site_id, ts);
INSERT INTO schema_migrations VALUES (101, 'write audit', '2026-11-01T00:00:00+00:00');

-- 102: policy versions and demand response
CREATE TABLE policy_versions (
                site_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                policy TEXT NOT NULL,
                author TEXT NOT NULL,
                comment TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (site_id, version)
            );
CREATE TABLE demand_response_events (
                site_id TEXT NOT NULL,
                id TEXT NOT NULL,
                start_at INTEGER NOT NULL,
                end_at INTEGER NOT NULL,
                max_import_kw REAL NOT NULL,
                value_eur_per_kwh REAL NOT NULL,
                created_by TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (site_id, id)
            );
INSERT INTO schema_migrations VALUES (102, 'policy versions and demand response', '2026-11-01T00:00:00+00:00');
