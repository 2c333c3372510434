//! What fits mcli into a user's system, through the real binaries: shell completions (command
//! names from a running server and from the commands dirs), man pages rendered by the real
//! `man`/`groff`, version strings, `doctor`, the live `status --watch` view and the log formats
//! for service managers.

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcli_tests::{Run, TestEnv, bin_dir};

/// `PATH` with the binaries under test first, as a shell of a user who installed them has it.
fn path_with_bins() -> String {
    format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
}

/// An outside program the test needs, from scripts/test.sh; a clear failure when missing.
fn need(program: &str) {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().is_ok_and(|o| o.status.success());
    assert!(found, "`{program}` is missing: scripts/test.sh installs it (apt-get install {program})");
}

/// Writes an executable script command `name` into the default commands dir.
fn script_command(env: &TestEnv, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Completes `words` (the last one being completed) in a real bash, through the function that
/// the generated script registers for `mcli-client`, and returns the candidates.
fn bash_complete(env: &TestEnv, script: &Path, words: &[&str]) -> Vec<String> {
    let driver = r#"
source "$1"; shift
spec=$(complete -p mcli-client) || exit 3
fn=${spec#*-F }; fn=${fn%% *}
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$fn" mcli-client "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let mut cmd = env.command("bash");
    cmd.env("PATH", path_with_bins()).arg("-c").arg(driver).arg("driver").arg(script).args(words);
    let run = Run::of(&mut cmd);
    run.expect_code(0);
    run.stdout.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn completions(env: &TestEnv, shell: &str) -> std::path::PathBuf {
    let run = env.server(&["completions", shell]);
    run.expect_code(0);
    assert!(run.stdout.contains("mcli-client") && run.stdout.contains("mcli-server"), "{shell}: {}", run.stdout);
    let file = env.root.path().join(format!("completions.{shell}"));
    std::fs::write(&file, &run.stdout).unwrap();
    file
}

#[test]
fn bash_completes_command_names_from_the_commands_dirs_without_a_server() {
    need("bash");
    let env = TestEnv::new();
    script_command(&env, "greet");
    script_command(&env, "grow");
    let script = completions(&env, "bash");
    assert_eq!(bash_complete(&env, &script, &["mcli-client", "gr"]), ["greet", "grow"]);
    let all = bash_complete(&env, &script, &["mcli-client", ""]);
    assert!(all.contains(&"hello".to_owned()) && all.contains(&"greet".to_owned()), "{all:?}");
    // After an option and its value, still the command position.
    assert_eq!(bash_complete(&env, &script, &["mcli-client", "-t", "5", "gre"]), ["greet"]);
    // An option completes as clap defines them.
    assert!(bash_complete(&env, &script, &["mcli-client", "--no-"]).contains(&"--no-cache".to_owned()));
    // After the command: its arguments, which are file names.
    std::fs::write(env.root.path().join("grape.txt"), "").unwrap();
    assert_eq!(bash_complete(&env, &script, &["mcli-client", "greet", "grap"]), ["grape.txt"]);
    assert!(env.server_pids().is_empty(), "completing must not start a server");
}

#[test]
fn bash_completes_command_names_from_the_running_server() {
    need("bash");
    let mut env = TestEnv::new();
    // The server's config adds a commands dir that the completing shell's config does not know:
    // a name from it can only come from the server.
    let extra = env.root.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy("/bin/true", extra.join("served-only")).unwrap();
    let config = env.root.path().join("server.toml");
    std::fs::write(&config, format!("[server]\ncommands_dirs = [{:?}]\n", extra.display().to_string())).unwrap();
    env.server(&["--config", config.to_str().unwrap(), "start"]).expect_code(0);
    let script = completions(&env, "bash");
    assert_eq!(bash_complete(&env, &script, &["mcli-client", "serv"]), ["served-only"]);
    // `-s` names the server asked: another name has no server and no such command.
    assert!(bash_complete(&env, &script, &["mcli-client", "-s", "other", "serv"]).is_empty());
    env.set_env("MCLI_SOCKET_NAME", "other");
    assert!(env.server(&["commands", "--names"]).stdout.lines().all(|l| l != "served-only"));
    env.remove_env("MCLI_SOCKET_NAME");
    env.server(&["stop"]).expect_code(0);
}

/// The fastest of five runs of `mcli-server commands --names`, which the scripts call on TAB.
fn names_time(env: &TestEnv) -> Duration {
    let times = (0..5).map(|_| {
        let started = Instant::now();
        env.server(&["commands", "--names"]).expect_code(0);
        started.elapsed()
    });
    times.min().unwrap()
}

#[test]
fn command_names_come_back_well_under_100_ms() {
    let env = TestEnv::new();
    script_command(&env, "greet");
    let from_disk = names_time(&env);
    env.server(&["start"]).expect_code(0);
    let from_server = names_time(&env);
    eprintln!("commands --names: {from_disk:?} from the commands dirs, {from_server:?} from the server");
    assert!(from_disk < Duration::from_millis(100), "{from_disk:?}");
    assert!(from_server < Duration::from_millis(100), "{from_server:?}");
    env.server(&["stop"]).expect_code(0);
}

#[test]
fn every_shell_gets_a_script_and_the_available_shells_accept_it() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let file = completions(&env, shell);
        let checker = match shell {
            "bash" => Some(("bash", "-n")),
            "zsh" => Some(("zsh", "-n")),
            "fish" => Some(("fish", "--no-execute")),
            _ => None,
        };
        if let Some((program, flag)) = checker {
            need(program);
            Run::of(Command::new(program).arg(flag).arg(&file).stdin(Stdio::null())).expect_code(0);
        }
    }
    let run = env.server(&["completions", "tcsh"]);
    run.expect_code(2);
    assert!(run.stderr.contains("invalid value 'tcsh'"), "{}", run.stderr);
}

#[test]
fn fish_completes_command_names() {
    need("fish");
    let env = TestEnv::new();
    script_command(&env, "greet");
    let script = completions(&env, "fish");
    let mut cmd = env.command("fish");
    cmd.env("PATH", path_with_bins()).arg("--no-config").arg("-c").arg(format!(
        "source {}; complete -C 'mcli-client gre'; complete -C 'mcli-client greet gre'",
        script.display()
    ));
    let run = Run::of(&mut cmd);
    run.expect_code(0);
    let names: Vec<&str> = run.stdout.lines().map(|l| l.split('\t').next().unwrap_or(l)).collect();
    assert_eq!(names, ["greet"], "{}", run.stdout);
}

/// Renders a page with `man -l` (through a file, as a user who saved it would) and checks that
/// groff has nothing to warn about.
fn render_man(env: &TestEnv, args: &[&str]) -> String {
    need("man");
    need("groff");
    let run = env.server(args);
    run.expect_code(0);
    let file = env.root.path().join("page.1");
    std::fs::write(&file, &run.stdout).unwrap();
    let mut groff = Command::new("groff");
    groff.args(["-man", "-Tutf8", "-ww", "-z"]).arg(&file);
    let checked = Run::of(&mut groff);
    checked.expect_code(0);
    assert_eq!(checked.stderr, "", "groff warns about the page");
    let mut man = env.command("man");
    man.env("MANWIDTH", "120").arg("-l").arg(&file);
    let run = Run::of(&mut man);
    run.expect_code(0);
    plain(&run.stdout)
}

/// Text without the overstrikes (`X\bX` bold, `_\bX` underlined) that man prints to a pipe.
fn plain(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
            continue;
        }
        out.push(c);
    }
    // The character after a backspace replaced the one before it.
    out.into_iter().collect()
}

#[test]
fn the_man_pages_render_with_their_sections() {
    let env = TestEnv::new();
    let server = render_man(&env, &["man"]);
    for want in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES", "VERSION"] {
        assert!(server.lines().any(|l| l == want), "mcli-server(1) lacks {want}:\n{server}");
    }
    assert!(server.contains("config check") && server.contains("--foreground"), "{server}");
    assert!(server.contains("MCLI_RUNTIME_DIR") && server.contains("NAME-history.sqlite3"), "{server}");
    let client = render_man(&env, &["man", "--client"]);
    for want in ["NAME", "SYNOPSIS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES"] {
        assert!(client.lines().any(|l| l == want), "mcli-client(1) lacks {want}:\n{client}");
    }
    assert!(client.starts_with("mcli-client(1)"), "{client}");
    assert!(client.contains("--alternate-editor") && client.contains("the command timed out"), "{client}");
}
