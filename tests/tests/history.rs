//! The command history, status and logs, the idle timeout and the socket that repairs itself,
//! through the real binaries.

#![forbid(unsafe_code)]

use std::process::Stdio;

use mcli_tests::{Run, TestEnv, process_gone, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

fn pid_of(env: &TestEnv) -> u32 {
    env.server_file("server")["pid"].as_u64().expect("pid") as u32
}

fn history_db(env: &TestEnv) -> std::path::PathBuf {
    env.state_home.join("mcli/server-history.sqlite3")
}

fn json(run: &Run) -> Value {
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

#[test]
fn executions_are_recorded_and_filtered_with_or_without_a_server() {
    let env = TestEnv::new();
    env.client(&["-q", "hello", "World"]).expect_code(0);
    env.client(&["-q", "exit", "3"]).expect_code(3);
    env.client(&["-q", "-t", "0.2", "sleep", "5"]).expect_code(124);
    env.client(&["-q", "echo", "two words"]).expect_code(0);

    let all = json(&env.server(&["history", "--json"]));
    let entries = all["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    let newest = &entries[0];
    assert_eq!(newest["command"], "echo");
    assert_eq!(newest["args"], serde_json::json!(["two words"]));
    assert_eq!(newest["status"], "completed");
    assert_eq!(newest["exit_code"], 0);
    assert_eq!(newest["transport"], "socket");
    assert_eq!(newest["cwd"], env.root.path().display().to_string());
    assert!(newest["started"].as_str().unwrap().ends_with('Z'));
    assert_eq!(entries[1]["status"], "timed_out");
    assert_eq!(entries[2]["exit_code"], 3);

    let failed = json(&env.server(&["history", "--failed", "--json"]));
    let statuses: Vec<&str> =
        failed["entries"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["timed_out", "failed"]);
    let hello = json(&env.server(&["history", "--command", "hello", "--limit", "5", "--json"]));
    assert_eq!(hello["entries"].as_array().unwrap().len(), 1);

    // The same through the running server's `history` method, and `status` counts them.
    let mut conn = mcli_tests::RawConn::connect(&env.socket("server"));
    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"history\",\"params\":{\"limit\":2,\"failed\":true}}\n");
    let reply = conn.read_json_line();
    assert_eq!(reply["result"]["entries"].as_array().unwrap().len(), 2, "{reply}");
    let status = json(&env.server(&["status", "--json"]));
    assert_eq!(status["command_history_count"], 4);

    // A readable table, and the same history once the server is gone.
    env.server(&["stop"]).expect_code(0);
    let table = env.server(&["history"]);
    table.expect_code(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].contains("STARTED") && lines[0].contains("STATUS") && lines[0].contains("COMMAND"),
        "{}",
        table.stdout
    );
    assert!(lines.last().unwrap().ends_with("echo 'two words'"), "{}", table.stdout);
    assert!(table.stdout.contains("timed_out"), "{}", table.stdout);
}

#[test]
fn ids_go_on_across_restarts() {
    let env = TestEnv::new();
    let first = json(&env.client(&["-q", "--json", "hello"]));
    env.server(&["restart"]).expect_code(0);
    let second = json(&env.client(&["-q", "--json", "hello"]));
    assert!(second["id"].as_u64() > first["id"].as_u64(), "{first} then {second}");
    let all = json(&env.server(&["history", "--json"]));
    assert_eq!(all["entries"].as_array().unwrap().len(), 2);
}

#[test]
fn history_can_be_turned_off() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\nenable_command_history = false\n");
    env.client(&["-q", "hello"]).expect_code(0);
    let all = json(&env.server(&["history", "--json"]));
    assert_eq!(all["entries"], serde_json::json!([]));
    assert!(!history_db(&env).exists(), "no database is written");
    let status = json(&env.server(&["status", "--json"]));
    assert_eq!(status["command_history_count"], 0);
    assert_eq!(status["executed_total"], 1);
}

#[test]
fn retention_keeps_the_newest_entries() {
    let mut env = TestEnv::new();
    env.use_config("[server]\nhistory_max_entries = 3\n");
    for i in 0..5 {
        env.client(&["-q", "echo", &i.to_string()]).expect_code(0);
    }
    // Retention applies at start (and every few hundred rows while running).
    env.server(&["restart"]).expect_code(0);
    let all = json(&env.server(&["history", "--json"]));
    let args: Vec<&str> = all["entries"].as_array().unwrap().iter().map(|e| e["args"][0].as_str().unwrap()).collect();
    assert_eq!(args, vec!["4", "3", "2"]);
}

#[test]
fn a_history_from_a_newer_mcli_is_refused_untouched() {
    let env = TestEnv::new();
    let path = history_db(&env);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 42).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let run = env.server(&["start"]);
    run.expect_code(1);
    assert!(run.stderr.contains("was written by a newer mcli (schema 42, this one knows 3)"), "{}", run.stderr);
    let listing = env.server(&["history"]);
    listing.expect_code(1);
    assert!(listing.stderr.contains("newer mcli"), "{}", listing.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the database is not modified");
}

#[test]
fn nothing_acknowledged_is_lost_when_the_server_is_killed() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let pid = pid_of(&env);
    // Four clients call in a loop; each remembers the ids of the results it received.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = env.client_cmd(&["-q", "-a", "/bin/false", "--json", "echo", "x"]);
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                loop {
                    let run = Run::of(&mut cmd);
                    if run.code != Some(0) {
                        return ids;
                    }
                    let result: Value = serde_json::from_str(&run.stdout).unwrap();
                    ids.push(result["id"].as_u64().unwrap());
                }
            })
        })
        .collect();
    wait_until("some executions are recorded", || {
        let status = env.server(&["status", "--json"]);
        serde_json::from_str::<Value>(&status.stdout).is_ok_and(|s| s["executed_total"].as_u64() >= Some(40))
    });
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let acknowledged: Vec<u64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(acknowledged.len() >= 40, "{}", acknowledged.len());
    wait_until("the server is gone", || process_gone(pid));

    let conn = rusqlite::Connection::open(history_db(&env)).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let mut stmt = conn.prepare("SELECT 1 FROM executions WHERE id = ?1").unwrap();
    for id in acknowledged {
        assert!(stmt.exists([id as i64]).unwrap(), "execution {id} was acknowledged but is not in the history");
    }
}

#[test]
fn the_log_has_debug_request_lines_and_no_secrets() {
    let mut env = TestEnv::new();
    env.set_env("MCLI_API_DAEMON_DEBUG", "true");
    env.set_env("MY_SECRET", "hunter2-s3cr3t");
    let input = env.root.path().join("input");
    std::fs::write(&input, "stdin-s3cr3t\n").unwrap();
    let commands = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&commands).unwrap();
    let script = commands.join("swallow");
    std::fs::write(&script, "#!/bin/sh\ncat >/dev/null\necho done\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = Run::of(env.client_cmd(&["-q", "swallow"]).stdin(std::fs::File::open(&input).unwrap()));
    run.expect_code(0);
    env.client(&["-q", "hello"]).expect_code(0);
    let token = env.server_file("server")["token"].as_str().unwrap().to_owned();
    env.server(&["stop"]).expect_code(0);
    let log = env.log("server");
    assert!(log.contains("DEBUG") && log.contains("method=\"execute\"") && log.contains("duration_us="), "{log}");
    for secret in ["hunter2-s3cr3t", "stdin-s3cr3t", token.as_str()] {
        assert!(!log.contains(secret), "the log holds a secret: {log}");
    }
}

#[test]
fn a_large_log_is_rotated_when_the_server_starts() {
    let env = TestEnv::new();
    let log = env.state_home.join("mcli/server.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, vec![b'x'; 5 * 1024 * 1024]).unwrap();
    env.server(&["start"]).expect_code(0);
    let old = std::fs::metadata(env.state_home.join("mcli/server.log.1")).unwrap();
    assert_eq!(old.len(), 5 * 1024 * 1024);
    assert!(std::fs::metadata(&log).unwrap().len() < 64 * 1024);
}

#[test]
fn an_idle_server_exits() {
    let mut env = TestEnv::new();
    env.use_config("[server]\nidle_timeout = 1\n");
    env.client(&["-q", "sleep", "1.5"]).expect_code(0);
    let pid = pid_of(&env);
    wait_until("the idle server exits", || process_gone(pid));
    assert!(!env.socket("server").exists(), "it cleaned up");
    assert!(env.log("server").contains("idle; exiting"));
}

#[test]
fn a_connection_keeps_the_server_from_idling_out() {
    let mut env = TestEnv::new();
    env.use_config("[server]\nidle_timeout = 0.5\n");
    env.client(&["-q", "hello"]).expect_code(0);
    let pid = pid_of(&env);
    let mut conn = mcli_tests::RawConn::connect(&env.socket("server"));
    // Idle timeout of 0.5 s: an open connection for well over that keeps it up.
    let slow = Run::of(env.client_cmd(&["-q", "sleep", "1.5"]).stdout(Stdio::piped()));
    slow.expect_code(0);
    assert!(!process_gone(pid));
    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\"}\n");
    assert_eq!(conn.read_json_line()["result"]["status"], "healthy");
    drop(conn);
    wait_until("the idle server exits", || process_gone(pid));
}

#[test]
fn a_deleted_socket_is_recreated_by_the_same_server() {
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    let pid = pid_of(&env);
    std::fs::remove_file(env.socket("server")).unwrap();
    wait_until("the socket is back", || env.socket("server").exists());
    let run = env.client(&["hello", "again"]);
    run.expect_code(0);
    assert_eq!(run.stderr, "", "no new server was started");
    assert_eq!(pid_of(&env), pid);
    assert_eq!(env.server_pids(), vec![pid]);

    // The whole runtime dir, too.
    std::fs::remove_dir_all(&env.runtime_dir).unwrap();
    wait_until("the socket is back", || env.socket("server").exists());
    env.client(&["-q", "hello"]).expect_code(0);
    assert_eq!(env.server_pids(), vec![pid]);
}

#[test]
fn a_server_whose_name_was_taken_steps_aside() {
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    let pid = pid_of(&env);
    // Someone cleans the runtime dir and another server takes the name (here: holds its lock).
    std::fs::remove_dir_all(&env.runtime_dir).unwrap();
    env.create_runtime_dir();
    let lock = std::fs::File::create(env.runtime_dir.join("server.lock")).unwrap();
    lock.try_lock().unwrap();
    wait_until("the old server exits", || process_gone(pid));
    assert!(env.log("server").contains("another server has taken the name"));
}

#[test]
fn rust_log_sets_the_level_and_a_bad_one_is_reported() {
    let mut env = TestEnv::new();
    env.set_env("RUST_LOG", "debug");
    env.client(&["-q", "hello"]).expect_code(0);
    env.server(&["stop"]).expect_code(0);
    let log = env.log("server");
    assert!(log.contains("DEBUG") && log.contains("method=\"execute\""), "RUST_LOG=debug logs requests: {log}");

    let mut env = TestEnv::new();
    env.set_env("RUST_LOG", "mcli=loud");
    env.client(&["-q", "hello"]).expect_code(0);
    env.server(&["stop"]).expect_code(0);
    let log = env.log("server");
    assert!(
        log.contains("RUST_LOG=\"mcli=loud\" is not a log filter") && log.contains("logging at the default level"),
        "{log}"
    );
    assert!(!log.contains("DEBUG"), "the default level is info: {log}");
}

/// The id of one `hello` run through the server, from `--json`.
fn hello_id(env: &TestEnv) -> u64 {
    json(&env.client(&["-q", "--json", "hello"]))["id"].as_u64().expect("id")
}

/// Ids reserved in the runtime dir, when the history cannot be written, start here.
const SPARE_BASE: u64 = 1 << 52;

#[test]
fn a_history_that_cannot_be_opened_does_not_stop_the_server_and_ids_stay_unique() {
    let env = TestEnv::new();
    // A directory where the database should be: the history cannot be opened.
    std::fs::create_dir_all(history_db(&env)).unwrap();
    let degraded: Vec<u64> = (0..3).map(|_| hello_id(&env)).collect();
    assert!(degraded.iter().all(|id| (SPARE_BASE..1 << 53).contains(id)), "{degraded:?}");
    assert!(env.log("server").contains("executions are answered but not recorded"), "{}", env.log("server"));
    // A second server in the same state reserves further on.
    env.server(&["stop"]).expect_code(0);
    let again = hello_id(&env);
    assert!(!degraded.contains(&again) && again > degraded[2], "{again} after {degraded:?}");
    // Once the history can be written, its ids are its own, below the spare range.
    env.server(&["stop"]).expect_code(0);
    std::fs::remove_dir(history_db(&env)).unwrap();
    let recorded = hello_id(&env);
    assert!(recorded < SPARE_BASE, "{recorded}");
    let history = json(&env.server(&["history", "--json"]));
    assert_eq!(history["entries"].as_array().unwrap().len(), 1, "{history}");
}

/// A tmpfs mounted over a test's state dir, unmounted when dropped (lazily: a server may still
/// hold a file open on it).
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &std::path::Path, size: &str) -> Mount {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts a small tmpfs to fill a disk: run the test suite as root (CI does)"
        );
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(status.success(), "cannot mount a tmpfs at {}", at.display());
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until a write fails for want of space.
fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).and_then(|()| file.sync_all()).is_ok() {}
}

#[test]
fn a_full_state_disk_serves_without_recording_and_never_reuses_an_id() {
    let env = TestEnv::new();
    let _mount = Mount::tmpfs(&env.state_home, "512k");
    fill(&env.state_home);
    let degraded: Vec<u64> = (0..3).map(|_| hello_id(&env)).collect();
    assert!(degraded.iter().all(|id| *id >= SPARE_BASE), "served with ids from the runtime dir: {degraded:?}");
    env.server(&["stop"]).expect_code(0);
    // Space again: the next server records, with ids of the history's own.
    std::fs::remove_file(env.state_home.join("filler")).unwrap();
    let recorded: Vec<u64> = (0..3).map(|_| hello_id(&env)).collect();
    assert!(recorded.iter().all(|id| *id < SPARE_BASE && !degraded.contains(id)), "{recorded:?}");
    let history = json(&env.server(&["history", "--json"]));
    let ids: Vec<u64> = history["entries"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "only what was recorded: {history}");
    env.server(&["stop"]).expect_code(0);
}

#[test]
fn stdio_sessions_that_start_together_on_a_new_history_all_serve() {
    use std::io::{BufRead, Write};
    let env = TestEnv::new();
    // Eight editors open mcli at once, before any history exists: each creates or migrates it.
    let mut sessions: Vec<_> = (0..8)
        .map(|_| env.server_cmd(&["--stdio"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap())
        .collect();
    for session in &mut sessions {
        let request = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"execute\",\"params\":{\"command\":\"echo\",\"args\":[\"hi\"]}}\n";
        session.stdin.as_mut().unwrap().write_all(request).unwrap();
    }
    for session in &mut sessions {
        let mut reader = std::io::BufReader::new(session.stdout.take().unwrap());
        let reply = loop {
            let mut line = String::new();
            assert_ne!(reader.read_line(&mut line).unwrap(), 0, "the session ended without answering");
            if line.contains("\"result\"") {
                break line;
            }
        };
        assert!(reply.contains("\"status\":\"completed\""), "{reply}");
        drop(session.stdin.take());
        assert!(session.wait().unwrap().success());
    }
    let history = json(&env.server(&["history", "--json"]));
    assert_eq!(history["entries"].as_array().unwrap().len(), 8, "{history}");
}

#[test]
fn mcli_server_history_pages_with_before() {
    let env = TestEnv::new();
    for word in ["one", "two", "three"] {
        env.client(&["-q", "echo", word]).expect_code(0);
    }
    let ids = |run: &Run| -> Vec<u64> {
        json(run)["entries"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect()
    };
    let all = ids(&env.server(&["history", "--json"]));
    assert_eq!(all.len(), 3);
    let older = ids(&env.server(&["history", "--json", "--before", &all[0].to_string()]));
    assert_eq!(older, all[1..].to_vec());
}

#[test]
fn the_history_table_marks_cached_results_in_a_column_with_a_legend() {
    let env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stamp.toml"), "run = [\"date\", \"+%N\"]\n[cache]\nttl = 60\n").unwrap();
    env.client(&["-q", "stamp"]).expect_code(0);
    env.client(&["-q", "stamp"]).expect_code(0);
    let table = env.server(&["history"]);
    table.expect_code(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].contains("CACHED"), "{}", table.stdout);
    assert!(!lines[1].contains(" yes "), "the first run ran: {}", table.stdout);
    assert!(lines[2].contains(" yes "), "the newest, at the bottom, came from the cache: {}", table.stdout);
    assert!(table.stdout.contains("CACHED yes: the result came from the result cache"), "{}", table.stdout);
}
