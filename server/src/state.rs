//! The server's shared state behind a cheap-clone handle. Each part has one owner of its own:
//! the [`Lifecycle`] (shutdown and idle tracking), the [`Executions`] (admission, the running
//! table, ids and counters), the command registry, the result cache, the warm workers and the
//! history.

use std::sync::{Arc, RwLock};

use mcli_shared::config::Config;
use mcli_shared::paths::ServerPaths;

use crate::cache::ResultCache;
use crate::commands::Commands;
use crate::executions::Executions;
use crate::history::History;
use crate::ids::Ids;
use crate::jobs::Jobs;
use crate::lifecycle::Lifecycle;
use crate::workers::Workers;

pub type State = Arc<Inner>;

pub struct Inner {
    /// The configuration in force; a reload replaces it whole (see `reload.rs`).
    config: RwLock<Arc<Config>>,
    pub paths: ServerPaths,
    pub lifecycle: Arc<Lifecycle>,
    pub executions: Arc<Executions>,
    pub commands: Commands,
    pub cache: ResultCache,
    /// The warm workers of worker commands.
    pub workers: Workers,
    /// The detached jobs, on disk under the state dir.
    pub jobs: Jobs,
    /// The persistent history, unless `enable_command_history` is off.
    pub history: Option<Arc<History>>,
    /// Where the server listens besides its socket, for `status`.
    pub listening: Listening,
    /// The listening sockets, kept to hand over to a successor (`restart`).
    pub listeners: crate::listeners::Listeners,
    /// The HTTP bridge: where it listens now, and switching it on a reload.
    pub http: crate::http_switch::HttpSwitch,
}

/// The addresses of the optional listeners at start (the HTTP bridge's may change later: see
/// `Inner::http`).
#[derive(Debug, Clone, Default)]
pub struct Listening {
    pub tcp: Option<String>,
    pub http: Option<String>,
}

impl Inner {
    pub fn new(
        config: Config,
        paths: ServerPaths,
        commands: Commands,
        history: Option<History>,
        first_ids: std::ops::Range<u64>,
        listening: Listening,
    ) -> State {
        let lifecycle = Arc::new(Lifecycle::default());
        let history = history.map(Arc::new);
        let counter = paths.dir.join(format!("{}.ids", paths.name));
        let ids = Ids::new(history.clone(), counter, first_ids);
        let executions = Arc::new(Executions::new(
            Arc::clone(&lifecycle),
            ids,
            config.api_daemon.max_concurrent_commands,
            config.server.max_queued_commands,
        ));
        let state_dir = mcli_shared::paths::state_dir(mcli_shared::paths::process_env);
        let jobs = Jobs::new(Jobs::dir_for(&state_dir, &paths.name));
        Arc::new(Inner {
            jobs,
            config: RwLock::new(Arc::new(config)),
            paths,
            lifecycle,
            executions,
            commands,
            cache: ResultCache::default(),
            workers: Workers::default(),
            history,
            listening,
            listeners: crate::listeners::Listeners::default(),
            http: crate::http_switch::HttpSwitch::default(),
        })
    }

    /// The configuration in force now. A call holds on to the one it started with.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `config` in force for the calls from now on.
    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }
}
