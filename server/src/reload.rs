//! Live configuration: a running server reads its config again (`mcli-server reload`, SIGHUP,
//! or a change of the file it watches) and puts the new one in force without dropping
//! connections, running commands or warm workers.
//!
//! A config with any error is refused whole: the old one stays in force and the caller gets
//! every error. Otherwise each changed key is applied where it lives: the limits to the
//! executions, the commands dirs to the registry, the retention to the history, the cache
//! switch to the cache; time limits, output caps and the idle timeout are read per use and need
//! nothing more. A key that cannot change live (it needs a restart) is reported by name and
//! keeps its old value.

use std::time::Duration;

use mcli_shared::config::{self, Config, ConfigErrors};
use mcli_shared::paths;

use crate::history::Retention;
use crate::state::State;

/// Keys whose new value only a new server takes.
const NEEDS_RESTART: [&str; 3] = ["api_daemon.enable_command_history", "api_daemon.debug", "api_daemon.metrics_addr"];

/// The keys of the HTTP bridge: applied live by switching it (see `http_switch.rs`), unless
/// `--http` decided the bridge or the server has none (`--stdio`).
const HTTP_KEYS: [&str; 6] = [
    "api_daemon.enabled",
    "api_daemon.host",
    "api_daemon.port",
    "api_daemon.use_random_port",
    "api_daemon.auto_start",
    "api_daemon.require_token",
];

/// What a reload did.
pub type Report = mcli_protocol::ReloadResult;

/// Reads the config again, as it was found at start (the same file, the environment of the
/// server), and puts it in force; or refuses it whole with every error.
pub async fn reload(state: &State) -> Result<Report, ConfigErrors> {
    // One reload at a time (the method, SIGHUP and the file watcher may race): each applies the
    // difference from the config in force, which must not change under it.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    // A service manager (systemd's Type=notify) is told a reload is under way, then ready.
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading, now]);
    }
    let reloaded = reload_now(state).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    reloaded
}

/// [`reload`], its turn taken.
async fn reload_now(state: &State) -> Result<Report, ConfigErrors> {
    let old = state.config();
    let file = old.file.clone();
    let loaded = tokio::task::spawn_blocking(move || config::load_all(file.as_deref(), paths::process_env))
        .await
        .unwrap_or_else(|_| {
            let failed = std::io::Error::other("the task reading it failed");
            Err(ConfigErrors(vec![config::ConfigError::Read { path: Default::default(), source: failed }]))
        })?;
    let mut new = loaded.config;
    let mut report = Report {
        file: new.file.as_ref().map(|f| f.display().to_string()),
        warnings: loaded.warnings,
        ..Report::default()
    };
    let switchable = state.http.is_switchable();
    let changed = changed_keys(&old, &new);
    let http_changed = changed.iter().any(|key| HTTP_KEYS.contains(&key.as_str()));
    for key in changed {
        if NEEDS_RESTART.contains(&key.as_str()) || (!switchable && HTTP_KEYS.contains(&key.as_str())) {
            report.needs_restart.push(key);
        } else {
            report.applied.push(key);
        }
    }
    keep_restart_only_values(&old, &mut new, switchable);
    if switchable && http_changed {
        switch_http(state, &old, &mut new, &mut report).await;
    }
    apply(state, &old, &new);
    state.set_config(new);
    tracing::info!(applied = ?report.applied, needs_restart = ?report.needs_restart, "configuration reloaded");
    Ok(report)
}

/// Applies the keys that live in the server's parts rather than being read per use.
fn apply(state: &State, old: &Config, new: &Config) {
    let (old_api, new_api) = (&old.api_daemon, &new.api_daemon);
    if (old_api.max_concurrent_commands, old.server.max_queued_commands)
        != (new_api.max_concurrent_commands, new.server.max_queued_commands)
    {
        state.executions.set_limits(new_api.max_concurrent_commands, new.server.max_queued_commands);
    }
    if old.server.commands_dirs != new.server.commands_dirs {
        state.commands.set_dirs(new.commands_dirs(paths::process_env));
    }
    let retention = |config: &Config| Retention {
        max_entries: config.server.history_max_entries,
        max_age: Duration::from_secs_f64(config.server.history_max_age_days * 86_400.0),
    };
    let history_changed = (old.server.history_max_entries, old.server.history_max_age_days)
        != (new.server.history_max_entries, new.server.history_max_age_days);
    if let (true, Some(history)) = (history_changed, &state.history) {
        history.set_retention(retention(new));
    }
    if old_api.enable_command_caching && !new_api.enable_command_caching {
        state.cache.clear();
    }
}

/// Switches the HTTP bridge to what `new` asks for. When it cannot be (a token turned off
/// beyond loopback, an address that cannot be bound), the reason is a warning, and the bridge
/// keeps running as it did (or is off, if even that failed).
async fn switch_http(state: &State, old: &Config, new: &mut Config, report: &mut Report) {
    let switched = match crate::http_switch::wanted(new, state.listeners.auto_started()) {
        Ok(wanted) => state.http.switch(wanted).await,
        Err(why) => Err(format!("{why}; the HTTP bridge is unchanged")),
    };
    if let Err(why) = switched {
        tracing::warn!("{why}");
        report.warnings.push(why);
        keep_http_values(old, new);
        report.applied.retain(|key| !HTTP_KEYS.contains(&key.as_str()));
    }
}

/// Keeps the old value of every key that needs a restart, so that what is in force (and what
/// `status` shows) is what the server does.
fn keep_restart_only_values(old: &Config, new: &mut Config, http_switchable: bool) {
    new.api_daemon.enable_command_history = old.api_daemon.enable_command_history;
    new.api_daemon.debug = old.api_daemon.debug;
    new.api_daemon.metrics_addr = old.api_daemon.metrics_addr.clone();
    if !http_switchable {
        keep_http_values(old, new);
    }
}

/// Keeps the HTTP bridge's settings of `old`.
fn keep_http_values(old: &Config, new: &mut Config) {
    let (old, new) = (&old.api_daemon, &mut new.api_daemon);
    new.enabled = old.enabled;
    new.host = old.host.clone();
    new.port = old.port;
    new.use_random_port = old.use_random_port;
    new.auto_start = old.auto_start;
    new.require_token = old.require_token;
}

/// The dotted keys (`server.kill_grace`) whose values differ between `old` and `new`.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (old.keys(), new.keys());
    new.iter().filter(|(key, value)| old.get(*key) != Some(*value)).map(|(key, _)| key.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_named_by_table_and_key() {
        let old = Config::default();
        let mut new = Config::default();
        new.server.kill_grace = mcli_protocol::Seconds::new(2.0).unwrap();
        new.api_daemon.enable_command_history = false;
        assert_eq!(changed_keys(&old, &new), vec!["api_daemon.enable_command_history", "server.kill_grace"]);
        keep_restart_only_values(&old, &mut new, false);
        assert_eq!(changed_keys(&old, &new), vec!["server.kill_grace"]);
    }
}
