//! Commands from the commands dirs, end to end: scripts and manifests, the live registry, the
//! command's surroundings (cwd, env, stdin), byte-exact output, exit statuses and signals,
//! timeouts and cancellation that end the whole process tree, the concurrency limit and its
//! bounded queue, the result cache, the capture limit and backpressure on a slow reader.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use mcli_tests::{Active, RawConn, Run, TestEnv, WAIT, process_gone, wait_until};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The user's commands dir of `env`, created.
fn commands_dir(env: &TestEnv) -> PathBuf {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).expect("create the commands dir");
    dir
}

/// Writes `text` to `dir/name` with `mode`, atomically: through a hidden temporary file (which
/// the registry ignores) renamed into place, so the registry never sees a half-written file.
fn put_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write file");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).expect("chmod");
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).expect("rename into place");
    path
}

/// A `#!/bin/sh` script `dir/name` with `body`, mode 755.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    put_file(dir, name, &format!("#!/bin/sh\n{body}"), 0o755)
}

/// A manifest `dir/NAME.toml`.
fn manifest(dir: &Path, name: &str, text: &str) -> PathBuf {
    put_file(dir, &format!("{name}.toml"), text, 0o644)
}

fn write_config(env: &TestEnv, text: &str) {
    let dir = env.config_home.join("mcli");
    std::fs::create_dir_all(&dir).expect("create the config dir");
    std::fs::write(dir.join("config.toml"), text).expect("write config");
}

fn server_pid(env: &TestEnv) -> u32 {
    env.server_file("server")["pid"].as_u64().expect("pid in server file") as u32
}

/// `mcli-server status --json`, parsed.
fn status(env: &TestEnv) -> Value {
    let run = env.server(&["status", "--json"]);
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", run.stdout))
}

/// The text of `mcli-server commands`.
fn commands_text(env: &TestEnv) -> String {
    let run = env.server(&["commands"]);
    run.expect_code(0);
    run.stdout
}

/// The line of `mcli-server commands` output for `name`.
fn line_of<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    listing.lines().find(|l| l.split_whitespace().next() == Some(name))
}

/// Waits until the script has written its pid to `file`; returns it.
fn read_pid(file: &Path) -> u32 {
    let mut pid = 0;
    wait_until(&format!("a pid is in {}", file.display()), || {
        match std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()) {
            Some(p) => {
                pid = p;
                true
            }
            None => false,
        }
    });
    pid
}

/// Kills, on drop, the process group led by the pid in a pid file, in case a test fails
/// before the product ended it: no `sleep 300` outlives the test.
struct GroupReaper(PathBuf);

impl Drop for GroupReaper {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0).ok().and_then(|s| s.trim().parse::<i32>().ok())
            && !process_gone(pid as u32)
        {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Children killed on drop (clients left waiting when a test fails).
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    fn spawn(&mut self, cmd: &mut std::process::Command) -> u32 {
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let pid = child.id();
        self.0.push(child);
        pid
    }

    fn take(&mut self, pid: u32) -> Child {
        let at = self.0.iter().position(|c| c.id() == pid).expect("child started here");
        self.0.remove(at)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` to completion with its output as bytes, for at most [`WAIT`].
fn output_bytes(cmd: &mut std::process::Command) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("wait for child"),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("process {pid} did not finish within {WAIT:?}");
        }
    }
}

/// Runs a client with `--json` and returns its result object.
#[track_caller]
fn json_run(run: &Run, code: i32) -> Value {
    run.expect_code(code);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {run:?}"))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom").expect("open /dev/urandom").read_exact(&mut bytes).expect("read random");
    bytes
}

// 1. Scripts and manifests run and are listed; a broken manifest is listed with its reason.

#[test]
fn scripts_and_manifests_run_and_are_listed_with_broken_ones() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    let greet = script(&dir, "greet.sh", "echo \"greet: $*\"\n");
    let shout = manifest(
        &dir,
        "shout",
        "description = \"Shout the words\"\nrun = [\"sh\", \"-c\", \"echo \\\"$*\\\" | tr a-z A-Z\", \"shout\"]\n",
    );
    let bad = manifest(&dir, "bad", "run = [\"true\"]\nbogus = 1\n");

    // Listed without a server (the registry read by `mcli-server commands` itself).
    let offline = commands_text(&env);
    assert!(env.server_pids().is_empty(), "listing starts no server");
    let check = |listing: &str| {
        let line = line_of(listing, "greet").unwrap_or_else(|| panic!("no `greet` in:\n{listing}"));
        assert!(line.contains("greet.sh") && line.contains(&format!("[{}]", greet.display())), "{line}");
        let line = line_of(listing, "shout").unwrap_or_else(|| panic!("no `shout` in:\n{listing}"));
        assert!(line.contains("Shout the words") && line.contains(&format!("[{}]", shout.display())), "{line}");
        let line = line_of(listing, "bad").unwrap_or_else(|| panic!("no `bad` in:\n{listing}"));
        assert!(line.contains(&format!("BROKEN: {}: ", bad.display())), "file in the reason: {line}");
        assert!(line.contains("unknown field `bogus`"), "reason: {line}");
        let line = line_of(listing, "hello").unwrap_or_else(|| panic!("a broken manifest hides nothing:\n{listing}"));
        assert!(line.contains("[builtin]"), "{line}");
    };
    check(&offline);

    // They run, and a broken manifest does not stop the others.
    let run = env.client(&["-q", "greet", "a", "b c"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "greet: a b c\n");
    let run = env.client(&["-q", "shout", "hi", "there"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "HI THERE\n");
    let run = env.client(&["-q", "bad"]);
    run.expect_code(126);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("`bad` cannot run")
            && run.stderr.contains(&bad.display().to_string())
            && run.stderr.contains("unknown field `bogus`"),
        "{}",
        run.stderr
    );
    // With a server running, `-a local` goes to the server too; the same answer.
    env.client(&["-q", "-a", "local", "bad"]).expect_code(126);
    assert_eq!(env.server_pids().len(), 1);

    // Listed by the running server the same way, in text and in JSON.
    let online = commands_text(&env);
    check(&online);
    assert_eq!(online, offline, "the server lists what the offline scan lists");
    let run = env.server(&["commands", "--json"]);
    run.expect_code(0);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    let entry = |name: &str| {
        list["commands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {list}"))
            .clone()
    };
    assert_eq!(entry("greet")["source"], greet.display().to_string());
    assert_eq!(entry("shout")["source"], shout.display().to_string());
    assert_eq!(entry("shout")["description"], "Shout the words");
    assert!(entry("shout").get("error").is_none());
    assert_eq!(entry("bad")["source"], bad.display().to_string());
    let error = entry("bad")["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.starts_with(&format!("{}: ", bad.display())) && error.contains("unknown field `bogus`"), "{error}");
}

#[test]
fn a_broken_manifest_run_locally_exits_126_with_the_reason() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    let bad = manifest(&dir, "typo", "run = [\"true\"]\ntimeuot = 3\n");
    let run = env.client(&["-q", "-a", "local", "typo"]);
    run.expect_code(126);
    assert!(
        run.stderr.contains(&bad.display().to_string()) && run.stderr.contains("unknown field `timeuot`"),
        "{}",
        run.stderr
    );
    assert!(env.server_pids().is_empty(), "ran locally");
}

#[test]
fn a_manifests_relative_program_resolves_against_its_folder_then_path() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    let tools = dir.join("tools");
    std::fs::create_dir(&tools).unwrap();
    script(&tools, "greeter", "echo \"greeter: $*\"\n");
    std::fs::write(dir.join("data.txt"), "some data\n").unwrap();
    manifest(&dir, "rel", "run = [\"tools/greeter\", \"fixed\"]\n");
    manifest(&dir, "onpath", "run = [\"cat\", \"data.txt\"]\n");
    for args in [&["-q", "-a", "local"][..], &["-q"][..]] {
        let run = env.client(&[args, &["rel", "more"]].concat());
        run.expect_code(0);
        assert_eq!(run.stdout, "greeter: fixed more\n", "{args:?}");
        let run = env.client(&[args, &["onpath"]].concat());
        run.expect_code(0);
        assert_eq!(run.stdout, "some data\n", "{args:?}");
    }
    // A program found nowhere is an error that says so, not a crash.
    manifest(&dir, "nowhere", "run = [\"no-such-program-mcli\"]\n");
    wait_until("the new manifest is listed", || line_of(&commands_text(&env), "nowhere").is_some());
    let run = env.client(&["-q", "nowhere"]);
    run.expect_code(127);
    assert!(run.stderr.contains("no-such-program-mcli"), "{}", run.stderr);
}

// 2. The registry follows the commands dir without a restart.

#[test]
fn registry_picks_up_added_changed_and_removed_commands() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    let mf = "description = \"First words\"\nrun = [\"echo\", \"first\"]\n";
    manifest(&dir, "words", mf);
    env.server(&["start"]).expect_code(0);
    let pid = server_pid(&env);
    let run = env.client(&["-q", "words"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "first\n");
    assert!(line_of(&commands_text(&env), "fresh").is_none());

    // Added.
    let fresh = script(&dir, "fresh", "echo fresh script\n");
    wait_until("the new script is listed", || line_of(&commands_text(&env), "fresh").is_some());
    assert!(line_of(&commands_text(&env), "fresh").unwrap().contains(&fresh.display().to_string()));
    let run = env.client(&["-q", "fresh"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "fresh script\n");

    // Changed.
    manifest(&dir, "words", "description = \"Second words\"\nrun = [\"echo\", \"second\"]\n");
    wait_until("the changed manifest is listed", || {
        line_of(&commands_text(&env), "words").is_some_and(|l| l.contains("Second words"))
    });
    let run = env.client(&["-q", "words"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "second\n");

    // Removed.
    std::fs::remove_file(&fresh).unwrap();
    wait_until("the removed script is no longer listed", || line_of(&commands_text(&env), "fresh").is_none());
    let run = env.client(&["-q", "fresh"]);
    run.expect_code(127);
    assert!(run.stderr.contains("unknown command `fresh`"), "{}", run.stderr);

    assert_eq!(server_pid(&env), pid, "the same server throughout");
    assert_eq!(env.server_pids(), vec![pid]);
}

#[test]
fn registry_follows_a_late_commands_dir_lost_permissions_and_broken_manifests() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let pid = server_pid(&env);
    // The commands dir does not exist when the server starts.
    let dir = commands_dir(&env);
    script(&dir, "late", "echo late\n");
    wait_until("the script in the new dir is listed", || line_of(&commands_text(&env), "late").is_some());
    let run = env.client(&["-q", "late"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "late\n");

    // A script that is no longer executable is no longer a command.
    std::fs::set_permissions(dir.join("late"), std::fs::Permissions::from_mode(0o644)).unwrap();
    wait_until("the non-executable script is dropped", || line_of(&commands_text(&env), "late").is_none());
    env.client(&["-q", "late"]).expect_code(127);

    // A manifest that breaks is listed as broken and refuses to run; fixed, it runs again.
    manifest(&dir, "m", "run = [\"echo\", \"m\"]\n");
    wait_until("the manifest is listed", || line_of(&commands_text(&env), "m").is_some());
    env.client(&["-q", "m"]).expect_code(0);
    manifest(&dir, "m", "run = [\"echo\", \"m\"]\nbogus = 1\n");
    wait_until("the manifest is listed as broken", || {
        line_of(&commands_text(&env), "m").is_some_and(|l| l.contains("BROKEN") && l.contains("bogus"))
    });
    let run = env.client(&["-q", "m"]);
    run.expect_code(126);
    assert!(run.stderr.contains("unknown field `bogus`"), "{}", run.stderr);
    manifest(&dir, "m", "run = [\"echo\", \"fixed\"]\n");
    wait_until("the manifest is fixed", || line_of(&commands_text(&env), "m").is_some_and(|l| !l.contains("BROKEN")));
    let run = env.client(&["-q", "m"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "fixed\n");
    assert_eq!(env.server_pids(), vec![pid]);
}

#[test]
fn config_commands_dirs_add_commands_after_the_users_own() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[server]\ncommands_dirs = [\"extra\"]\n");
    let extra = env.config_home.join("mcli/extra");
    std::fs::create_dir(&extra).unwrap();
    script(&dir, "both", "echo from the user dir\n");
    script(&extra, "both", "echo from the extra dir\n");
    let only = script(&extra, "only-extra", "echo only extra\n");
    for args in [&["-q", "-a", "local"][..], &["-q"][..]] {
        let run = env.client(&[args, &["both"]].concat());
        run.expect_code(0);
        assert_eq!(run.stdout, "from the user dir\n", "{args:?}: the first dir wins");
        let run = env.client(&[args, &["only-extra"]].concat());
        run.expect_code(0);
        assert_eq!(run.stdout, "only extra\n", "{args:?}");
    }
    let listing = commands_text(&env);
    assert!(line_of(&listing, "only-extra").is_some_and(|l| l.contains(&only.display().to_string())), "{listing}");
    assert!(
        line_of(&listing, "both").is_some_and(|l| l.contains(&dir.join("both").display().to_string())),
        "{listing}"
    );
    // The extra dir is watched too.
    script(&extra, "later", "echo later\n");
    wait_until("the script in the extra dir is listed", || line_of(&commands_text(&env), "later").is_some());
    let run = env.client(&["-q", "later"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "later\n");
}

// 3. The client's cwd and environment, plus the manifest's `env`.

#[test]
fn commands_run_in_the_clients_cwd_with_its_env_and_the_manifests() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    let body = "echo \"pwd=$(pwd)\"\necho \"PWD=$PWD\"\necho \"MY_VAR=$MY_VAR\"\necho \"MODE=$MODE\"\n";
    script(&dir, "where", body);
    let lib = env.root.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    script(&lib, "where-impl", body);
    manifest(
        &dir,
        "where-m",
        &format!("run = [\"{}\"]\nenv = {{ MODE = \"fast\" }}\n", lib.join("where-impl").display()),
    );
    let work = env.root.path().join("work dir");
    std::fs::create_dir(&work).unwrap();
    let work = work.canonicalize().unwrap();

    for local in [true, false] {
        let mode: &[&str] = if local { &["-q", "-a", "local"] } else { &["-q"] };
        let call = |name: &str| {
            let mut args = mode.to_vec();
            args.push(name);
            Run::of(env.client_cmd(&args).current_dir(&work).env("MY_VAR", "from the client"))
        };
        let run = call("where");
        run.expect_code(0);
        assert_eq!(
            run.stdout,
            format!("pwd={0}\nPWD={0}\nMY_VAR=from the client\nMODE=\n", work.display()),
            "local: {local}"
        );
        let run = call("where-m");
        run.expect_code(0);
        assert_eq!(
            run.stdout,
            format!("pwd={0}\nPWD={0}\nMY_VAR=from the client\nMODE=fast\n", work.display()),
            "local: {local}"
        );
        assert_eq!(env.server_pids().is_empty(), local, "local runs start no server");
    }
}

// 4. Standard input.

#[test]
fn piped_stdin_reaches_the_command() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "count-bytes", "wc -c\n");
    let data = random_bytes(1_000_000);
    for local in [true, false] {
        let mut cmd =
            env.client_cmd(if local { &["-q", "-a", "local", "count-bytes"] } else { &["-q", "count-bytes"] });
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = data.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let run = Run::wait(child);
        writer.join().unwrap().expect("write the client's stdin");
        run.expect_code(0);
        assert_eq!(run.stdout.trim(), "1000000", "local: {local}; stderr: {}", run.stderr);
    }
}

#[test]
fn stdin_echoed_back_by_cat_is_byte_exact() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "echo-in", "cat\n");
    let data = random_bytes(2_000_000);
    for args in [&["-q", "-a", "local", "echo-in"][..], &["-q", "echo-in"][..]] {
        let mut cmd = env.client_cmd(args);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = data.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("{args:?}: the client did not finish within {WAIT:?}");
        });
        let output = output.unwrap();
        writer.join().unwrap().expect("write the client's stdin");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.stdout.len(), data.len(), "{args:?}");
        assert!(output.stdout == data, "{args:?}: the output differs from the input");
    }
}

#[test]
fn a_file_on_stdin_reaches_the_command() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "count-bytes", "wc -c\n");
    let file = env.root.path().join("input.bin");
    std::fs::write(&file, random_bytes(123_457)).unwrap();
    for args in [&["-q", "-a", "local", "count-bytes"][..], &["-q", "count-bytes"][..]] {
        let run = Run::of(env.client_cmd(args).stdin(std::fs::File::open(&file).unwrap()));
        run.expect_code(0);
        assert_eq!(run.stdout.trim(), "123457", "{args:?}");
    }
}

#[test]
fn without_forwarded_stdin_the_command_reads_end_of_file_at_once() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "cat-in", "cat\necho done\n");
    env.server(&["start"]).expect_code(0);
    let started = Instant::now();
    // The harness gives the client /dev/null for stdin.
    let run = env.client(&["-q", "cat-in"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "done\n");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_background_process_left_behind_does_not_hold_the_client() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "daemonize", "sleep 300 &\necho $! > \"$1\"\necho done\n");
    let pid_file = env.root.path().join("bg.pid");
    let _reaper = GroupReaper(pid_file.clone());
    // With the client's streams passed, a process left behind holds them as it would after a
    // direct run (see terminal.rs); streamed through mcli, it does not.
    for args in [&["-q", "--no-pass-streams", "-a", "local"][..], &["-q", "--no-pass-streams"][..]] {
        let started = Instant::now();
        let run = env.client(&[args, &["daemonize", &pid_file.display().to_string()]].concat());
        run.expect_code(0);
        assert_eq!(run.stdout, "done\n");
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
        let left = read_pid(&pid_file);
        let _ = kill(Pid::from_raw(left as i32), Signal::SIGKILL);
        wait_until("the leftover is gone", || process_gone(left));
        std::fs::remove_file(&pid_file).unwrap();
    }
}

// 5. Byte-exact output, stdout and stderr apart.

#[test]
fn binary_output_is_byte_exact_locally_and_through_the_server() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "catfile", "cat \"$1\"\n");
    let data = random_bytes(300 * 1024);
    let file = env.root.path().join("blob.bin");
    std::fs::write(&file, &data).unwrap();
    let file = file.display().to_string();

    let local = output_bytes(&mut env.client_cmd(&["-q", "-a", "local", "catfile", &file]));
    assert_eq!(local.status.code(), Some(0), "{}", String::from_utf8_lossy(&local.stderr));
    assert!(env.server_pids().is_empty(), "ran locally");
    assert_eq!(local.stdout.len(), data.len());
    assert!(local.stdout == data, "local output differs from the file");
    assert_eq!(local.stderr, b"");

    let served = output_bytes(&mut env.client_cmd(&["-q", "catfile", &file]));
    assert_eq!(served.status.code(), Some(0), "{}", String::from_utf8_lossy(&served.stderr));
    assert_eq!(env.server_pids().len(), 1, "ran on the server");
    assert_eq!(served.stdout.len(), data.len());
    assert!(served.stdout == data, "output through the server differs from the file");
    assert_eq!(served.stderr, b"");
}

#[test]
fn large_stdout_and_stderr_at_once_stay_apart_and_exact() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "twice", "cat \"$1\" >&2 &\ncat \"$2\"\nwait\n");
    let (out, err) = (random_bytes(400 * 1024), random_bytes(300 * 1024));
    let (out_file, err_file) = (env.root.path().join("out.bin"), env.root.path().join("err.bin"));
    std::fs::write(&out_file, &out).unwrap();
    std::fs::write(&err_file, &err).unwrap();
    let (out_arg, err_arg) = (out_file.display().to_string(), err_file.display().to_string());
    for args in [&["-q", "-a", "local"][..], &["-q"][..]] {
        let run = output_bytes(&mut env.client_cmd(&[args, &["twice", &err_arg, &out_arg]].concat()));
        assert_eq!(run.status.code(), Some(0), "{args:?}");
        assert!(run.stdout == out, "{args:?}: stdout differs ({} bytes)", run.stdout.len());
        assert!(run.stderr == err, "{args:?}: stderr differs ({} bytes)", run.stderr.len());
    }
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "both", "printf out\nprintf err >&2\nprintf ' more out'\nprintf ' more err' >&2\n");
    for args in [&["-q", "-a", "local", "both"][..], &["-q", "both"][..]] {
        let run = env.client(args);
        run.expect_code(0);
        assert_eq!(run.stdout, "out more out", "{args:?}");
        assert_eq!(run.stderr, "err more err", "{args:?}");
    }
    let result = json_run(&env.client(&["-q", "--json", "both"]), 0);
    assert_eq!(result["stdout"], "out more out", "{result}");
    assert_eq!(result["stderr"], "err more err", "{result}");
}

// 6. Exit statuses and signals.

#[test]
fn exit_status_is_exact_and_a_signal_is_128_plus_n() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "fail42", "echo failing\nexit 42\n");
    script(&dir, "suicide", "kill -TERM $$\nsleep 5\n");
    for args in [&["-q", "-a", "local"][..], &["-q"][..]] {
        let run = env.client(&[args, &["fail42"]].concat());
        run.expect_code(42);
        assert_eq!(run.stdout, "failing\n");
        env.client(&[args, &["suicide"]].concat()).expect_code(143);
        let result = json_run(&env.client(&[args, &["--json", "suicide"]].concat()), 143);
        assert_eq!(result["signal"], 15, "{result}");
        assert_eq!(result["exit_code"], Value::Null, "{result}");
        let result = json_run(&env.client(&[args, &["--json", "fail42"]].concat()), 42);
        assert_eq!(result["exit_code"], 42, "{result}");
        assert_eq!(result["signal"], Value::Null, "{result}");
        assert_eq!(result["status"], "failed", "{result}");
    }
}

// 7. Timeouts end the whole process tree.

/// A script that starts a grandchild `sleep 300`, writes its pid to the file `$1`, and waits.
const SPAWNER: &str = "sleep 300 &\necho $! > \"$1\"\nwait\n";

#[track_caller]
fn assert_times_out_and_reaps(env: &TestEnv, args: &[&str], pid_file: &Path) {
    let _reaper = GroupReaper(pid_file.to_owned());
    let started = Instant::now();
    let run = env.client(args);
    run.expect_code(124);
    assert!(started.elapsed() < Duration::from_secs(15), "the timeout took {:?}", started.elapsed());
    let grandchild = read_pid(pid_file);
    wait_until("the grandchild is gone", || process_gone(grandchild));
}

#[test]
fn a_client_timeout_ends_the_grandchildren_too() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "spawner", SPAWNER);
    let pids = env.root.path().join("grandchild.pid");
    let file = pids.display().to_string();
    assert_times_out_and_reaps(&env, &["-q", "-t", "0.5", "spawner", &file], &pids);
    std::fs::remove_file(&pids).unwrap();
    let result = json_run(&env.client(&["-q", "--json", "-t", "0.5", "spawner", &file]), 124);
    assert_eq!(result["status"], "timed_out", "{result}");
    let grandchild = read_pid(&pids);
    wait_until("the second grandchild is gone", || process_gone(grandchild));

    // The same with the command run by the client itself.
    env.server(&["stop"]).expect_code(0);
    std::fs::remove_file(&pids).unwrap();
    assert_times_out_and_reaps(&env, &["-q", "-a", "local", "-t", "0.5", "spawner", &file], &pids);
    assert!(env.server_pids().is_empty(), "ran locally");
}

#[test]
fn a_manifest_timeout_ends_the_grandchildren_too() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    let lib = env.root.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let spawner = script(&lib, "spawner", SPAWNER);
    manifest(&dir, "slow", &format!("run = [\"{}\"]\ntimeout = 0.5\n", spawner.display()));
    let pids = env.root.path().join("grandchild.pid");
    assert_times_out_and_reaps(&env, &["-q", "slow", &pids.display().to_string()], &pids);
}

#[test]
fn the_config_command_timeout_ends_the_grandchildren_too() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[api_daemon]\ncommand_timeout = 0.5\n");
    script(&dir, "spawner", SPAWNER);
    let pids = env.root.path().join("grandchild.pid");
    assert_times_out_and_reaps(&env, &["-q", "spawner", &pids.display().to_string()], &pids);
}

// 8. Cancellation: Ctrl-C, the `cancel` method, the connection closing.

/// A script that writes its pid to the file `$1`, then sleeps in its place.
const SLEEPER: &str = "echo $$ > \"$1\"\nexec sleep 300\n";

/// A running server with the `sleeper` command, the file a run of it writes its pid to, and
/// the guard that kills what is left of it.
fn with_sleeper() -> (TestEnv, PathBuf, GroupReaper) {
    let env = TestEnv::new();
    script(&commands_dir(&env), "sleeper", SLEEPER);
    env.server(&["start"]).expect_code(0);
    let pid_file = env.root.path().join("sleeper.pid");
    let reaper = GroupReaper(pid_file.clone());
    (env, pid_file, reaper)
}

#[test]
fn ctrl_c_on_the_client_cancels_the_command() {
    let (env, pid_file, _reaper) = with_sleeper();
    let mut children = Children::default();
    let client = children.spawn(&mut env.client_cmd(&["-q", "sleeper", &pid_file.display().to_string()]));
    env.wait_for_active(Active::Named("sleeper"));
    let command = read_pid(&pid_file);

    let interrupted = Instant::now();
    kill(Pid::from_raw(client as i32), Signal::SIGINT).unwrap();
    let run = Run::wait(children.take(client));
    run.expect_code(130);
    assert!(interrupted.elapsed() < Duration::from_secs(5), "the client took {:?}", interrupted.elapsed());
    wait_until("the command is gone", || process_gone(command));
    env.wait_for_active(Active::Count(0));
}

#[test]
fn ctrl_c_on_a_local_run_cancels_the_command() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "sleeper", SLEEPER);
    let pid_file = env.root.path().join("sleeper.pid");
    let _reaper = GroupReaper(pid_file.clone());
    let mut children = Children::default();
    let client =
        children.spawn(&mut env.client_cmd(&["-q", "-a", "local", "sleeper", &pid_file.display().to_string()]));
    let command = read_pid(&pid_file);
    let interrupted = Instant::now();
    kill(Pid::from_raw(client as i32), Signal::SIGINT).unwrap();
    let run = Run::wait(children.take(client));
    run.expect_code(130);
    assert!(interrupted.elapsed() < Duration::from_secs(5), "the client took {:?}", interrupted.elapsed());
    wait_until("the command is gone", || process_gone(command));
    assert!(env.server_pids().is_empty(), "ran locally");
}

/// A script that writes its pid to `$1`, notes each SIGTERM in `$2`, and does not stop for it.
const STUBBORN: &str = "trap 'echo term >> \"$2\"' TERM\necho $$ > \"$1\"\nwhile :; do sleep 0.1; done\n";

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[server]\nkill_grace = 1.5\n");
    script(&dir, "stubborn", STUBBORN);
    let (pid_file, terms) = (env.root.path().join("stubborn.pid"), env.root.path().join("terms"));
    let _reaper = GroupReaper(pid_file.clone());
    let started = Instant::now();
    let run =
        env.client(&["-q", "-t", "0.3", "stubborn", &pid_file.display().to_string(), &terms.display().to_string()]);
    run.expect_code(124);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1800), "SIGKILL came before the 1.5 s grace: {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let command = read_pid(&pid_file);
    wait_until("the command is gone", || process_gone(command));
    assert!(std::fs::read_to_string(&terms).unwrap_or_default().contains("term"), "SIGTERM came first");
}

#[test]
fn a_second_ctrl_c_leaves_at_once() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[server]\nkill_grace = 20\n");
    script(&dir, "stubborn", STUBBORN);
    env.server(&["start"]).expect_code(0);
    let (pid_file, terms) = (env.root.path().join("stubborn.pid"), env.root.path().join("terms"));
    let _reaper = GroupReaper(pid_file.clone());
    let mut children = Children::default();
    // Streamed through mcli: with passed streams the command (which ignores SIGTERM) would hold
    // the test's pipe open after the client has left.
    let client = children.spawn(&mut env.client_cmd(&[
        "-q",
        "--no-pass-streams",
        "stubborn",
        &pid_file.display().to_string(),
        &terms.display().to_string(),
    ]));
    env.wait_for_active(Active::Named("stubborn"));
    read_pid(&pid_file);
    kill(Pid::from_raw(client as i32), Signal::SIGINT).unwrap();
    wait_until("the command got SIGTERM", || std::fs::read_to_string(&terms).is_ok_and(|t| t.contains("term")));
    let second = Instant::now();
    kill(Pid::from_raw(client as i32), Signal::SIGINT).unwrap();
    let run = Run::wait(children.take(client));
    run.expect_code(130);
    assert!(second.elapsed() < Duration::from_secs(5), "the second Ctrl-C took {:?}", second.elapsed());
}

#[test]
fn a_closed_stdout_ends_the_client_and_the_command() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "endless", "echo $$ > \"$1\"\nexec yes\n");
    env.server(&["start"]).expect_code(0);
    let pid_file = env.root.path().join("endless.pid");
    let _reaper = GroupReaper(pid_file.clone());
    let mut children = Children::default();
    let client = children.spawn(&mut env.client_cmd(&["-q", "endless", &pid_file.display().to_string()]));
    let mut child = children.take(client);
    let mut stdout = child.stdout.take().unwrap();
    children.0.push(child);
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"y\ny\ny\ny\ny\n");
    drop(stdout);
    let run = Run::wait(children.take(client));
    run.expect_code(141);
    let command = read_pid(&pid_file);
    wait_until("the command is gone", || process_gone(command));
    env.wait_for_active(Active::Count(0));
}

#[test]
fn ctrl_c_cancels_a_command_that_does_not_read_its_endless_stdin() {
    let (env, pid_file, _reaper) = with_sleeper();
    // As `yes | mcli-client sleeper`: input keeps coming, and the command never reads it.
    let mut cmd = env.client_cmd(&["-q", "sleeper", &pid_file.display().to_string()]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let client = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut children = Children::default();
    children.0.push(child);
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            let chunk = vec![b'y'; 16 * 1024];
            while stdin.write_all(&chunk).is_ok() {
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        });
    }
    env.wait_for_active(Active::Named("sleeper"));
    let command = read_pid(&pid_file);
    // Every buffer on the way fills up: the input stops moving.
    let mut last = (usize::MAX, Instant::now());
    wait_until("the forwarded input stops moving", || {
        let now = written.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
        now > 0 && last.1.elapsed() > Duration::from_millis(500)
    });

    let interrupted = Instant::now();
    kill(Pid::from_raw(client as i32), Signal::SIGINT).unwrap();
    let run = Run::wait(children.take(client));
    run.expect_code(130);
    assert!(interrupted.elapsed() < Duration::from_secs(5), "the client took {:?}", interrupted.elapsed());
    wait_until("the command is gone", || process_gone(command));
}

#[test]
fn the_cancel_method_from_another_connection_ends_the_clients_command() {
    let (env, pid_file, _reaper) = with_sleeper();
    let mut children = Children::default();
    let client = children.spawn(&mut env.client_cmd(&["-q", "sleeper", &pid_file.display().to_string()]));
    let status = env.wait_for_active(Active::Named("sleeper"));
    let command = read_pid(&pid_file);
    let id = status["active_commands"][0]["id"].as_u64().unwrap_or_else(|| panic!("no execution id: {status}"));

    let mut conn = RawConn::connect(&env.socket("server"));
    conn.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": 1, "method": "cancel", "params": {"id": id}})).as_bytes());
    let reply = conn.read_json_line();
    assert_eq!(reply["id"], 1, "{reply}");
    assert_eq!(reply["result"], json!({"ok": true}), "{reply}");
    let run = Run::wait(children.take(client));
    run.expect_code(130);
    wait_until("the command is gone", || process_gone(command));

    // Cancelling it again finds nothing running.
    conn.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": 2, "method": "cancel", "params": {"id": id}})).as_bytes());
    assert_eq!(conn.read_json_line()["result"], json!({"ok": false}));
}

#[test]
fn closing_the_connection_ends_its_command() {
    let (env, pid_file, _reaper) = with_sleeper();
    let mut conn = RawConn::connect(&env.socket("server"));
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "execute",
        "params": {"command": "sleeper", "args": [pid_file.display().to_string()]}});
    conn.send(format!("{request}\n").as_bytes());
    let command = read_pid(&pid_file);
    env.wait_for_active(Active::Named("sleeper"));
    drop(conn);
    wait_until("the command is gone", || process_gone(command));
    env.wait_for_active(Active::Count(0));
}

// 9. The concurrency limit.

#[test]
fn at_most_max_concurrent_commands_run_at_once() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[api_daemon]\nmax_concurrent_commands = 3\n");
    let running = env.root.path().join("running");
    std::fs::create_dir(&running).unwrap();
    let log = env.root.path().join("concurrency.log");
    script(
        &dir,
        "counted",
        ": > \"$1/running.$$\"\nn=$(ls \"$1\" | grep -c '^running\\.')\necho \"$n\" >> \"$2\"\nsleep 0.2\nrm -f \"$1/running.$$\"\n",
    );
    env.server(&["start"]).expect_code(0);
    let barrier = Arc::new(Barrier::new(30));
    let (running, log_arg) = (running.display().to_string(), log.display().to_string());
    let handles: Vec<_> = (0..30)
        .map(|_| {
            let mut cmd = env.client_cmd(&["-q", "counted", &running, &log_arg]);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                Run::of(&mut cmd)
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().expect_code(0);
    }
    let counts: Vec<u32> = std::fs::read_to_string(&log).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), 30, "{counts:?}");
    let max = *counts.iter().max().unwrap();
    assert!(max <= 3, "{max} ran at once: {counts:?}");
    assert!(max >= 2, "the commands never overlapped: {counts:?}");
    assert_eq!(status(&env)["executed_total"], 30);
}

// 10. The queue bound.

#[test]
fn a_full_queue_refuses_with_server_busy() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nmax_concurrent_commands = 1\n[server]\nmax_queued_commands = 1\n");
    env.server(&["start"]).expect_code(0);
    let mut children = Children::default();
    let running = children.spawn(&mut env.client_cmd(&["-q", "sleep", "60"]));
    env.wait_for_active(Active::Named("sleep"));
    let queued = children.spawn(&mut env.client_cmd(&["-q", "echo", "was queued"]));
    wait_until("one command is queued", || status(&env)["queued"] == 1);

    let started = Instant::now();
    let run = env.client(&["-q", "echo", "third"]);
    run.expect_code(75);
    assert!(started.elapsed() < Duration::from_secs(10), "refusing took {:?}", started.elapsed());
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("server busy"), "{}", run.stderr);
    let status_now = status(&env);
    assert_eq!(status_now["queued"], 1, "{status_now}");
    assert_eq!(status_now["active_commands"].as_array().map(Vec::len), Some(1), "{status_now}");

    // Ending the running command lets the queued one run.
    kill(Pid::from_raw(running as i32), Signal::SIGINT).unwrap();
    Run::wait(children.take(running)).expect_code(130);
    let run = Run::wait(children.take(queued));
    run.expect_code(0);
    assert_eq!(run.stdout, "was queued\n");
    assert_eq!(status(&env)["queued"], 0);
}

#[test]
fn ctrl_c_while_queued_cancels_without_running() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[api_daemon]\nmax_concurrent_commands = 1\n");
    let marker = env.root.path().join("ran");
    script(&dir, "mark", "echo ran > \"$1\"\necho marked\n");
    env.server(&["start"]).expect_code(0);
    let mut children = Children::default();
    let running = children.spawn(&mut env.client_cmd(&["-q", "sleep", "60"]));
    env.wait_for_active(Active::Named("sleep"));
    let queued = children.spawn(&mut env.client_cmd(&["-q", "mark", &marker.display().to_string()]));
    wait_until("one command is queued", || status(&env)["queued"] == 1);
    kill(Pid::from_raw(queued as i32), Signal::SIGINT).unwrap();
    let run = Run::wait(children.take(queued));
    run.expect_code(130);
    assert_eq!(run.stdout, "");
    assert_eq!(status(&env)["queued"], 0);

    kill(Pid::from_raw(running as i32), Signal::SIGINT).unwrap();
    Run::wait(children.take(running)).expect_code(130);
    env.wait_for_active(Active::Count(0));
    assert!(!marker.exists(), "the cancelled queued command never ran");
}

// 11. The result cache.

#[test]
fn cached_results_are_reused_until_something_in_the_key_changes() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    manifest(&dir, "now", "run = [\"date\", \"+%s%N\"]\n[cache]\nttl = 60\nenv = [\"FLAVOR\"]\n");
    let call = |extra: &[&str], flavor: &str| {
        let mut args = vec!["-q", "--json"];
        args.extend_from_slice(extra);
        let run = Run::of(env.client_cmd(&args).env("FLAVOR", flavor));
        let result = json_run(&run, 0);
        let stdout = result["stdout"].as_str().unwrap_or_else(|| panic!("{result}")).to_owned();
        assert!(stdout.trim().parse::<u128>().is_ok(), "{result}");
        (stdout, result["cached"].as_bool().unwrap_or_else(|| panic!("{result}")))
    };
    let (first, cached) = call(&["now"], "a");
    assert!(!cached);
    assert_eq!(call(&["now"], "a"), (first.clone(), true), "the second call is served from the cache");
    // Streamed output from the cache is the same text.
    let run = Run::of(env.client_cmd(&["-q", "now"]).env("FLAVOR", "a"));
    run.expect_code(0);
    assert_eq!(run.stdout, first);

    let (fresh, cached) = call(&["--no-cache", "now"], "a");
    assert!(!cached);
    assert_ne!(fresh, first, "--no-cache runs the command");

    let (other_arg, cached) = call(&["now", "-u"], "a");
    assert!(!cached, "another argument misses");
    assert_ne!(other_arg, first);

    let (other_env, cached) = call(&["now"], "b");
    assert!(!cached, "another value of a key variable misses");
    assert_ne!(other_env, first);
    assert_eq!(call(&["now"], "b"), (other_env, true));

    let elsewhere = env.root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let run = Run::of(env.client_cmd(&["-q", "--json", "now"]).env("FLAVOR", "a").current_dir(&elsewhere));
    assert_eq!(json_run(&run, 0)["cached"], false, "another cwd misses");

    // The first entry is still there.
    assert_eq!(call(&["now"], "a"), (first.clone(), true));

    // A call with input on stdin is not served from the cache.
    let mut cmd = env.client_cmd(&["-q", "--json", "now"]);
    let mut child =
        cmd.env("FLAVOR", "a").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"input").unwrap();
    let result = json_run(&Run::wait(child), 0);
    assert_eq!(result["cached"], false, "{result}");
    assert_ne!(result["stdout"], first.as_str());
}

#[test]
fn a_cache_hit_replays_both_streams() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    manifest(&dir, "both", "run = [\"sh\", \"-c\", \"date +%s%N; date +%N >&2\"]\n[cache]\nttl = 60\n");
    let first = env.client(&["-q", "both"]);
    first.expect_code(0);
    let second = env.client(&["-q", "both"]);
    second.expect_code(0);
    assert_eq!((&second.stdout, &second.stderr), (&first.stdout, &first.stderr));
    assert!(!first.stderr.is_empty() && first.stdout != first.stderr, "{first:?}");
    let result = json_run(&env.client(&["-q", "--json", "both"]), 0);
    assert_eq!(result["cached"], true, "{result}");
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["stdout"], first.stdout.as_str());
    assert_eq!(result["stderr"], first.stderr.as_str());
}

#[test]
fn cached_results_expire_after_their_ttl_and_when_the_manifest_changes() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    manifest(&dir, "now", "run = [\"date\", \"+%s%N\"]\n[cache]\nttl = 1\n");
    let first = json_run(&env.client(&["-q", "--json", "now"]), 0);
    let stored = Instant::now();
    assert_eq!(first["cached"], false);
    let second = json_run(&env.client(&["-q", "--json", "now"]), 0);
    assert!(second["cached"] == true || stored.elapsed() >= Duration::from_secs(1), "{second}");
    wait_until("the cached result expires", || json_run(&env.client(&["-q", "--json", "now"]), 0)["cached"] == false);
    assert!(stored.elapsed() >= Duration::from_millis(900), "expired after {:?}", stored.elapsed());

    manifest(&dir, "long", "description = \"v1\"\nrun = [\"date\", \"+%s%N\"]\n[cache]\nttl = 600\n");
    wait_until("the manifest is listed", || line_of(&commands_text(&env), "long").is_some());
    let first = json_run(&env.client(&["-q", "--json", "long"]), 0);
    assert_eq!(json_run(&env.client(&["-q", "--json", "long"]), 0)["cached"], true);
    manifest(&dir, "long", "description = \"v2\"\nrun = [\"date\", \"+%s%N\"]\n[cache]\nttl = 600\n");
    wait_until("the changed manifest is listed", || {
        line_of(&commands_text(&env), "long").is_some_and(|l| l.contains("v2"))
    });
    let after = json_run(&env.client(&["-q", "--json", "long"]), 0);
    assert_eq!(after["cached"], false, "a changed manifest never serves an old result: {after}");
    assert_ne!(after["stdout"], first["stdout"]);
}

#[test]
fn commands_without_a_cache_table_and_failed_runs_are_not_cached() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    manifest(&dir, "plain", "run = [\"date\", \"+%s%N\"]\n");
    manifest(&dir, "flaky", "run = [\"sh\", \"-c\", \"date +%s%N; exit 3\"]\n[cache]\nttl = 60\n");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let result = json_run(&env.client(&["-q", "--json", "plain"]), 0);
        assert_eq!(result["cached"], false, "{result}");
        seen.push(result["stdout"].as_str().unwrap().to_owned());
    }
    assert_ne!(seen[0], seen[1], "a command without [cache] runs every time");

    let mut seen = Vec::new();
    for _ in 0..2 {
        let result = json_run(&env.client(&["-q", "--json", "flaky"]), 3);
        assert_eq!(result["cached"], false, "{result}");
        seen.push(result["stdout"].as_str().unwrap().to_owned());
    }
    assert_ne!(seen[0], seen[1], "a failed run is not stored");
}

#[test]
fn caching_can_be_turned_off_in_the_config() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[api_daemon]\nenable_command_caching = false\n");
    manifest(&dir, "now", "run = [\"date\", \"+%s%N\"]\n[cache]\nttl = 60\n");
    let first = json_run(&env.client(&["-q", "--json", "now"]), 0);
    let second = json_run(&env.client(&["-q", "--json", "now"]), 0);
    assert_eq!(second["cached"], false, "{second}");
    assert_ne!(first["stdout"], second["stdout"]);
}

// 12. The capture limit of results that are not streamed.

#[test]
fn captured_output_is_truncated_at_max_captured_output() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    write_config(&env, "[server]\nmax_captured_output = 1000\n");
    script(&dir, "chatty", "head -c 5000 /dev/zero | tr '\\0' x\nprintf small >&2\n");
    let result = json_run(&env.client(&["-q", "--json", "chatty"]), 0);
    assert_eq!(result["stdout"], "x".repeat(1000), "{result}");
    assert_eq!(result["stderr"], "small", "{result}");
    assert_eq!(result["truncated"], true, "{result}");
    assert_eq!(result["exit_code"], 0, "{result}");

    // Streamed output has no such limit.
    let run = env.client(&["-q", "chatty"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "x".repeat(5000));
}

// 13. Backpressure: a slow reader slows the command instead of growing the server.

#[test]
fn a_slow_reader_does_not_grow_the_server() {
    const TOTAL: usize = 100_000_000;
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "flood", &format!("head -c {TOTAL} /dev/zero\n"));
    env.server(&["start"]).expect_code(0);
    let pid = server_pid(&env);
    let mut children = Children::default();
    let client = children.spawn(&mut env.client_cmd(&["-q", "flood"]));
    let mut child = children.take(client);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    children.0.push(child);
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let (mut total, mut nonzero, mut paused) = (0usize, false, false);
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                nonzero |= buf[..n].iter().any(|b| *b != 0);
                total += n;
                if total < 4_000_000 {
                    std::thread::sleep(Duration::from_millis(1));
                } else if !paused {
                    // A reader that stops for a while: the server must not read ahead meanwhile.
                    paused = true;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            done.store(true, Ordering::SeqCst);
            (total, nonzero)
        })
    };
    let deadline = Instant::now() + WAIT * 2;
    let mut max_rss = 0;
    while !done.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(client as i32), Signal::SIGKILL);
            panic!("the transfer did not finish within {:?}", WAIT * 2);
        }
        max_rss = max_rss.max(rss_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (total, nonzero) = reader.join().unwrap();
    let mut child = children.take(client);
    let code = child.wait().unwrap().code();
    let errors = errors.join().unwrap();
    assert_eq!(code, Some(0), "{errors}");
    assert_eq!(total, TOTAL, "{errors}");
    assert!(!nonzero, "the output is all zero bytes");
    assert!(max_rss > 0, "sampled the server's memory");
    assert!(max_rss < 64 * 1024, "the server grew to {max_rss} KiB");
}

/// A script that leaves a grandchild in a session of its own (out of its process group), writes
/// the grandchild's pid to `pidfile`, then waits.
fn escaping_script(env: &TestEnv, pidfile: &Path) {
    let body = format!(
        "#!/bin/sh\nsetsid sleep 300 >/dev/null 2>&1 < /dev/null &\necho $! > {}\nsleep 300\n",
        pidfile.display()
    );
    script(&commands_dir(env), "escape", &body);
}

fn grandchild(pidfile: &Path) -> u32 {
    wait_until("the grandchild's pid is written", || {
        std::fs::read_to_string(pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    });
    std::fs::read_to_string(pidfile).unwrap().trim().parse().unwrap()
}

#[test]
fn a_timeout_ends_a_grandchild_that_left_the_process_group() {
    let env = TestEnv::new();
    let pidfile = env.root.path().join("grandchild.pid");
    escaping_script(&env, &pidfile);
    env.client(&["-q", "-t", "1", "escape"]).expect_code(124);
    let pid = grandchild(&pidfile);
    wait_until("the setsid grandchild is gone", || process_gone(pid));
}

#[test]
fn a_cancel_ends_a_grandchild_that_left_the_process_group_locally_too() {
    let mut env = TestEnv::new();
    env.set_env("MCLI_DAEMON_ROUTING", "false");
    let pidfile = env.root.path().join("grandchild.pid");
    escaping_script(&env, &pidfile);
    let client = env.client_cmd(&["escape"]).spawn().unwrap();
    let pid = grandchild(&pidfile);
    kill(Pid::from_raw(client.id() as i32), Signal::SIGINT).unwrap();
    Run::wait(client).expect_code(130);
    wait_until("the setsid grandchild is gone", || process_gone(pid));
}

#[test]
fn a_server_started_from_inside_a_command_outlives_the_commands_timeout() {
    let env = TestEnv::new();
    let client = env.bin("mcli-client");
    let body = format!("#!/bin/sh\n{} -q -s inner hello\nsleep 300\n", client.display());
    script(&commands_dir(&env), "nested", &body);
    env.client(&["-q", "-t", "5", "nested"]).expect_code(124);
    let inner = env.server_file("inner")["pid"].as_u64().unwrap() as u32;
    assert!(!process_gone(inner), "the inner server was ended with the command");
    env.client(&["-q", "-s", "inner", "hello", "again"]).expect_code(0);
    env.server(&["-s", "inner", "stop"]).expect_code(0);
}

#[test]
fn a_file_that_is_not_executable_gets_a_chmod_hint_by_its_name() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    let file = dir.join("deploy.sh");
    std::fs::write(&file, "#!/bin/sh\necho deployed\n").unwrap();
    let want = format!(
        "mcli-client: unknown command `deploy`: {} is not executable; make it a command with `chmod +x {}`",
        file.display(),
        file.display()
    );
    let run = env.client(&["-q", "deploy"]);
    run.expect_code(127);
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    let mut local = env.client_cmd(&["deploy"]);
    let local = Run::of(local.env("MCLI_DAEMON_ROUTING", "false"));
    local.expect_code(127);
    assert!(local.stderr.contains(&want), "{}", local.stderr);
}

#[test]
fn a_busy_server_says_how_many_run_in_good_english() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\nmax_concurrent_commands = 1\n[server]\nmax_queued_commands = 0\n");
    let mut running =
        env.client_cmd(&["-q", "sleep", "30"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    env.wait_for_active(Active::Any);
    let busy = env.client(&["-q", "echo", "x"]);
    busy.expect_code(75);
    assert!(busy.stderr.contains("server busy: 1 command running and 0 waiting"), "{}", busy.stderr);
    // The client hanging up cancels its command.
    running.kill().unwrap();
    let _ = running.wait();
    env.wait_for_active(Active::Count(0));
}

#[test]
fn each_program_says_its_own_name_before_what_it_reports() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    put_file(&dir, "broken", "#!/nonexistent/interpreter\n", 0o755);
    // Run by the client itself (no server, local mode): the client's name.
    let local = env.client(&["-a", "local", "broken"]);
    assert_ne!(local.code, Some(0));
    assert!(local.stderr.contains("mcli-client: cannot run"), "{}", local.stderr);
    // Run by the server: the server's name, whatever the client adds.
    env.server(&["start"]).expect_code(0);
    let served = env.client(&["broken"]);
    assert_ne!(served.code, Some(0));
    assert!(served.stderr.contains("mcli-server: cannot run"), "{}", served.stderr);
    for run in [&local, &served] {
        assert!(!run.stderr.lines().any(|l| l.starts_with("mcli: ")), "no bare `mcli:` prefix: {}", run.stderr);
    }
}
