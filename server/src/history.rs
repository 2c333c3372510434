//! The persistent command history: an SQLite database (WAL) in the state directory, one row per
//! execution. `execute` answers only after its row is committed, so a result a client has
//! received is never missing after a crash.
//!
//! A row is committed where it is recorded when nothing else is writing: a one-row WAL append
//! costs less than handing it to another thread and back. Otherwise it goes to the writer
//! thread, which commits every row waiting in one transaction (so the cost per execution shrinks
//! under load), waits out another process's write lock, and does the slow work: checkpoints
//! (which may fsync) and retention, so neither ever stalls the async workers.
//!
//! The schema evolves by the numbered files in `server/migrations/`, applied at start. A
//! database from a newer mcli is refused, never touched.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as sync_mpsc;
use std::time::{Duration, SystemTime};

use mcli_protocol::{ExecStatus, HistoryEntry, HistoryParams};
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

/// The migrations, in order; the database's `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_create_executions.sql"),
    include_str!("../migrations/0002_id_counter.sql"),
    include_str!("../migrations/0003_detached.sql"),
];
/// Execution ids taken from the shared counter at a time.
pub const ID_BLOCK: u64 = 1000;
/// Rows waiting for the writer; callers wait beyond it (backpressure, not memory).
const QUEUE: usize = 1024;
/// How often, in rows written, retention is applied (and the WAL checkpointed).
const PRUNE_EVERY: u64 = 500;
/// How long a write waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The most rows one `history` call returns.
pub const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error(
        "history database {path} was written by a newer mcli (schema {found}, this one knows {known}); upgrade mcli, or move the file away to start a new history"
    )]
    Newer { path: PathBuf, found: i64, known: i64 },
    #[error("cannot create the history database {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
}

/// How much history is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_entries: u64,
    pub max_age: Duration,
}

/// One execution, as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub transport: &'static str,
    pub started: SystemTime,
    pub duration_ms: u64,
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cached: bool,
    /// Run as a detached job.
    pub detached: bool,
}

struct Job {
    record: Record,
    done: oneshot::Sender<()>,
}

enum Message {
    Row(Job),
    /// Take a block of execution ids from the shared counter.
    Reserve(sync_mpsc::Sender<Option<Range<u64>>>),
    /// Close the database cleanly (checkpointing the WAL), then say so.
    Close(sync_mpsc::Sender<()>),
    /// Checkpoint the WAL and apply retention (rows were committed in place).
    Maintain,
}

/// What the recording side and the writer thread share.
struct Shared {
    /// The connection: `None` once closed. Whoever holds the lock sets the busy timeout it needs.
    conn: std::sync::Mutex<Option<Connection>>,
    /// Rows handed to the writer and not yet committed: while there are any, new rows join them.
    queued: AtomicU64,
    /// Rows committed since the last maintenance (checkpoint, retention).
    since_maintenance: AtomicU64,
    /// Whether maintenance has been asked of the writer and the message not yet taken.
    maintenance_asked: AtomicBool,
    /// Set (under the lock) by a checkpoint: the next write may start the WAL over, which
    /// syncs it, so it is the writer's to make, not an async worker's.
    wal_restart_pending: AtomicBool,
    count: AtomicU64,
    /// How much is kept; a reload may change it.
    retention: std::sync::Mutex<Retention>,
}

/// The history's handle: commits a row in place when the database is free, else hands it to the
/// writer thread, which commits whatever is waiting in one transaction and wakes each caller.
pub struct History {
    tx: sync_mpsc::SyncSender<Message>,
    shared: Arc<Shared>,
    pub path: PathBuf,
}

impl History {
    /// Opens (creating and migrating) the database and starts the writer thread. Returns the
    /// history and a first block of execution ids.
    pub fn open(path: &Path, retention: Retention) -> Result<(History, Range<u64>), HistoryError> {
        let conn = open_writable(path)?;
        let sqlite = |source| HistoryError::Sqlite { path: path.to_owned(), source };
        // Only what a start needs; retention and the count are the writer's first job, off the
        // start-up path.
        let ids = reserve(&conn).map_err(sqlite)?;
        let shared = Arc::new(Shared {
            conn: std::sync::Mutex::new(Some(conn)),
            queued: AtomicU64::new(0),
            // Retention and the count are the writer's first job, off the start-up path.
            since_maintenance: AtomicU64::new(PRUNE_EVERY),
            maintenance_asked: AtomicBool::new(false),
            wal_restart_pending: AtomicBool::new(false),
            count: AtomicU64::new(0),
            retention: std::sync::Mutex::new(retention),
        });
        let (tx, rx) = sync_mpsc::sync_channel(QUEUE);
        let writer = Writer { shared: Arc::clone(&shared), rx, path: path.to_owned() };
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || writer.run())
            .map_err(|source| HistoryError::Create { path: path.to_owned(), source })?;
        let _ = tx.try_send(Message::Maintain);
        Ok((History { tx, shared, path: path.to_owned() }, ids))
    }

    /// Records an execution and waits until it is committed.
    pub async fn record(&self, record: Record) {
        let started = std::time::Instant::now();
        self.record_now(record).await;
        crate::metrics::history_written(started.elapsed());
    }

    async fn record_now(&self, record: Record) {
        if self.commit_in_place(&record) {
            return;
        }
        let id = record.id;
        let (done, committed) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        let queued = match self.tx.try_send(Message::Row(Job { record, done })) {
            Ok(()) => true,
            Err(sync_mpsc::TrySendError::Full(job)) => {
                // The queue is bounded: wait for room, off the async threads.
                let tx = self.tx.clone();
                matches!(tokio::task::spawn_blocking(move || tx.send(job).is_ok()).await, Ok(true))
            }
            Err(sync_mpsc::TrySendError::Disconnected(_)) => false,
        };
        if !queued {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
        }
        if !queued || committed.await.is_err() {
            tracing::error!(execution = id, "execution not recorded in the history");
        }
    }

    /// Commits `record` on this thread when no row waits for the writer and nobody holds the
    /// database; false otherwise, or when the write fails (the writer then retries and
    /// reports). Never waits for a lock.
    fn commit_in_place(&self, record: &Record) -> bool {
        if self.shared.queued.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let mut guard = match self.shared.conn.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        if self.shared.wal_restart_pending.load(Ordering::SeqCst) {
            return false;
        }
        let Some(conn) = guard.as_mut() else { return false };
        // Another process's write lock is the writer's to wait for (it sets its own timeout).
        let _ = conn.busy_timeout(Duration::ZERO);
        let written = insert_once(conn, std::iter::once(record));
        if written.is_err() {
            return false;
        }
        self.shared.count.fetch_add(1, Ordering::Relaxed);
        drop(guard);
        let due = self.shared.since_maintenance.fetch_add(1, Ordering::Relaxed) + 1 >= PRUNE_EVERY;
        if due
            && !self.shared.maintenance_asked.swap(true, Ordering::SeqCst)
            && self.tx.try_send(Message::Maintain).is_err()
        {
            self.shared.maintenance_asked.store(false, Ordering::SeqCst);
        }
        true
    }

    /// Keeps `retention` from now on (a reload of the config), applying it at once.
    pub fn set_retention(&self, retention: Retention) {
        *self.shared.retention.lock().unwrap_or_else(|p| p.into_inner()) = retention;
        // Due now: the writer maintains when it next wakes, which this message makes it do.
        self.shared.since_maintenance.store(PRUNE_EVERY, Ordering::Relaxed);
        let _ = self.tx.try_send(Message::Maintain);
    }

    /// Rows in the history now.
    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// Takes the next block of execution ids (waits for the writer; a block lasts
    /// [`ID_BLOCK`] executions).
    pub fn reserve(&self) -> Option<Range<u64>> {
        let (tx, rx) = sync_mpsc::channel();
        self.tx.send(Message::Reserve(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(10)).ok().flatten()
    }

    /// Writes what is queued and closes the database, at shutdown; waits a few seconds at most.
    pub fn close(&self) {
        let (tx, rx) = sync_mpsc::channel();
        if self.tx.send(Message::Close(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// The writer thread's side.
struct Writer {
    shared: Arc<Shared>,
    rx: sync_mpsc::Receiver<Message>,
    path: PathBuf,
}

impl Writer {
    fn run(self) {
        let mut closing = None;
        while closing.is_none() {
            let Ok(first) = self.rx.recv() else { break };
            let mut jobs = Vec::new();
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Row(job) => jobs.push(job),
                    Message::Reserve(reply) => {
                        let block = self.with_conn(|conn| reserve(conn));
                        if let Err(err) = &block {
                            tracing::error!(%err, "cannot take execution ids from the history");
                        }
                        let _ = reply.send(block.ok());
                    }
                    // Taken: a later request is a new one (the check below decides).
                    Message::Maintain => self.shared.maintenance_asked.store(false, Ordering::SeqCst),
                    Message::Close(ack) => {
                        closing = Some(ack);
                        break;
                    }
                }
                if jobs.len() < QUEUE {
                    next = self.rx.try_recv().ok();
                }
            }
            self.commit(jobs);
            let since = self.shared.since_maintenance.load(Ordering::Relaxed);
            if since >= PRUNE_EVERY {
                // Rows committed meanwhile count towards the next time.
                self.shared.since_maintenance.fetch_sub(since, Ordering::Relaxed);
                self.maintain();
            }
        }
        // Closing checkpoints the WAL into the database, so the next start has nothing to recover.
        let conn = self.shared.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Err((_, err))) = conn.map(Connection::close) {
            tracing::warn!(%err, "cannot close the history cleanly");
        }
        if let Some(ack) = closing {
            let _ = ack.send(());
        }
    }

    /// Commits the rows of `jobs` in one transaction and tells their callers.
    fn commit(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let written = self.with_conn(|conn| {
            insert(conn, &jobs)?;
            self.shared.wal_restart_pending.store(false, Ordering::SeqCst);
            self.shared.count.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            Ok(())
        });
        self.shared.queued.fetch_sub(jobs.len() as u64, Ordering::SeqCst);
        match written {
            Ok(()) => {
                self.shared.since_maintenance.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for job in jobs {
                    let _ = job.done.send(());
                }
            }
            // Dropping the senders tells the callers their rows were not written.
            Err(err) => tracing::error!(path = %self.path.display(), %err, "cannot write the history"),
        }
    }

    /// Runs `work` with the connection (which is there until the writer closes it).
    fn with_conn<T>(&self, work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let mut guard = self.shared.conn.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(conn) => {
                conn.busy_timeout(BUSY_TIMEOUT)?;
                work(conn)
            }
            None => Err(rusqlite::Error::InvalidQuery),
        }
    }

    /// Retention, and a checkpoint of the WAL (commits never checkpoint themselves, so that
    /// none runs on an async worker).
    fn maintain(&self) {
        let pruned = self.with_conn(|conn| {
            let retention = *self.shared.retention.lock().unwrap_or_else(|p| p.into_inner());
            let left = prune(conn, retention)?;
            self.shared.count.store(left, Ordering::Relaxed);
            Ok(())
        });
        if let Err(err) = pruned {
            tracing::warn!(%err, "cannot prune the history");
        }
        let checkpointed = self.with_conn(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            self.shared.wal_restart_pending.store(true, Ordering::SeqCst);
            Ok(())
        });
        if let Err(err) = checkpointed {
            tracing::warn!(%err, "cannot checkpoint the history");
        }
    }
}

/// The history database of server `name` in the state directory.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}-history.sqlite3"))
}

fn open_writable(path: &Path) -> Result<Connection, HistoryError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let create = |source| HistoryError::Create { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(create)?;
    }
    // Create it private before SQLite opens it, and refuse what is not a regular file of the
    // user: a symbolic link (to a file that is no database, or anywhere) is not followed.
    let mut options = std::fs::OpenOptions::new();
    mcli_shared::paths::open_own_file(path, options.write(true).create(true).truncate(false).mode(0o600))
        .map_err(create)?;
    // (SQLite's own SQLITE_OPEN_NOFOLLOW would refuse a link anywhere in the path, such as a
    // home dir that is one; it opens its `-wal` and `-shm` files with O_NOFOLLOW itself.)
    let sqlite = |source| HistoryError::Sqlite { path: path.to_owned(), source };
    let mut conn = Connection::open(path).map_err(sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(HistoryError::Newer { path: path.to_owned(), found, known });
    }
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
    // In WAL mode NORMAL loses nothing to a crash of the process, only (possibly the last
    // commits) to a crash of the machine, and spares an fsync per commit.
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
    // The writer only appends: a small page cache keeps the server's memory small.
    conn.pragma_update(None, "cache_size", -256).map_err(sqlite)?;
    // Checkpoints are the writer thread's (see `Writer::maintain`), never a commit's.
    conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        // Several processes may open a new history at once (a daemon and editors' --stdio
        // sessions): each migration runs under the write lock and only if no other process
        // applied it meanwhile.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sqlite)?;
        let applied: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
        if applied <= index as i64 {
            tx.execute_batch(sql).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", index as i64 + 1).map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
    }
    Ok(conn)
}

fn insert(conn: &mut Connection, jobs: &[Job]) -> rusqlite::Result<()> {
    // Another process (a `--stdio` session) may write too: take the write lock at BEGIN, where
    // the busy timeout applies, and try a batch again before giving it up.
    let mut attempt = 0;
    loop {
        match insert_once(conn, jobs.iter().map(|job| &job.record)) {
            Err(err) if attempt < 5 && is_busy(&err) => attempt += 1,
            other => return other,
        }
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

fn insert_once<'a>(conn: &mut Connection, records: impl Iterator<Item = &'a Record>) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO executions (id, command, args, cwd, transport, started, started_ms, duration_ms, status, exit_code, signal, cached, detached)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for r in records {
            let args = serde_json::to_string(&r.args).unwrap_or_else(|_| "[]".to_owned());
            let started_ms = r.started.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            // Another process writing the same history (a `--stdio` session beside the daemon)
            // may have used this id: then the row gets the next free one.
            let id = if exists(&tx, r.id)? { None } else { Some(r.id as i64) };
            stmt.execute(params![
                id,
                r.command,
                args,
                r.cwd,
                r.transport,
                rfc3339(r.started),
                started_ms,
                r.duration_ms as i64,
                r.status.as_str(),
                r.exit_code,
                r.signal,
                r.cached,
                r.detached,
            ])?;
        }
    }
    tx.commit()
}

/// Takes [`ID_BLOCK`] ids from the shared counter, atomically.
fn reserve(conn: &Connection) -> rusqlite::Result<Range<u64>> {
    let end: i64 =
        conn.query_row("UPDATE id_counter SET next = next + ?1 RETURNING next", [ID_BLOCK as i64], |r| r.get(0))?;
    let end = end as u64;
    Ok(end - ID_BLOCK..end)
}

fn exists(tx: &rusqlite::Transaction<'_>, id: u64) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?.exists([id as i64])
}

/// Applies retention; returns the rows left.
fn prune(conn: &Connection, retention: Retention) -> rusqlite::Result<u64> {
    let oldest_ms = SystemTime::now()
        .checked_sub(retention.max_age)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    conn.execute("DELETE FROM executions WHERE started_ms < ?1", [oldest_ms])?;
    conn.execute(
        "DELETE FROM executions WHERE id <= (SELECT id FROM executions ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        [retention.max_entries as i64],
    )?;
    conn.query_row("SELECT COUNT(*) FROM executions", [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// The highest execution id in the history on disk (0 when there is none), read-only.
pub fn last_id(path: &Path) -> Result<u64, HistoryError> {
    let newest = HistoryParams { limit: Some(1), ..Default::default() };
    Ok(query(path, &newest)?.first().map_or(0, |e| e.id))
}

/// Reads entries, newest first, without writing anything (also with no server running). A
/// missing database is an empty history.
pub fn query(path: &Path, filter: &HistoryParams) -> Result<Vec<HistoryEntry>, HistoryError> {
    query_page(path, filter, usize::MAX)
}

/// [`query`], stopping before the entry that would take the page past `max_bytes` of JSON (the
/// first entry always comes, so that paging with `before` always moves on): a page of a few
/// huge rows is as bounded as a page of many small ones.
pub fn query_page(path: &Path, filter: &HistoryParams, max_bytes: usize) -> Result<Vec<HistoryEntry>, HistoryError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let sqlite = |source| HistoryError::Sqlite { path: path.to_owned(), source };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(HistoryError::Newer { path: path.to_owned(), found, known });
    }
    if found == 0 {
        return Ok(Vec::new());
    }
    let limit = filter.limit.unwrap_or(50).min(MAX_LIMIT);
    let before = filter.before.map(|id| i64::try_from(id).unwrap_or(i64::MAX));
    let mut stmt = conn
        .prepare(
            "SELECT id, command, args, cwd, transport, started, duration_ms, status, exit_code, signal, cached, detached
             FROM executions
             WHERE (?1 IS NULL OR command = ?1) AND (?2 = 0 OR status != 'completed') AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC LIMIT ?3",
        )
        .map_err(sqlite)?;
    let rows = stmt
        .query_map(params![filter.command, filter.failed.unwrap_or(false), limit, before], |r| {
            let args: String = r.get(2)?;
            Ok(HistoryEntry {
                id: r.get::<_, i64>(0)? as u64,
                command: r.get(1)?,
                args: serde_json::from_str(&args).unwrap_or_default(),
                cwd: r.get(3)?,
                transport: r.get(4)?,
                started: r.get(5)?,
                duration_ms: r.get::<_, i64>(6)? as u64,
                status: r.get(7)?,
                exit_code: r.get(8)?,
                signal: r.get(9)?,
                cached: r.get(10)?,
                detached: r.get(11)?,
            })
        })
        .map_err(sqlite)?;
    let (mut entries, mut bytes) = (Vec::new(), 0usize);
    for row in rows {
        let entry = row.map_err(sqlite)?;
        bytes = bytes.saturating_add(json_len(&entry) + 1);
        if bytes > max_bytes && !entries.is_empty() {
            break;
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The length of `entry` as JSON, counted without building the text.
fn json_len(entry: &HistoryEntry) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; an entry that could not be written would count as empty.
    let _ = serde_json::to_writer(&mut count, entry);
    count.0
}

/// Formats a time as RFC 3339 in UTC with second precision, as the history and `status` show it.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, command: &str, status: ExecStatus) -> Record {
        Record {
            id,
            command: command.into(),
            args: vec!["a b".into()],
            cwd: Some("/tmp".into()),
            transport: "socket",
            started: SystemTime::now(),
            duration_ms: 5,
            status,
            exit_code: Some(if status == ExecStatus::Completed { 0 } else { 1 }),
            signal: None,
            cached: false,
            detached: false,
        }
    }

    const KEEP_ALL: Retention = Retention { max_entries: 1000, max_age: Duration::from_secs(3600) };

    #[tokio::test]
    async fn records_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite3");
        let (history, ids) = History::open(&path, KEEP_ALL).unwrap();
        assert_eq!(ids, 1..1 + ID_BLOCK);
        history.record(record(1, "hello", ExecStatus::Completed)).await;
        history.record(record(2, "deploy", ExecStatus::Failed)).await;
        history.record(record(3, "hello", ExecStatus::TimedOut)).await;
        assert_eq!(history.count(), 3);

        let all = query(&path, &HistoryParams::default()).unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(all[2].args, vec!["a b"]);
        let hello = HistoryParams { command: Some("hello".into()), ..Default::default() };
        assert_eq!(query(&path, &hello).unwrap().len(), 2);
        let failed = HistoryParams { failed: Some(true), limit: Some(1), ..Default::default() };
        assert_eq!(query(&path, &failed).unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), vec![3]);
        drop(history);
        let (history, ids) = History::open(&path, KEEP_ALL).unwrap();
        assert_eq!(ids.start, 1 + ID_BLOCK, "ids go on after a restart, past the block taken before");
        assert_eq!(history.reserve(), Some(1 + 2 * ID_BLOCK..1 + 3 * ID_BLOCK));
    }

    #[tokio::test]
    async fn pages_by_id_and_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite3");
        let (history, _) = History::open(&path, KEEP_ALL).unwrap();
        for id in 1..=5 {
            history.record(record(id, "x", ExecStatus::Completed)).await;
        }
        let ids = |page: Vec<HistoryEntry>| page.iter().map(|e| e.id).collect::<Vec<_>>();
        let next = HistoryParams { limit: Some(2), before: Some(4), ..Default::default() };
        assert_eq!(ids(query(&path, &next).unwrap()), vec![3, 2]);
        let past_the_end = HistoryParams { before: Some(1), ..Default::default() };
        assert_eq!(ids(query(&path, &past_the_end).unwrap()), Vec::<u64>::new());
        let one = json_len(&query(&path, &HistoryParams::default()).unwrap()[0]);
        let all = HistoryParams::default();
        assert_eq!(ids(query_page(&path, &all, 2 * one + 2).unwrap()), vec![5, 4], "two entries fit");
        assert_eq!(ids(query_page(&path, &all, 1).unwrap()), vec![5], "the first entry always comes");
    }

    #[tokio::test]
    async fn keeps_at_most_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite3");
        let (history, _) = History::open(&path, KEEP_ALL).unwrap();
        for id in 1..=20 {
            history.record(record(id, "x", ExecStatus::Completed)).await;
        }
        drop(history);
        let small = Retention { max_entries: 5, max_age: Duration::from_secs(3600) };
        let (history, _) = History::open(&path, small).unwrap();
        history.close();
        let ids: Vec<u64> = query(&path, &HistoryParams::default()).unwrap().iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![20, 19, 18, 17, 16]);
    }

    #[tokio::test]
    async fn rows_committed_in_place_are_pruned_and_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite3");
        let small = Retention { max_entries: 50, max_age: Duration::from_secs(3600) };
        let (history, _) = History::open(&path, small).unwrap();
        // One at a time, nothing else writing: every row is committed in place.
        for id in 1..=1200 {
            history.record(record(id, "x", ExecStatus::Completed)).await;
        }
        let wal = std::fs::metadata(dir.path().join("h.sqlite3-wal")).map_or(0, |m| m.len());
        assert!(wal < 16 * 1024 * 1024, "the WAL is checkpointed as it goes: {wal} bytes");
        history.close();
        let ids: Vec<u64> = query(&path, &HistoryParams::default()).unwrap().iter().map(|e| e.id).collect();
        // Retention ran every PRUNE_EVERY rows: at most 50 kept then, plus the rows since.
        assert!(ids.len() <= 50 + (1200 % PRUNE_EVERY as usize), "{} rows kept", ids.len());
        assert_eq!(ids[0], 1200);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = History::open(&path, KEEP_ALL).err().unwrap().to_string();
        assert!(err.contains("newer mcli (schema 99, this one knows 3)"), "{err}");
        assert!(query(&path, &HistoryParams::default()).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before, "not modified");
    }
}
