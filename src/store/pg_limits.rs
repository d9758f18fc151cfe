//! The PostgreSQL side of provider limits shared by several cutout
//! instances (scale-out): one row per provider name in `provider_limits`,
//! and every change is ONE statement on that row, so the row lock orders
//! the instances and no read-modify-write race exists.
//!
//! Moments are seconds on the database's clock (`statement_timestamp()`),
//! never the instances' clocks: machines whose clocks differ still space
//! their requests correctly. The table is `UNLOGGED`: it is soft state (a
//! PostgreSQL crash empties it, and the next request starts afresh), so
//! the hundreds of updates a second of a busy line cost no WAL fsync.
//!
//! Must not: decide policy (halving, backoff bounds, staleness come in as
//! arguments from `provider::shared_limit`), sleep, or log the connection
//! URL (it may hold a password).

use tokio_postgres::{Client, NoTls, Row};

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("shared provider limits: cannot reach the PostgreSQL state database: {}", message(.0))]
    Connect(tokio_postgres::Error),
    #[error("shared provider limits: statement failed: {}", message(.0))]
    Query(tokio_postgres::Error),
}

/// The server's code and message when it sent one (the bare `Display`
/// says only "db error"), else the error and its cause. No URL, no
/// password: the driver's errors hold neither.
fn message(e: &tokio_postgres::Error) -> String {
    use std::error::Error;
    match (e.as_db_error(), e.source()) {
        (Some(d), _) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        (None, Some(s)) => format!("{e}: {s}"),
        (None, None) => e.to_string(),
    }
}

/// Instances starting together would race on `CREATE TABLE IF NOT
/// EXISTS` (a unique violation in the catalogue): one at a time, under a
/// transaction-scoped advisory lock of its own.
const SCHEMA: &str = "
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(7262016001);
CREATE UNLOGGED TABLE IF NOT EXISTS provider_limits (
    provider      text PRIMARY KEY,
    next_free     double precision NOT NULL,
    not_before    double precision NOT NULL DEFAULT 0,
    epoch         bigint NOT NULL DEFAULT 0,
    factor        double precision NOT NULL DEFAULT 1,
    in_a_row      integer NOT NULL DEFAULT 0,
    last_decrease double precision,
    pause_reason  text,
    pause_message text,
    pause_since   double precision,
    pause_checked double precision,
    rate_limited  bigint NOT NULL DEFAULT 0
);
COMMIT;";

/// `now` on the database clock, in seconds.
const NOW: &str = "extract(epoch from statement_timestamp())::float8";

/// The columns every statement hands back (see [`LimitRow`]).
const RETURNING: &str =
    "epoch, factor, not_before - extract(epoch from statement_timestamp())::float8, \
     pause_reason, pause_message, pause_since, \
     extract(epoch from statement_timestamp())::float8 - pause_checked, rate_limited";

/// The shared state of one provider, as one statement left it.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitRow {
    /// Bumped by every cool-down: reservations of an older epoch are void.
    pub epoch: i64,
    /// The shared slow-down factor (fixed-rate providers), in (0, 1].
    pub factor: f64,
    /// Seconds of cool-down left (≤ 0: none).
    pub cooling_s: f64,
    /// The shared pause, if any: reason, message, since (unix seconds).
    pub pause: Option<(String, String, f64)>,
    /// Seconds since the pause was last confirmed by a re-check.
    pub pause_age_s: Option<f64>,
    /// 429s seen by all instances together.
    pub rate_limited: i64,
}

impl LimitRow {
    fn read(r: &Row) -> Result<LimitRow, LimitsError> {
        LimitRow::read_at(r, 0)
    }

    /// The [`RETURNING`] columns, starting at column `o`.
    fn read_at(r: &Row, o: usize) -> Result<LimitRow, LimitsError> {
        let reason: Option<String> = get(r, o + 3)?;
        let message: Option<String> = get(r, o + 4)?;
        let since: Option<f64> = get(r, o + 5)?;
        Ok(LimitRow {
            epoch: get(r, o)?,
            factor: get(r, o + 1)?,
            cooling_s: get(r, o + 2)?,
            pause: reason.map(|re| (re, message.unwrap_or_default(), since.unwrap_or(0.0))),
            pause_age_s: get(r, o + 6)?,
            rate_limited: get(r, o + 7)?,
        })
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, LimitsError> {
    r.try_get(i).map_err(LimitsError::Query)
}

/// A reservation: go out after `wait_s` seconds if `epoch` still holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Reserved {
    pub wait_s: f64,
    pub row: LimitRow,
}

/// One connection to the state database for the limits.
pub struct PgLimits {
    client: Client,
}

impl PgLimits {
    /// Connect (without TLS: a loopback or private-network database) and
    /// make sure the table exists. The connection task runs on the current
    /// runtime.
    pub async fn connect(url: &str, password: Option<&str>) -> Result<PgLimits, LimitsError> {
        let mut cfg: tokio_postgres::Config = url.parse().map_err(LimitsError::Connect)?;
        if let Some(pw) = password {
            cfg.password(pw);
        }
        cfg.application_name("cutout-limits");
        let (client, conn) = cfg.connect(NoTls).await.map_err(LimitsError::Connect)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("shared provider limits: connection ended: {e}");
            }
        });
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(LimitsError::Query)?;
        Ok(PgLimits { client })
    }

    /// Whether the connection is gone (reconnect then).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Row, LimitsError> {
        self.client
            .query_one(sql, params)
            .await
            .map_err(LimitsError::Query)
    }

    /// Reserve the next free moment of `provider` at `rate` requests/s
    /// (times the shared factor when `scaled`; never below `floor`).
    pub async fn reserve(
        &self,
        provider: &str,
        rate: f64,
        floor: f64,
        scaled: bool,
    ) -> Result<Reserved, LimitsError> {
        let gap = "1.0 / GREATEST(CASE WHEN $4::bool THEN $2::float8 * p.factor ELSE $2::float8 END, $3::float8, 0.001)";
        let sql = format!(
            "INSERT INTO provider_limits AS p (provider, next_free) VALUES ($1, {NOW} + 1.0 / GREATEST($2::float8, 0.001)) \
             ON CONFLICT (provider) DO UPDATE SET next_free = \
               GREATEST(p.next_free, p.not_before, {NOW}) + {gap} \
             RETURNING next_free - {gap} - {NOW}, {RETURNING}"
        );
        let r = self.one(&sql, &[&provider, &rate, &floor, &scaled]).await?;
        Ok(Reserved {
            wait_s: get(&r, 0)?,
            row: LimitRow::read_at(&r, 1)?,
        })
    }

    /// The row as it is (after a wait, to see whether a cool-down began).
    pub async fn look(&self, provider: &str) -> Result<Option<LimitRow>, LimitsError> {
        let sql = format!("SELECT {RETURNING} FROM provider_limits WHERE provider = $1");
        let rows = self
            .client
            .query(&sql, &[&provider])
            .await
            .map_err(LimitsError::Query)?;
        rows.first().map(LimitRow::read).transpose()
    }

    /// A 429 of a request sent in `ticket_epoch`: the first one of the
    /// epoch halves the factor (not below `min_factor`); every one starts a
    /// cool-down of `retry_after_s`, or full-jitter exponential backoff
    /// between `initial_s` and `max_s` over the 429s in a row; a new epoch
    /// voids the reservations made before.
    #[allow(clippy::too_many_arguments)]
    pub async fn limited(
        &self,
        provider: &str,
        ticket_epoch: i64,
        retry_after_s: Option<f64>,
        initial_s: f64,
        max_s: f64,
        min_factor: f64,
        cap_s: f64,
        rate: f64,
    ) -> Result<LimitRow, LimitsError> {
        let cool = "LEAST($7::float8, COALESCE($3::float8, random() * LEAST($5::float8, \
                    $4::float8 * power(2.0::float8, LEAST(p.in_a_row, 20)::float8))))";
        let sql = format!(
            "UPDATE provider_limits AS p SET \
               in_a_row = p.in_a_row + 1, \
               rate_limited = p.rate_limited + 1, \
               factor = CASE WHEN p.epoch = $2::int8 THEN GREATEST(p.factor / 2.0, $6::float8) ELSE p.factor END, \
               last_decrease = CASE WHEN p.epoch = $2::int8 THEN {NOW} ELSE p.last_decrease END, \
               not_before = GREATEST(p.not_before, {NOW} + {cool}), \
               next_free = GREATEST(GREATEST(p.not_before, {NOW} + {cool}), {NOW} + 1.0 / GREATEST($8::float8, 0.001)), \
               epoch = p.epoch + 1 \
             WHERE provider = $1 RETURNING {RETURNING}"
        );
        let r = self
            .one(
                &sql,
                &[
                    &provider,
                    &ticket_epoch,
                    &retry_after_s,
                    &initial_s,
                    &max_s,
                    &min_factor,
                    &cap_s,
                    &rate,
                ],
            )
            .await?;
        LimitRow::read(&r)
    }

    /// A 503 with `Retry-After`: a cool-down, no slow-down.
    pub async fn busy(
        &self,
        provider: &str,
        cool_s: f64,
        rate: f64,
    ) -> Result<LimitRow, LimitsError> {
        let sql = format!(
            "UPDATE provider_limits AS p SET \
               not_before = GREATEST(p.not_before, {NOW} + $2::float8), \
               next_free = GREATEST(GREATEST(p.not_before, {NOW} + $2::float8), {NOW} + 1.0 / GREATEST($3::float8, 0.001)), \
               epoch = p.epoch + 1 \
             WHERE provider = $1 RETURNING {RETURNING}"
        );
        let r = self.one(&sql, &[&provider, &cool_s, &rate]).await?;
        LimitRow::read(&r)
    }

    /// A success: the 429s in a row end, and once `hold_s` passed since the
    /// last slow-down the factor grows by `step` (up to 1).
    pub async fn succeeded(
        &self,
        provider: &str,
        hold_s: f64,
        step: f64,
    ) -> Result<LimitRow, LimitsError> {
        let sql = format!(
            "UPDATE provider_limits AS p SET in_a_row = 0, \
               factor = CASE WHEN p.last_decrease IS NULL OR {NOW} - p.last_decrease >= $2::float8 \
                        THEN LEAST(1.0, p.factor + $3::float8) ELSE p.factor END \
             WHERE provider = $1 RETURNING {RETURNING}"
        );
        let r = self.one(&sql, &[&provider, &hold_s, &step]).await?;
        LimitRow::read(&r)
    }

    /// Pause every instance (or confirm the pause: a re-check found the
    /// same). `since` stays that of the first pause with this reason.
    pub async fn pause(
        &self,
        provider: &str,
        reason: &str,
        message: &str,
    ) -> Result<LimitRow, LimitsError> {
        let sql = format!(
            "INSERT INTO provider_limits AS p (provider, next_free, pause_reason, pause_message, pause_since, pause_checked) \
             VALUES ($1, {NOW}, $2, $3, {NOW}, {NOW}) \
             ON CONFLICT (provider) DO UPDATE SET \
               pause_since = CASE WHEN p.pause_reason = $2 THEN p.pause_since ELSE {NOW} END, \
               pause_reason = $2, pause_message = $3, pause_checked = {NOW} \
             RETURNING {RETURNING}"
        );
        let r = self.one(&sql, &[&provider, &reason, &message]).await?;
        LimitRow::read(&r)
    }

    /// Lift the pause for every instance.
    pub async fn resume(&self, provider: &str) -> Result<(), LimitsError> {
        self.client
            .execute(
                "UPDATE provider_limits SET pause_reason = NULL, pause_message = NULL, \
                 pause_since = NULL, pause_checked = NULL WHERE provider = $1",
                &[&provider],
            )
            .await
            .map_err(LimitsError::Query)?;
        Ok(())
    }
}
