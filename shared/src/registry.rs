//! The command registry: which names can be run and what each one is. Names match exactly; an
//! unknown name is an error that suggests near names, and never runs one of them.
//!
//! Built-ins live here. Scripts and manifests from the commands dirs join them in a later step
//! through the same [`CommandSpec`] seam.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::protocol::CommandEntry;

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
    const ALL: [Builtin; 5] = [
        Builtin::Hello,
        Builtin::Echo,
        Builtin::Pwd,
        Builtin::Sleep,
        Builtin::Exit,
    ];

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
        }
    }
}

/// No command has the asked-for name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub name: String,
    /// Near names, nearest first.
    pub suggestions: Vec<String>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown command `{}`", self.name)?;
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
        Registry { commands }
    }

    /// The command named exactly `name`.
    pub fn get(&self, name: &str) -> Result<Arc<CommandSpec>, NotFound> {
        self.commands.get(name).cloned().ok_or_else(|| NotFound {
            name: name.to_owned(),
            suggestions: suggest(name, self.commands.keys().map(String::as_str)),
        })
    }

    /// Every command, sorted by name.
    pub fn list(&self) -> Vec<CommandEntry> {
        self.commands
            .values()
            .map(|spec| CommandEntry {
                name: spec.name.clone(),
                description: spec.description.clone(),
                source: spec.source(),
            })
            .collect()
    }
}

/// Names near `name`: a small edit away, or containing it. Three at most, nearest first.
fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let budget = (name.chars().count() / 3).max(1);
    let mut near: Vec<(usize, &str)> = candidates
        .filter_map(|cand| {
            let distance = strsim::damerau_levenshtein(name, cand);
            let contains =
                name.chars().count() >= 2 && (cand.contains(name) || name.contains(cand));
            (distance <= budget || contains).then_some((distance, cand))
        })
        .collect();
    near.sort();
    near.into_iter()
        .take(3)
        .map(|(_, cand)| cand.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_only() {
        let registry = Registry::builtin();
        assert_eq!(registry.get("hello").unwrap().name, "hello");
        let err = registry.get("ell").unwrap_err();
        assert_eq!(err.suggestions, vec!["hello"]);
        assert_eq!(
            err.to_string(),
            "unknown command `ell`; did you mean `hello`?"
        );
        assert!(registry.get("Hello").is_err());
    }

    #[test]
    fn typos_suggest_and_strangers_point_to_the_list() {
        let registry = Registry::builtin();
        assert_eq!(registry.get("helo").unwrap_err().suggestions, vec!["hello"]);
        assert_eq!(registry.get("ecoh").unwrap_err().suggestions, vec!["echo"]);
        let err = registry.get("zzzzzz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command `zzzzzz`; `mcli-server commands` lists the commands"
        );
    }

    #[test]
    fn list_is_sorted_with_sources() {
        let names: Vec<_> = Registry::builtin()
            .list()
            .into_iter()
            .map(|c| (c.name, c.source))
            .collect();
        assert_eq!(names[0], ("echo".to_owned(), "builtin".to_owned()));
        assert!(names.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
