//! The command registry: which names can be run and what each one is. Names match exactly; an
//! unknown name is an error that suggests near names, and never runs one of them.
//!
//! Sources, in order of precedence: the commands dirs, in their order (within one dir a manifest
//! `NAME.toml` wins over an executable `NAME.*`), then the built-ins. A manifest that does not
//! parse stays in the registry as broken, with its file and reason, so that `list` reports it and
//! running it says why it cannot run, while the other commands work on.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{self, Manifest};
use mcli_protocol::CommandEntry;

/// The commands built into mcli. They run in-process, in the server or in the client itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Hello,
    Echo,
    Pwd,
    Sleep,
    Exit,
}

impl Builtin {
    const ALL: [Builtin; 5] = [Builtin::Hello, Builtin::Echo, Builtin::Pwd, Builtin::Sleep, Builtin::Exit];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Hello => "hello",
            Builtin::Echo => "echo",
            Builtin::Pwd => "pwd",
            Builtin::Sleep => "sleep",
            Builtin::Exit => "exit",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Builtin::Hello => "Print a greeting: hello [NAME] [--verbose]",
            Builtin::Echo => "Print the arguments, separated by spaces",
            Builtin::Pwd => "Print the directory the command runs in",
            Builtin::Sleep => "Wait SECONDS (fractions allowed), then exit 0",
            Builtin::Exit => "Exit with status CODE (default 0) without output",
        }
    }
}

/// How a command runs.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandKind {
    Builtin(Builtin),
    /// An executable file, run with the call's arguments.
    Script(PathBuf),
    /// A manifest's `run` argv, followed by the call's arguments.
    Manifest(Arc<Manifest>),
}

/// One runnable command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub name: String,
    pub description: String,
    pub kind: CommandKind,
}

impl CommandSpec {
    /// Where the command comes from, as `list` shows it.
    pub fn source(&self) -> String {
        match &self.kind {
            CommandKind::Builtin(_) => "builtin".to_owned(),
            CommandKind::Script(path) => path.display().to_string(),
            CommandKind::Manifest(manifest) => manifest.file.display().to_string(),
        }
    }
}

/// A command whose manifest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub name: String,
    pub file: PathBuf,
    /// What is wrong, starting with the file's path.
    pub reason: String,
}

/// Why a name cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    NotFound(NotFound),
    #[error("command `{}` cannot run: {}", .0.name, .0.reason)]
    Broken(Broken),
}

/// No command has the asked-for name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub name: String,
    /// Near names, nearest first.
    pub suggestions: Vec<String>,
    /// A file of that name in a commands dir that is not executable (so not a command).
    pub not_executable: Option<PathBuf>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown command `{}`", self.name)?;
        if let Some(file) = &self.not_executable {
            let file = file.display();
            return write!(f, ": {file} is not executable; make it a command with `chmod +x {file}`");
        }
        match self.suggestions.as_slice() {
            [] => write!(f, "; `mcli-server commands` lists the commands"),
            [one] => write!(f, "; did you mean `{one}`?"),
            many => {
                let names: Vec<String> = many.iter().map(|n| format!("`{n}`")).collect();
                write!(f, "; did you mean one of {}?", names.join(", "))
            }
        }
    }
}

impl std::error::Error for NotFound {}

/// The set of commands, by name.
#[derive(Debug, Clone)]
pub struct Registry {
    commands: BTreeMap<String, Arc<CommandSpec>>,
    broken: BTreeMap<String, Broken>,
    /// Files in the commands dirs that would be commands if they were executable, by stem.
    not_executable: BTreeMap<String, PathBuf>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// A registry of the built-in commands.
    pub fn builtin() -> Self {
        let commands = Builtin::ALL
            .into_iter()
            .map(|b| {
                let spec = CommandSpec {
                    name: b.name().to_owned(),
                    description: b.description().to_owned(),
                    kind: CommandKind::Builtin(b),
                };
                (spec.name.clone(), Arc::new(spec))
            })
            .collect();
        Registry { commands, broken: BTreeMap::new(), not_executable: BTreeMap::new() }
    }

    /// The built-ins and the commands found in `dirs` (missing dirs are skipped).
    pub fn scan(dirs: &[PathBuf]) -> Self {
        let mut registry = Self::builtin();
        // Later dirs first, so that earlier ones overwrite them: the first dir wins.
        for dir in dirs.iter().rev() {
            for found in scan_dir(dir) {
                match found {
                    Found::Command(spec) => {
                        registry.broken.remove(&spec.name);
                        registry.commands.insert(spec.name.clone(), Arc::new(spec));
                    }
                    Found::Broken(broken) => {
                        registry.commands.remove(&broken.name);
                        registry.broken.insert(broken.name.clone(), broken);
                    }
                    Found::NotExecutable(name, path) => {
                        registry.not_executable.insert(name, path);
                    }
                }
            }
        }
        registry
    }

    /// The command named exactly `name`.
    pub fn get(&self, name: &str) -> Result<Arc<CommandSpec>, LookupError> {
        if let Some(spec) = self.commands.get(name) {
            return Ok(Arc::clone(spec));
        }
        if let Some(broken) = self.broken.get(name) {
            return Err(LookupError::Broken(broken.clone()));
        }
        let names = self.commands.keys().chain(self.broken.keys()).map(String::as_str);
        Err(LookupError::NotFound(NotFound {
            name: name.to_owned(),
            suggestions: suggest(name, names),
            not_executable: self.not_executable.get(name).cloned(),
        }))
    }

    /// The runnable commands, by name.
    pub fn specs(&self) -> impl Iterator<Item = &CommandSpec> {
        self.commands.values().map(|spec| spec.as_ref())
    }

    /// The files of the commands dirs that would be commands if they were executable.
    pub fn not_executable(&self) -> impl Iterator<Item = &Path> {
        self.not_executable.values().map(PathBuf::as_path)
    }

    /// Every command, sorted by name, broken ones with their error.
    pub fn list(&self) -> Vec<CommandEntry> {
        let mut list: Vec<CommandEntry> = self
            .commands
            .values()
            .map(|spec| CommandEntry {
                name: spec.name.clone(),
                description: spec.description.clone(),
                source: spec.source(),
                error: None,
                worker: matches!(&spec.kind, CommandKind::Manifest(m) if m.worker.is_some()),
            })
            .chain(self.broken.values().map(|broken| CommandEntry {
                name: broken.name.clone(),
                description: "(cannot run)".to_owned(),
                source: broken.file.display().to_string(),
                error: Some(broken.reason.clone()),
                worker: false,
            }))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

enum Found {
    Command(CommandSpec),
    Broken(Broken),
    /// A plain file (no manifest) that lacks its executable bit.
    NotExecutable(String, PathBuf),
}

/// The commands in one directory: manifests, and executable files that are not manifests.
fn scan_dir(dir: &Path) -> Vec<Found> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut scripts = BTreeMap::new();
    let mut manifests = BTreeMap::new();
    let mut plain = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if file_name.starts_with('.') || file_name.ends_with('~') {
            continue;
        }
        // Follow links: a linked script or manifest counts like the file it points to.
        let Ok(meta) = fs::metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty()) else { continue };
        if path.extension().is_some_and(|e| e == "toml") {
            manifests.insert(stem.to_owned(), path);
        } else if meta.permissions().mode() & 0o111 != 0 {
            // Two scripts with one stem (`x.sh`, `x.py`): the first by file name wins.
            scripts.entry(stem.to_owned()).or_insert(path);
        } else {
            plain.entry(stem.to_owned()).or_insert(path);
        }
    }
    let mut found: Vec<Found> = plain
        .into_iter()
        .filter(|(name, _)| !scripts.contains_key(name) && !manifests.contains_key(name))
        .map(|(name, path)| Found::NotExecutable(name, path))
        .collect();
    for (name, path) in scripts {
        if manifests.contains_key(&name) {
            continue;
        }
        let description = format!("Run {}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        found.push(Found::Command(CommandSpec { name, description, kind: CommandKind::Script(path) }));
    }
    for (name, path) in manifests {
        let parsed = manifest::load(&path);
        found.push(match parsed {
            Ok(manifest) => Found::Command(CommandSpec {
                name,
                description: manifest.description.clone(),
                kind: CommandKind::Manifest(Arc::new(manifest)),
            }),
            Err(err) => Found::Broken(Broken { name, file: path, reason: err.to_string() }),
        });
    }
    found
}

/// Names near `name`: a small edit away, or containing it. Three at most, nearest first.
fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let budget = (name.chars().count() / 3).max(1);
    let mut near: Vec<(usize, &str)> = candidates
        .filter_map(|cand| {
            let distance = strsim::damerau_levenshtein(name, cand);
            let contains = name.chars().count() >= 2 && (cand.contains(name) || name.contains(cand));
            (distance <= budget || contains).then_some((distance, cand))
        })
        .collect();
    near.sort();
    near.into_iter().take(3).map(|(_, cand)| cand.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(registry: &Registry, name: &str) -> NotFound {
        match registry.get(name) {
            Err(LookupError::NotFound(nf)) => nf,
            other => panic!("expected not found, got {other:?}"),
        }
    }

    #[test]
    fn exact_names_only() {
        let registry = Registry::builtin();
        assert_eq!(registry.get("hello").unwrap().name, "hello");
        let err = not_found(&registry, "ell");
        assert_eq!(err.suggestions, vec!["hello"]);
        assert_eq!(err.to_string(), "unknown command `ell`; did you mean `hello`?");
        assert!(registry.get("Hello").is_err());
    }

    #[test]
    fn typos_suggest_and_strangers_point_to_the_list() {
        let registry = Registry::builtin();
        assert_eq!(not_found(&registry, "helo").suggestions, vec!["hello"]);
        assert_eq!(not_found(&registry, "ecoh").suggestions, vec!["echo"]);
        let err = not_found(&registry, "zzzzzz");
        assert_eq!(err.to_string(), "unknown command `zzzzzz`; `mcli-server commands` lists the commands");
    }

    #[test]
    fn list_is_sorted_with_sources() {
        let names: Vec<_> = Registry::builtin().list().into_iter().map(|c| (c.name, c.source)).collect();
        assert_eq!(names[0], ("echo".to_owned(), "builtin".to_owned()));
        assert!(names.windows(2).all(|w| w[0].0 < w[1].0));
    }

    fn write(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn scans_scripts_and_manifests_with_precedence() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        write(&first.path().join("deploy.sh"), "#!/bin/sh\n", 0o755);
        write(&first.path().join("notes.txt"), "not a command", 0o644);
        write(&first.path().join("resize.py"), "", 0o755);
        write(&first.path().join("resize.toml"), "run = [\"python3\", \"resize.py\"]\n", 0o644);
        write(&second.path().join("deploy"), "#!/bin/sh\n", 0o755);
        write(&second.path().join("echo"), "#!/bin/sh\n", 0o755);
        write(&second.path().join("bad.toml"), "run = [\"x\"]\nbogus = 1\n", 0o644);
        let registry = Registry::scan(&[first.path().to_owned(), second.path().to_owned()]);

        let source = |name: &str| registry.get(name).unwrap().source();
        assert_eq!(source("deploy"), first.path().join("deploy.sh").display().to_string());
        assert_eq!(source("resize"), first.path().join("resize.toml").display().to_string());
        assert_eq!(source("echo"), second.path().join("echo").display().to_string(), "dirs override built-ins");
        assert!(registry.get("notes").is_err());
        match registry.get("bad") {
            Err(LookupError::Broken(broken)) => assert!(broken.reason.contains("unknown field `bogus`")),
            other => panic!("{other:?}"),
        }
        let listed = registry.list();
        let bad = listed.iter().find(|c| c.name == "bad").unwrap();
        assert!(bad.error.as_deref().unwrap().contains("bogus"));
        assert!(listed.iter().any(|c| c.name == "hello"), "a broken manifest hides nothing");
    }
}
