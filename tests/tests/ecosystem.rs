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
    // Every option that takes a value, as clap defines them: not only those the script knew.
    assert_eq!(bash_complete(&env, &script, &["mcli-client", "--on-interrupt", "detach", "gre"]), ["greet"]);
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
        "source {}; complete -C 'mcli-client gre'; complete -C 'mcli-client greet gre'; \
         complete -C 'mcli-client --on-interrupt detach gre'",
        script.display()
    ));
    let run = Run::of(&mut cmd);
    run.expect_code(0);
    let names: Vec<&str> = run.stdout.lines().map(|l| l.split('\t').next().unwrap_or(l)).collect();
    assert_eq!(names, ["greet", "greet"], "{}", run.stdout);
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

#[test]
fn both_versions_name_the_commit_of_the_checkout() {
    let env = TestEnv::new();
    for program in ["mcli-server", "mcli-client"] {
        let run = Run::of(env.command(env.bin(program)).arg("--version"));
        run.expect_code(0);
        let version = run.stdout.trim();
        assert!(version.starts_with(&format!("{program} {} (", env!("CARGO_PKG_VERSION"))), "{version}");
        let commit = version.rsplit_once('(').map(|(_, c)| c.trim_end_matches(')')).unwrap_or_default();
        assert!(commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()), "{version}");
        // The binaries under test were built from this checkout: HEAD, or a commit before it
        // when HEAD moved since the build.
        let mut ancestry = Command::new("git");
        ancestry.args(["merge-base", "--is-ancestor", commit, "HEAD"]).stdin(Stdio::null());
        Run::of(&mut ancestry).expect_code(0);
    }
}

/// `mcli-server doctor` with its exit status and output.
fn doctor(env: &TestEnv) -> Run {
    env.server(&["doctor"])
}

#[test]
fn doctor_finds_a_healthy_setup_healthy() {
    let env = TestEnv::new();
    script_command(&env, "greet");
    let run = doctor(&env);
    run.expect_code(0);
    assert!(run.stdout.contains("runtime dir") && run.stdout.contains("does not exist yet"), "{}", run.stdout);
    assert!(run.stdout.contains("mcli/commands: 1 command\n"), "{}", run.stdout);
    assert!(run.stdout.contains("`server` is not running; a client starts it on demand"), "{}", run.stdout);
    assert!(run.stdout.ends_with("mcli-server doctor: no problem found\n"), "{}", run.stdout);
    env.server(&["start"]).expect_code(0);
    let run = doctor(&env);
    run.expect_code(0);
    assert!(run.stdout.contains("is private (mode 0700 or stricter)"), "{}", run.stdout);
    assert!(run.stdout.contains("`server` is running (pid"), "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&env.server(&["doctor", "--json"]).stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert!(json["checks"].as_array().unwrap().iter().all(|c| c["status"] == "ok"), "{json:#}");
    env.server(&["stop"]).expect_code(0);
}

#[test]
fn doctor_says_what_to_fix_in_the_runtime_and_state_dirs() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    env.create_runtime_dir();
    std::fs::set_permissions(&env.runtime_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(env.state_home.join("mcli"), "not a dir").unwrap();
    let run = doctor(&env);
    run.expect_code(1);
    let rt = env.runtime_dir.display();
    assert!(
        run.stdout.contains(&format!(
            "PROBLEM  runtime dir: runtime dir {rt} is open to group or others (mode 0755); run `chmod 700 {rt}`"
        )),
        "{}",
        run.stdout
    );
    let state = env.state_home.join("mcli");
    assert!(
        run.stdout.contains(&format!(
            "PROBLEM  state dir: {} is not a directory\n         fix: remove it (`rm {}`)",
            state.display(),
            state.display()
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("server: not looked for: the runtime dir is refused"), "{}", run.stdout);
    assert!(run.stdout.ends_with("mcli-server doctor: 2 problems found\n"), "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&env.server(&["doctor", "--json"]).stdout).unwrap();
    assert_eq!(json["ok"], false);
}

#[test]
fn doctor_lists_every_config_error() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\nport = \"x\"\nmax_concurrent_commands = -1\n");
    let run = doctor(&env);
    run.expect_code(1);
    let errors: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("PROBLEM  config: ")).collect();
    assert_eq!(errors.len(), 2, "{}", run.stdout);
    assert!(errors[0].contains("line 2: `api_daemon.port`"), "{}", run.stdout);
    assert!(run.stdout.contains("fix: correct it; `mcli-server config check` checks again"), "{}", run.stdout);
    // The default commands dir is still checked.
    assert!(run.stdout.contains("commands dir: "), "{}", run.stdout);
}

#[test]
fn doctor_names_broken_and_non_executable_commands_and_missing_dirs() {
    let mut env = TestEnv::new();
    script_command(&env, "greet");
    let dir = env.config_home.join("mcli/commands");
    std::fs::write(dir.join("bad.toml"), "run = 3\n").unwrap();
    std::fs::write(dir.join("plain"), "echo\n").unwrap();
    let missing = env.root.path().join("nowhere");
    env.use_config(&format!("[server]\ncommands_dirs = [{:?}]\n", missing.display().to_string()));
    let run = doctor(&env);
    run.expect_code(1);
    let out = &run.stdout;
    assert!(out.contains(&format!("ok       commands dir: {}: 1 command\n", dir.display())), "{out}");
    assert!(out.contains("PROBLEM  commands dir: command `bad` is broken: "), "{out}");
    assert!(out.contains(&format!("fix: fix or remove {}", dir.join("bad.toml").display())), "{out}");
    let plain = dir.join("plain");
    assert!(
        out.contains(&format!("warning  commands dir: {} is not executable, so it is not a command", plain.display())),
        "{out}"
    );
    assert!(out.contains(&format!("fix: run `chmod +x {}`", plain.display())), "{out}");
    assert!(
        out.contains(&format!("warning  commands dir: {} (from the config) does not exist", missing.display())),
        "{out}"
    );
    assert!(out.ends_with("mcli-server doctor: 1 problem found\n"), "{out}");
}

#[test]
fn doctor_wants_python3_for_warm_workers() {
    let mut env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    // A PATH without python3.
    let empty = env.root.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    env.set_env("PATH", &empty);
    let run = doctor(&env);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("warning  python3: python3 is not on PATH: warm-worker commands written in Python cannot run"),
        "{}",
        run.stdout
    );
    std::fs::write(dir.join("model.toml"), "run = [\"python3\", \"model.py\"]\n[worker]\n").unwrap();
    let run = doctor(&env);
    run.expect_code(1);
    assert!(run.stdout.contains("PROBLEM  python3: python3 is not on PATH, and 1 warm-worker command(s) need it\n         fix: install Python 3"), "{}", run.stdout);
}

/// Runs `mcli-server start --foreground ARGS` with standard error into a file (whose
/// `DEVICE:INODE` `journal` may name as `JOURNAL_STREAM`), stops it, and returns its log lines.
fn foreground_log(env: &TestEnv, args: &[&str], journal: Option<&dyn Fn(&str) -> String>) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let log = env.root.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let mut cmd = env.server_cmd(&["start", "--foreground"]);
    cmd.args(args).stdout(Stdio::piped()).stderr(file);
    if let Some(journal) = journal {
        cmd.env("JOURNAL_STREAM", journal(&format!("{}:{}", meta.dev(), meta.ino())));
    }
    let mut child = cmd.spawn().expect("spawn mcli-server");
    let ready = mcli_tests::read_line_within(child.stdout.take().unwrap(), mcli_tests::WAIT);
    assert!(
        ready.is_some_and(|l| l.contains("listening on")),
        "no readiness line; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    env.server(&["stop"]).expect_code(0);
    let _ = child.wait();
    std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect()
}

/// Whether a text log line starts with an RFC 3339 timestamp.
fn has_timestamp(line: &str) -> bool {
    line.len() > 20 && line.as_bytes()[4] == b'-' && line.as_bytes()[10] == b'T'
}

#[test]
fn under_the_journal_log_lines_carry_no_timestamp() {
    let env = TestEnv::new();
    let lines = foreground_log(&env, &[], Some(&|stream: &str| stream.to_owned()));
    let ready = lines.iter().find(|l| l.contains("listening on")).expect("the readiness line is logged");
    assert!(ready.trim_start().starts_with("INFO mcli-server"), "{lines:?}");
    assert!(lines.iter().all(|l| !has_timestamp(l)), "{lines:?}");
    // A JOURNAL_STREAM that is not standard error (inherited, then redirected) changes nothing.
    let lines = foreground_log(&env, &[], Some(&|_: &str| "1:2".to_owned()));
    assert!(lines.iter().all(|l| has_timestamp(l)), "{lines:?}");
    let lines = foreground_log(&env, &[], None);
    assert!(lines.iter().all(|l| has_timestamp(l)), "{lines:?}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let env = TestEnv::new();
    let lines = foreground_log(&env, &["--log-format", "json"], None);
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["timestamp"].is_string() && entry["level"].is_string(), "{line}");
    }
    let ready = lines.iter().find(|l| l.contains("listening on")).unwrap();
    let ready: serde_json::Value = serde_json::from_str(ready).unwrap();
    assert_eq!(ready["level"], "INFO");
    assert!(ready["fields"]["message"].as_str().unwrap().starts_with("mcli-server "), "{ready}");
    // A server started in the background takes the format to its log file.
    env.server(&["start", "--log-format", "json"]).expect_code(0);
    env.server(&["stop"]).expect_code(0);
    let log = env.log("server");
    assert!(!log.is_empty() && log.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{log}");
    let run = env.server(&["start", "--foreground", "--log-format", "xml"]);
    run.expect_code(2);
    assert!(run.stderr.contains("invalid value 'xml' for '--log-format <FORMAT>'"), "{}", run.stderr);
}

/// The lines (or, for a terminal, the chunks) a child writes, as they come.
fn lines_of(source: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one satisfies `want`; all read so far, for the message when none does.
fn read_until(rx: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>, want: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + mcli_tests::WAIT;
    while !seen.iter().any(|l| want(l)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no such line; got:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn status_watch_prints_a_line_per_event_into_a_pipe() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    env.client(&["echo", "before"]).expect_code(0);
    let mut watch = env.server_cmd(&["status", "--watch", "--interval", "0.05"]);
    let mut watch = watch.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let rx = lines_of(watch.stdout.take().unwrap());
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, |l| l.contains(": 0 running, 0 queued"));
    let mut sleeper = env.client_cmd(&["sleep", "30"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    read_until(&rx, &mut seen, |l| l.starts_with("started #") && l.ends_with(" sleep"));
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    read_until(&rx, &mut seen, |l| l.starts_with("ended #") && l.contains("sleep") && l.contains("cancelled"));
    env.client(&["echo", "after"]).expect_code(0);
    read_until(&rx, &mut seen, |l| l.starts_with("ended #") && l.contains("echo") && l.contains("completed (exit 0)"));
    assert!(!seen.iter().any(|l| l.contains("ended") && l.contains("#1 ")), "a result from before the watch: {seen:?}");
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "no terminal codes into a pipe: {seen:?}");
    // The watch ends with the server.
    env.server(&["stop"]).expect_code(0);
    let run = Run::wait(watch);
    run.expect_code(1);
    assert_eq!(run.stderr, "mcli-server: the server `server` stopped\n");
}

#[test]
fn status_watch_redraws_in_place_on_a_terminal() {
    need("script");
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let mut sleeper = env.client_cmd(&["sleep", "30"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    env.wait_for_active(mcli_tests::Active::Named("sleep"));
    let inner = format!("{} status --watch --interval 0.05", env.bin("mcli-server").display());
    let mut tty = env.command("script");
    tty.args(["-qfec", &inner, "/dev/null"]).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut tty = tty.spawn().expect("run script");
    let rx = lines_of(tty.stdout.take().unwrap());
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, |l| l.contains("\x1b[H") && l.contains("1 running, 0 queued"));
    read_until(&rx, &mut seen, |l| l.contains("sleep") && l.ends_with("\x1b[K"));
    // Two frames, each starting at the top-left corner: redrawn in place, not scrolled.
    read_until(&rx, &mut seen, |l| l.starts_with("\x1b[J\x1b[H"));
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    env.server(&["stop"]).expect_code(0);
    let _ = tty.kill();
    let _ = tty.wait();
}

#[test]
fn status_watch_needs_a_server_and_a_sane_interval() {
    let env = TestEnv::new();
    let run = env.server(&["status", "--watch"]);
    run.expect_code(1);
    assert!(run.stderr.contains("no server named `server` is running"), "{}", run.stderr);
    let run = env.server(&["status", "--watch", "--interval", "0"]);
    run.expect_code(2);
    assert!(run.stderr.contains("`0` is not a number of seconds from 0.05 to 3600"), "{}", run.stderr);
    env.server(&["status", "--watch", "--json"]).expect_code(2);
}

#[test]
fn zsh_offers_command_names_at_the_command_position() {
    need("zsh");
    let env = TestEnv::new();
    script_command(&env, "greet");
    let script = completions(&env, "zsh");
    // zsh's completion system needs a terminal; the function that the script registers is run
    // directly, with `compadd` and `_files` standing in for the system's (compadd itself
    // filters the candidates by the word typed).
    let driver = format!(
        "compdef() {{ : }}\n\
         compadd() {{ [[ $1 == -a ]] && print -l -- ${{(P)2}} }}\n\
         _files() {{ print -- '<files>' }}\n\
         source {}\n\
         words=(mcli-client -t 5 gr); CURRENT=4; _mcli_client_names\n\
         print -- '--'\n\
         words=(mcli-client greet x); CURRENT=3; _mcli_client_names\n",
        script.display()
    );
    let mut cmd = env.command("zsh");
    cmd.env("PATH", path_with_bins()).args(["-f", "-c", &driver]);
    let run = Run::of(&mut cmd);
    run.expect_code(0);
    let (names, after) = run.stdout.split_once("--\n").expect("both parts");
    assert!(names.lines().any(|l| l == "greet") && names.lines().any(|l| l == "hello"), "{}", run.stdout);
    assert_eq!(after, "<files>\n");
}

/// Runs `show N WORDS...` for each query in an interactive elvish (its line editor, which holds
/// the completers, needs a terminal: a pty from Python's `pty`), after sourcing `script`, and
/// returns each query's candidates: names as `NAME:x`, the completer's other candidates (clap's
/// options, file names) as `OTHER:stem`.
fn elvish_complete(env: &TestEnv, script: &Path, queries: &[&str]) -> Vec<Vec<String>> {
    let mut commands = format!("eval (slurp < {})\n", script.display());
    commands.push_str(
        "fn show {|q @words| $edit:completion:arg-completer[mcli-client] $@words | each {|c| \
         if (eq (kind-of $c) string) { echo 'MCLI'$q' NAME:'$c } else { echo 'MCLI'$q' OTHER:'$c[stem] } } }\n",
    );
    for (n, words) in queries.iter().enumerate() {
        commands.push_str(&format!("show {n} {words}\n"));
    }
    commands.push_str("echo MCLIDONE\n");
    let file = env.root.path().join("queries.elv");
    std::fs::write(&file, commands).unwrap();
    let driver = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("elvish", ["elvish", "-norc"])
os.write(fd, ("eval (slurp < %s); exit\n" % sys.argv[1]).encode())
out, deadline = b"", time.time() + 30
while b"MCLIDONE" not in out and time.time() < deadline:
    if select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
try:
    os.kill(pid, 9)
except ProcessLookupError:
    pass
sys.stdout.write(out.decode(errors="replace"))
"#;
    let mut cmd = env.command("python3");
    cmd.env("PATH", path_with_bins()).env("TERM", "dumb").arg("-c").arg(driver).arg(&file);
    let run = Run::of(&mut cmd);
    assert!(run.stdout.contains("MCLIDONE"), "elvish did not finish: {run:?}");
    let mut found = vec![Vec::new(); queries.len()];
    for line in run.stdout.lines().map(|l| l.trim_end_matches('\r')) {
        // The first line of output can follow the line editor's escapes.
        let Some(at) = line.find("MCLI") else { continue };
        let Some((n, candidate)) = line[at + 4..].split_once(' ') else { continue };
        if let Some(slot) = n.parse::<usize>().ok().and_then(|n| found.get_mut(n)) {
            slot.push(candidate.to_owned());
        }
    }
    found
}

#[test]
fn elvish_completes_command_names() {
    need("elvish");
    need("python3");
    let env = TestEnv::new();
    script_command(&env, "greet");
    script_command(&env, "grow");
    let script = completions(&env, "elvish");
    std::fs::write(env.root.path().join("grape.txt"), "").unwrap();
    let root = env.root.path().display().to_string();
    let found = elvish_complete(
        &env,
        &script,
        &[
            "mcli-client gr",
            "mcli-client -t 5 gre",
            "mcli-client --on-interrupt detach gre",
            &format!("mcli-client greet {root}/grap"),
            "mcli-client --no-",
        ],
    );
    assert_eq!(found[0], ["NAME:greet", "NAME:grow"], "{found:?}");
    assert_eq!(found[1], ["NAME:greet"], "{found:?}");
    assert_eq!(found[2], ["NAME:greet"], "{found:?}");
    // After the command: file names, no command names.
    assert!(found[3].contains(&format!("OTHER:{root}/grape.txt")), "{found:?}");
    assert!(found[3].iter().all(|c| c.starts_with("OTHER:")), "{found:?}");
    // An option: clap's completion.
    assert!(found[4].contains(&"OTHER:--no-cache".to_owned()), "{found:?}");
    assert!(env.server_pids().is_empty(), "completing must not start a server");
}
