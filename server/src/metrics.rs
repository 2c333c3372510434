//! The server's metrics, in Prometheus' text format (OpenMetrics), for `GET /metrics`: one
//! registry for the process, fed by small hooks where things happen (an execution ends, a
//! history row is committed, the cache is asked, a connection opens) and, for what is a state
//! rather than an event (running and queued commands, workers), filled from `status` at each
//! scrape. Label values are bounded: command names come from the registry (an unknown name
//! never runs), statuses and transports from fixed sets.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use mcli_protocol::StatusResult;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The states a worker is reported in (`status`), each always present so that a state that
/// emptied reads 0 rather than vanishing.
const WORKER_STATES: [&str; 2] = ["idle", "busy"];

/// Seconds an execution ran: from a quick script to an hour-long build.
const DURATION_BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// Seconds a history row took to commit: a WAL append takes well under a millisecond, a busy
/// disk much more.
const HISTORY_WRITE_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    command: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

struct Metrics {
    registry: Registry,
    executions: Family<ExecutionLabels, Counter>,
    duration: Histogram,
    running: Gauge,
    queued: Gauge,
    workers: Family<StateLabel, Gauge>,
    connections: Family<TransportLabel, Gauge>,
    connections_accepted: Family<TransportLabel, Counter>,
    history_write: Histogram,
    cache: Family<ResultLabel, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("mcli"),
            executions: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS),
            running: Gauge::default(),
            queued: Gauge::default(),
            workers: Family::default(),
            connections: Family::default(),
            connections_accepted: Family::default(),
            history_write: Histogram::new(HISTORY_WRITE_BUCKETS),
            cache: Family::default(),
        };
        metrics.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register("executions", "Executions ended, by command and status", self.executions.clone());
        r.register("execution_duration_seconds", "How long executions ran", self.duration.clone());
        r.register("running_commands", "Commands running now", self.running.clone());
        r.register("queued_commands", "Calls waiting for a free slot now", self.queued.clone());
        r.register("workers", "Warm worker processes, by state", self.workers.clone());
        r.register("connections", "Open connections, by transport", self.connections.clone());
        r.register("connections_accepted", "Connections accepted, by transport", self.connections_accepted.clone());
        r.register(
            "history_write_seconds",
            "Time to commit an execution's history row, waiting for the writer included",
            self.history_write.clone(),
        );
        r.register("cache_lookups", "Result cache lookups, by result (hit or miss)", self.cache.clone());
        for result in ["hit", "miss"] {
            let _ = self.cache.get_or_create(&ResultLabel { result: result.to_owned() });
        }
        self
    }
}

/// Counts an ended execution of `command` with its `status` (`completed`, `timeout`, ...).
pub fn execution_ended(command: &str, status: &str, took: Duration) {
    let labels = ExecutionLabels { command: command.to_owned(), status: status.to_owned() };
    METRICS.executions.get_or_create(&labels).inc();
    METRICS.duration.observe(took.as_secs_f64());
}

/// Records how long committing one history row took.
pub fn history_written(took: Duration) {
    METRICS.history_write.observe(took.as_secs_f64());
}

/// Counts a result cache lookup.
pub fn cache_lookup(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    METRICS.cache.get_or_create(&ResultLabel { result: result.to_owned() }).inc();
}

/// Counts an opened connection of `transport`; the guard counts it closed when dropped.
pub fn connection_opened(transport: &'static str) -> ConnectionGuard {
    let label = TransportLabel { transport: transport.to_owned() };
    METRICS.connections_accepted.get_or_create(&label).inc();
    METRICS.connections.get_or_create(&label).inc();
    ConnectionGuard(label)
}

/// An open connection, as [`connection_opened`] counted it.
pub struct ConnectionGuard(TransportLabel);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        METRICS.connections.get_or_create(&self.0).dec();
    }
}

/// The metrics as text, the states taken from `status`.
pub fn render(status: &StatusResult) -> String {
    // Scrapes may overlap: the states they set and the text they encode belong together.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let metrics = &*METRICS;
    metrics.running.set(i64::try_from(status.active_commands.len()).unwrap_or(i64::MAX));
    metrics.queued.set(i64::try_from(status.queued).unwrap_or(i64::MAX));
    for state in WORKER_STATES {
        let count = status.workers.iter().filter(|w| w.state == state).count();
        metrics.workers.get_or_create(&StateLabel { state: state.to_owned() }).set(count as i64);
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics.registry);
    text
}
