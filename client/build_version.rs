// The build script of both programs (included by client/build.rs and server/build.rs): sets
// `MCLI_LONG_VERSION`, the `--version` text, to the package version with the git commit when the
// crate is built from a checkout (`0.1.0 (abc1234)`), else the version alone. Nothing of the
// machine (no path) goes into the binary.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rerun-if-changed=build.rs");
    let text = match commit() {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=MCLI_LONG_VERSION={text}");
}

/// The short commit of HEAD, when this crate is part of a git checkout and git runs; with a
/// rerun of this script whenever HEAD moves (a commit, a checkout, a packed ref).
fn commit() -> Option<String> {
    watch_head();
    // A crate unpacked inside some unrelated repository (a vendored copy) is not a checkout of
    // mcli: its build script must be a file that the repository tracks.
    git(&["ls-files", "--error-unmatch", "build.rs"])?;
    git(&["rev-parse", "--short", "HEAD"])
}

/// Reruns this script when HEAD moves (a commit, a checkout, a packed ref), even while the
/// checkout does not track it yet.
fn watch_head() {
    let mut watched: Vec<String> = git(&["rev-parse", "--git-path", "HEAD"]).into_iter().collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(&["rev-parse", "--git-path", "packed-refs"]));
    // Cargo reruns a script whose watched file is missing on every build: watch those that exist.
    for path in watched.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// What `git ARGS` prints, trimmed, when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
