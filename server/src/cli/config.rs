//! `mcli-server config check [FILE]` and `config show`: a config's every error, and the
//! effective configuration with where each value comes from, without a server.

use std::path::Path;
use std::process::ExitCode;

use mcli_shared::config::{self, Loaded};
use mcli_shared::paths;

/// Lists every error of the config (FILE, else `--config`, else the default one); exit status
/// 1 when there is any.
pub(super) fn check(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (path, _) = config::config_path(file, &paths::process_env);
    match config::load_all(file, paths::process_env) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("mcli-server: warning: {warning}");
            }
            match &loaded.config.file {
                Some(file) => println!("mcli-server: {} is valid", file.display()),
                None => println!("mcli-server: no config file at {}: the defaults apply", path.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for err in &errors.0 {
                eprintln!("mcli-server: {err}");
            }
            let count = errors.0.len();
            eprintln!("mcli-server: {count} error{} in the config", if count == 1 { "" } else { "s" });
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints every key of the effective configuration, its value, and where the value comes from
/// (the default, the file and its line, or an environment variable).
pub(super) fn show(file: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = match config::load_all(file, paths::process_env) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("mcli-server: the config has errors (`mcli-server config check` lists them):\n{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let rows = rows(&loaded);
    if json {
        let keys: Vec<_> = rows
            .iter()
            .map(|(key, value, source)| serde_json::json!({ "key": key, "value": value, "source": source }))
            .collect();
        let file = loaded.config.file.as_ref().map(|f| f.display().to_string());
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "file": file, "keys": keys }))?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows.iter().map(|(key, value, _)| key.len() + value.len() + 3).max().unwrap_or(0);
    for (key, value, source) in rows {
        let setting = format!("{key} = {value}");
        println!("{setting:width$}  # {source}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Each key with its value (as TOML-like text) and its source.
fn rows(loaded: &Loaded) -> Vec<(String, String, String)> {
    let keys = loaded.config.keys().into_iter();
    keys.map(|(key, value)| {
        let source = loaded.sources.get(&key).map_or_else(|| "default".to_owned(), ToString::to_string);
        let value = if value.is_null() { "(unset)".to_owned() } else { value.to_string() };
        (key, value, source)
    })
    .collect()
}
