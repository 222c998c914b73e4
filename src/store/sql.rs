//! One way to run SQL on either engine: the store's code is written once against `Db`, a
//! borrowed SQLite connection or PostgreSQL client, and branches on `Dialect` only where
//! the engines really differ (full-text search, the `IN` list of ids, migrations).
//!
//! Statements use numbered `?N` placeholders, rewritten to `$N` for PostgreSQL. Values go
//! in as `V` (an integer, text, bytes, NULL or a list of ids) and come out through `Col`;
//! every integer column is BIGINT in PostgreSQL, so the same `i64` code reads both.

use super::sqltext::{redact, to_dollars};
use postgres::types::{IsNull, ToSql, Type};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Which engine a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Where the database is: a SQLite file, or a PostgreSQL server (`postgres://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Target {
    /// `--db` as given: a `postgres://` or `postgresql://` URL, else a file path.
    pub fn of(db: &std::path::Path) -> Target {
        match db.to_str() {
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                Target::Postgres(s.to_string())
            }
            _ => Target::Sqlite(db.to_path_buf()),
        }
    }
}

/// Whether `--db` names a PostgreSQL server.
pub fn is_postgres(db: &std::path::Path) -> bool {
    matches!(Target::of(db), Target::Postgres(_))
}

/// A failed statement, from either engine.
#[derive(Debug)]
pub enum DbError {
    Lite(rusqlite::Error),
    Pg(postgres::Error),
    /// The PostgreSQL connection is down and not yet back.
    Disconnected,
    /// A value that does not fit the column's type.
    Type(String),
}

pub type Res<T> = Result<T, DbError>;

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Lite(e) => e.fmt(f),
            DbError::Pg(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => e.fmt(f),
            },
            DbError::Disconnected => f.write_str("not connected to PostgreSQL"),
            DbError::Type(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError::Lite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError::Pg(e)
    }
}

impl DbError {
    /// A rule of the schema said no (a taken name, a missing row referred to).
    pub fn is_constraint(&self) -> bool {
        match self {
            DbError::Lite(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
            }
            // Class 23: integrity constraint violation.
            DbError::Pg(e) => e.code().is_some_and(|c| c.code().starts_with("23")),
            _ => false,
        }
    }

    /// The statement was stopped for taking too long (a search past its budget).
    pub fn is_interrupted(&self) -> bool {
        match self {
            DbError::Lite(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted)
            }
            DbError::Pg(e) => e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED),
            _ => false,
        }
    }
}

/// A statement parameter: what both engines can store in an integer, text or blob column.
#[derive(Debug, Clone, Copy)]
pub enum V<'a> {
    Null,
    I(i64),
    T(&'a str),
    B(&'a [u8]),
    /// A list of ids for `Db::in_ids`: JSON text for SQLite, an array for PostgreSQL.
    Ids(&'a Ids),
}

/// Ids for an `IN` list, kept in the form each engine takes.
#[derive(Debug, Clone)]
pub struct Ids {
    json: String,
    list: Vec<i64>,
}

impl Ids {
    pub fn new(ids: impl IntoIterator<Item = i64>) -> Ids {
        let list: Vec<i64> = ids.into_iter().collect();
        Ids {
            json: serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()),
            list,
        }
    }
}

macro_rules! v_from_int {
    ($($t:ty),*) => {$(
        impl<'a> From<$t> for V<'a> {
            fn from(n: $t) -> V<'a> {
                V::I(n as i64)
            }
        }
        impl<'a> From<&'a $t> for V<'a> {
            fn from(n: &'a $t) -> V<'a> {
                V::I(*n as i64)
            }
        }
        impl<'a> From<Option<$t>> for V<'a> {
            fn from(n: Option<$t>) -> V<'a> {
                n.map_or(V::Null, |n| V::I(n as i64))
            }
        }
        impl<'a> From<&'a Option<$t>> for V<'a> {
            fn from(n: &'a Option<$t>) -> V<'a> {
                n.map_or(V::Null, |n| V::I(n as i64))
            }
        }
    )*};
}
v_from_int!(i64, u32, u64, usize, bool);

impl<'a> From<&'a str> for V<'a> {
    fn from(s: &'a str) -> V<'a> {
        V::T(s)
    }
}
impl<'a> From<&'a &'a str> for V<'a> {
    fn from(s: &'a &'a str) -> V<'a> {
        V::T(s)
    }
}
impl<'a> From<&'a String> for V<'a> {
    fn from(s: &'a String) -> V<'a> {
        V::T(s)
    }
}
impl<'a> From<Option<&'a str>> for V<'a> {
    fn from(s: Option<&'a str>) -> V<'a> {
        s.map_or(V::Null, V::T)
    }
}
impl<'a> From<&'a Option<String>> for V<'a> {
    fn from(s: &'a Option<String>) -> V<'a> {
        s.as_deref().map_or(V::Null, V::T)
    }
}
impl<'a> From<&'a [u8]> for V<'a> {
    fn from(b: &'a [u8]) -> V<'a> {
        V::B(b)
    }
}
impl<'a> From<Option<&'a [u8]>> for V<'a> {
    fn from(b: Option<&'a [u8]>) -> V<'a> {
        b.map_or(V::Null, V::B)
    }
}
impl<'a> From<&'a Ids> for V<'a> {
    fn from(ids: &'a Ids) -> V<'a> {
        V::Ids(ids)
    }
}

/// Statement parameters: `p![a, b]` is `&[V::from(a), V::from(b)]`.
#[macro_export]
macro_rules! p {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::sql::V::from($x)),*][..]
    };
}
pub use p;

impl rusqlite::ToSql for V<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            V::Null => ValueRef::Null,
            V::I(n) => ValueRef::Integer(*n),
            V::T(s) => ValueRef::Text(s.as_bytes()),
            V::B(b) => ValueRef::Blob(b),
            V::Ids(ids) => ValueRef::Text(ids.json.as_bytes()),
        }))
    }
}

impl ToSql for V<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            V::Null => Ok(IsNull::Yes),
            // The column decides the width (a literal may make PostgreSQL infer INT4).
            V::I(n) => match *ty {
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            V::T(s) => s.to_sql(ty, out),
            V::B(b) => b.to_sql(ty, out),
            V::Ids(ids) => ids.list.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A column value both engines can hand back.
pub trait Col: Sized {
    fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self>;
    fn pg(r: &postgres::Row, i: usize) -> Res<Self>;
}

/// An integer column of PostgreSQL, whatever its width (a literal or `count(*)` is not
/// always BIGINT), or a boolean (`EXISTS`).
fn pg_int(r: &postgres::Row, i: usize) -> Res<Option<i64>> {
    let ty = r
        .columns()
        .get(i)
        .map(|c| c.type_().clone())
        .ok_or_else(|| DbError::Type(format!("no column {i}")))?;
    Ok(match ty {
        Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(i64::from),
        Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(i64::from),
        Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(i64::from),
        _ => r.try_get::<_, Option<i64>>(i)?,
    })
}

macro_rules! col_int {
    ($($t:ty),*) => {$(
        impl Col for $t {
            fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
                r.get(i)
            }
            fn pg(r: &postgres::Row, i: usize) -> Res<Self> {
                let n = pg_int(r, i)?.ok_or_else(|| DbError::Type(format!("column {i} is NULL")))?;
                <$t>::try_from(n).map_err(|e| DbError::Type(e.to_string()))
            }
        }
        impl Col for Option<$t> {
            fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
                r.get(i)
            }
            fn pg(r: &postgres::Row, i: usize) -> Res<Self> {
                pg_int(r, i)?
                    .map(|n| <$t>::try_from(n).map_err(|e| DbError::Type(e.to_string())))
                    .transpose()
            }
        }
    )*};
}
col_int!(i64, u32, u64, usize);

impl Col for bool {
    fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Res<Self> {
        Ok(pg_int(r, i)?.is_some_and(|n| n != 0))
    }
}

impl Col for String {
    fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Res<Self> {
        Ok(r.try_get(i)?)
    }
}

impl Col for Option<String> {
    fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Res<Self> {
        Ok(r.try_get(i)?)
    }
}

impl Col for Option<Vec<u8>> {
    fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Res<Self> {
        Ok(r.try_get(i)?)
    }
}

impl Col for Vec<u8> {
    fn lite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Res<Self> {
        Ok(r.try_get(i)?)
    }
}

/// One result row, from either engine.
pub enum Row<'a, 'b> {
    Lite(&'a rusqlite::Row<'b>),
    Pg(&'a postgres::Row),
}

impl Row<'_, '_> {
    pub fn get<T: Col>(&self, i: usize) -> Res<T> {
        match self {
            Row::Lite(r) => Ok(T::lite(r, i)?),
            Row::Pg(r) => T::pg(r, i),
        }
    }
}

/// Most prepared statements one PostgreSQL connection keeps.
const PG_STATEMENTS_KEPT: usize = 256;
/// How long a (re)connection may take.
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before trying a lost connection again; doubled up to the maximum.
const PG_RETRY_FIRST: Duration = Duration::from_millis(200);
const PG_RETRY_MAX: Duration = Duration::from_secs(5);

/// A PostgreSQL connection that comes back after it is lost: `client` is `None` between
/// a failure and the next successful reconnection.
pub struct PgConn {
    url: String,
    read_only: bool,
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl PgConn {
    /// Connects once; `read_only` for reader threads.
    pub fn connect(url: &str, read_only: bool) -> Result<PgConn, String> {
        let client = pg_client(url, read_only)?;
        Ok(PgConn {
            url: url.to_string(),
            read_only,
            client: Some(client),
            statements: HashMap::new(),
            retry_at: None,
            backoff: PG_RETRY_FIRST,
        })
    }

    /// Whether there is a live connection, reconnecting if it was lost and the backoff
    /// allows another try now.
    pub fn ensure(&mut self) -> bool {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        if self.client.take().is_some() {
            log::error!("lost the connection to PostgreSQL");
            self.statements.clear();
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        match pg_client(&self.url, self.read_only) {
            Ok(c) => {
                log::info!("connected to PostgreSQL again");
                self.client = Some(c);
                self.retry_at = None;
                self.backoff = PG_RETRY_FIRST;
                true
            }
            Err(e) => {
                log::warn!("cannot reconnect to PostgreSQL: {e}");
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(PG_RETRY_MAX);
                false
            }
        }
    }

    /// The live client, for what only PostgreSQL does (migrations).
    pub fn client_mut(&mut self) -> Result<&mut postgres::Client, String> {
        self.client().map_err(|e| e.to_string())
    }

    fn client(&mut self) -> Res<&mut postgres::Client> {
        self.client.as_mut().ok_or(DbError::Disconnected)
    }

    fn statement(&mut self, sql: &str) -> Res<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client()?.prepare(&to_dollars(sql))?;
        if self.statements.len() >= PG_STATEMENTS_KEPT {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, params: &[V]) -> Res<Vec<postgres::Row>> {
        let stmt = self.statement(sql)?;
        let ps: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        Ok(self.client()?.query(&stmt, &ps)?)
    }

    fn execute(&mut self, sql: &str, params: &[V]) -> Res<u64> {
        let stmt = self.statement(sql)?;
        let ps: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        Ok(self.client()?.execute(&stmt, &ps)?)
    }
}

fn pg_client(url: &str, read_only: bool) -> Result<postgres::Client, String> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| format!("bad PostgreSQL URL {}: {e}", redact(url)))?;
    config
        .connect_timeout(PG_CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(Duration::from_secs(15))
        .application_name("chatterbox");
    let mut client = config
        .connect(postgres::NoTls)
        .map_err(|e| format!("cannot connect to PostgreSQL at {}: {e}", redact(url)))?;
    let setup = if read_only {
        "SET default_transaction_read_only = on"
    } else {
        "SET statement_timeout = 0"
    };
    client.batch_execute(setup).map_err(|e| e.to_string())?;
    Ok(client)
}

/// An open connection of either engine, owned by one thread.
pub enum Conn {
    Lite(rusqlite::Connection),
    Pg(Box<RefCell<PgConn>>),
}

impl Conn {
    pub fn pg(c: PgConn) -> Conn {
        Conn::Pg(Box::new(RefCell::new(c)))
    }

    pub fn db(&self) -> Db<'_> {
        match self {
            Conn::Lite(c) => Db::Lite(c),
            Conn::Pg(c) => Db::Pg(c),
        }
    }

    /// Whether the connection is usable now (PostgreSQL: reconnects when it may).
    pub fn ensure(&self) -> bool {
        match self {
            Conn::Lite(_) => true,
            Conn::Pg(c) => c.borrow_mut().ensure(),
        }
    }
}

/// A borrowed connection of either engine: what the store's statements run on.
#[derive(Clone, Copy)]
pub enum Db<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(&'a RefCell<PgConn>),
}

impl<'a> Db<'a> {
    pub fn dialect(self) -> Dialect {
        match self {
            Db::Lite(_) => Dialect::Sqlite,
            Db::Pg(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn exec(self, sql: &str, params: &[V]) -> Res<usize> {
        match self {
            Db::Lite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Db::Pg(c) => Ok(c.borrow_mut().execute(sql, params)? as usize),
        }
    }

    /// Runs statements without parameters (transaction control, schema).
    pub fn batch(self, sql: &str) -> Res<()> {
        match self {
            Db::Lite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(c) => Ok(c.borrow_mut().client()?.batch_execute(sql)?),
        }
    }

    /// Every row of a query, each turned into a `T` by `f`.
    pub fn rows<T>(
        self,
        sql: &str,
        params: &[V],
        mut f: impl FnMut(&Row) -> Res<T>,
    ) -> Res<Vec<T>> {
        match self {
            Db::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rs = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(r) = rs.next()? {
                    out.push(f(&Row::Lite(r))?);
                }
                Ok(out)
            }
            Db::Pg(c) => {
                // The borrow ends before `f` runs, so that `f` may use the connection.
                let rows = c.borrow_mut().query(sql, params)?;
                rows.iter().map(|r| f(&Row::Pg(r))).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn opt<T>(self, sql: &str, params: &[V], f: impl FnMut(&Row) -> Res<T>) -> Res<Option<T>> {
        // Every use asks for one row by key or by LIMIT: reading them all costs nothing.
        Ok(self.rows(sql, params, f)?.into_iter().next())
    }

    /// The first row of a query, which must exist.
    pub fn one<T>(self, sql: &str, params: &[V], f: impl FnMut(&Row) -> Res<T>) -> Res<T> {
        self.opt(sql, params, f)?.ok_or(match self {
            Db::Lite(_) => DbError::Lite(rusqlite::Error::QueryReturnedNoRows),
            Db::Pg(_) => DbError::Type("the query returned no row".into()),
        })
    }

    /// The first column of the first row.
    pub fn value<T: Col>(self, sql: &str, params: &[V]) -> Res<T> {
        self.one(sql, params, |r| r.get(0))
    }

    /// `column IN` the ids bound to `?n` (an `Ids` value).
    pub fn in_ids(self, column: &str, n: u32) -> String {
        match self.dialect() {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(?{n}))"),
            Dialect::Postgres => format!("{column} = ANY(?{n})"),
        }
    }
}

#[cfg(test)]
#[path = "sql_tests.rs"]
pub(crate) mod tests;
