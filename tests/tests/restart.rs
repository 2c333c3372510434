//! Restarts that lose nothing: `mcli-server restart` hands the listening sockets to the new
//! server, so calls made meanwhile all succeed; calls running on the old server finish there;
//! TCP clients keep their token. And the service manager's side of the same protocol: a socket
//! passed by `systemd-socket-activate`, readiness and reloads told through `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mcli_tests::{TestEnv, WAIT, process_gone, wait_until};

fn pid_of(env: &TestEnv) -> u64 {
    env.server_file("server")["pid"].as_u64().expect("pid in the server file")
}

#[test]
fn restart_hands_the_socket_over_and_no_call_fails() {
    let env = Arc::new(TestEnv::new());
    env.server(&["start"]).expect_code(0);
    let first = pid_of(&env);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..8)
        .map(|n| {
            let (env, stop, calls) = (Arc::clone(&env), Arc::clone(&stop), Arc::clone(&calls));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let run = env.client(&["hello", &format!("loop{n}")]);
                    if run.code != Some(0) || !run.stdout.contains(&format!("Hello loop{n}!")) {
                        failures.push(format!("exit {:?}: {}{}", run.code, run.stdout, run.stderr));
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    wait_until("the clients to be calling", || calls.load(Ordering::SeqCst) >= 16);
    let mut pids = vec![first];
    for _ in 0..3 {
        let restart = env.server(&["restart"]);
        restart.expect_code(0);
        assert!(restart.stdout.contains("listening on"), "{}", restart.stdout);
        let now = pid_of(&env);
        assert!(!pids.contains(&now), "a new server each time: {pids:?} then {now}");
        pids.push(now);
        let at = calls.load(Ordering::SeqCst);
        wait_until("calls through the new server", || calls.load(Ordering::SeqCst) >= at + 16);
    }
    stop.store(true, Ordering::SeqCst);
    let failures: Vec<String> = loops.into_iter().flat_map(|l| l.join().expect("client loop")).collect();
    assert!(failures.is_empty(), "{} of {} calls failed: {failures:#?}", failures.len(), calls.load(Ordering::SeqCst));
    let last = *pids.last().expect("pids");
    wait_until("the old servers to exit", || env.server_pids() == vec![last as u32]);
    let log = env.log("server");
    assert!(log.contains("handed the listeners over"), "{log}");
}

#[test]
fn a_call_running_during_a_restart_finishes_on_the_old_server() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let old = pid_of(&env);
    let slow = env.client_cmd(&["sleep", "2"]).stdout(Stdio::piped()).spawn().expect("spawn the slow call");
    env.wait_for_active(mcli_tests::Active::Count(1));
    let restart = env.server(&["restart"]);
    restart.expect_code(0);
    assert!(
        restart.stdout.contains(&format!("the previous server (pid {old}) finishes its 1 running command, then exits")),
        "{}",
        restart.stdout
    );
    let new = pid_of(&env);
    assert_ne!(old, new);
    // The new server answers while the old one still runs the call.
    env.client(&["hello", "new"]).expect_code(0);
    assert!(!process_gone(old as u32), "the old server waits for its call");
    let done = slow.wait_with_output().expect("the slow call");
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    wait_until("the old server to exit", || process_gone(old as u32));
    // The name is the new server's: it stops cleanly and removes its files.
    env.server(&["stop"]).expect_code(0);
    assert!(!env.socket("server").exists());
}

#[test]
fn tcp_clients_keep_the_token_and_the_address_across_a_restart() {
    let env = TestEnv::new();
    env.server(&["start", "--tcp", "127.0.0.1:0"]).expect_code(0);
    let before = env.server_file("server");
    env.server(&["restart"]).expect_code(0);
    let after = env.server_file("server");
    assert_ne!(before["pid"], after["pid"]);
    assert_eq!(before["token"], after["token"], "the token carries over");
    assert_eq!(before["tcp"], after["tcp"]);
    let file = env.runtime_dir.join("server.json");
    let run = env.client(&["-f", file.to_str().expect("utf-8"), "hello", "tcp"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Hello tcp!"), "{}", run.stdout);
}

#[test]
fn handover_is_refused_over_tcp() {
    let env = TestEnv::new();
    env.server(&["start", "--tcp", "127.0.0.1:0"]).expect_code(0);
    let file = env.server_file("server");
    let addr = file["tcp"].as_str().expect("tcp address").to_owned();
    let token = file["token"].as_str().expect("token").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect over TCP");
    use std::io::{BufRead, BufReader, Write};
    let auth = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"authenticate","params":{{"token":"{token}"}}}}"#);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"handover","params":{"program":"/bin/true"}}"#;
    writeln!(stream, "{auth}\n{call}").expect("send");
    let mut lines = BufReader::new(stream).lines();
    let _authenticated = lines.next().expect("auth reply").expect("read");
    let reply = lines.next().expect("handover reply").expect("read");
    assert!(reply.contains("`handover` is served on the local socket only, not over tcp"), "{reply}");
}

#[test]
fn a_successor_that_cannot_start_leaves_the_old_server_serving() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let old = pid_of(&env);
    let mut conn = mcli_tests::RawConn::connect(&env.socket("server"));
    conn.send(
        br#"{"jsonrpc":"2.0","id":1,"method":"handover","params":{"program":"/nonexistent/mcli-server"}}
"#,
    );
    let reply = conn.read_json_line();
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the new server did not start, so this one goes on serving")
            && message.contains("/nonexistent/mcli-server"),
        "{reply}"
    );
    assert_eq!(pid_of(&env), old);
    env.client(&["hello"]).expect_code(0);
}

/// `systemd-socket-activate`, from Debian's systemd package (scripts/test.sh installs it).
fn socket_activate() -> Command {
    let found = Command::new("systemd-socket-activate").arg("--version").output();
    assert!(
        found.is_ok_and(|out| out.status.success()),
        "systemd-socket-activate is missing: install Debian's systemd package (scripts/test.sh does, as root)"
    );
    Command::new("systemd-socket-activate")
}

#[test]
fn a_socket_from_the_service_manager_is_served_and_kept() {
    let env = TestEnv::new();
    env.create_runtime_dir();
    let socket = env.socket("server");
    let mut activate = socket_activate();
    activate.arg("-l").arg(&socket).arg("--fdname=socket");
    for var in ["PATH", "HOME", "MCLI_RUNTIME_DIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_STATE_HOME"] {
        activate.arg(format!("-E{var}"));
    }
    let probe = env.server_cmd(&[]);
    for (key, value) in probe.get_envs() {
        if let (key, Some(value)) = (key.to_string_lossy(), value) {
            activate.env(key.as_ref(), value);
        }
    }
    activate.arg(env.bin("mcli-server")).args(["start", "--foreground"]);
    let said = env.root.path().join("activate.log");
    let log = std::fs::File::create(&said).expect("create the log");
    activate.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let mut manager = activate.spawn().expect("spawn systemd-socket-activate");
    let said = || std::fs::read_to_string(&said).unwrap_or_default();
    wait_until("systemd-socket-activate to listen", || said().contains("Listening on"));
    // The first client's connection starts the server, which takes the socket as it is.
    let run = env.client(&["hello", "activated"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Hello activated!"), "{}{}\n{}", run.stdout, run.stderr, said());
    // systemd-socket-activate execs the server in its own place: the process that made the
    // socket listen is the server.
    let file = env.server_file("server");
    assert_eq!(file["pid"].as_u64(), Some(u64::from(manager.id())), "{file}\n{}", said());
    env.server(&["stop"]).expect_code(0);
    let exited = manager.wait().expect("wait for the server");
    assert!(exited.success(), "{exited:?}\n{}", said());
    assert!(socket.exists(), "the service manager's socket stays for the next activation");
    assert!(!env.runtime_dir.join("server.json").exists(), "the server file is removed");
    // With no manager listening any more, a client replaces the socket with a server of its own.
    env.client(&["hello", "again"]).expect_code(0);
}

#[test]
fn readiness_reloads_and_stopping_are_told_to_the_service_manager() {
    let mut env = TestEnv::new();
    let notify = env.root.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).expect("bind the notify socket");
    listener.set_read_timeout(Some(WAIT)).expect("timeout");
    env.set_env("NOTIFY_SOCKET", &notify);
    let (pid, _line) = env.foreground_server(&[]);
    let mut said = Vec::new();
    let mut next = || {
        let mut buf = [0u8; 4096];
        let n = listener.recv(&mut buf).expect("a notification within the wait");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        said.push(text.clone());
        text
    };
    assert!(next().contains("READY=1"));
    env.server(&["reload"]).expect_code(0);
    let reloading = next();
    assert!(reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(next().contains("READY=1"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).expect("kill");
    assert!(next().contains("STOPPING=1"));
    let mut child = env.take_child(pid);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_descriptor_that_is_no_listening_socket_is_refused_with_the_reason() {
    let env = TestEnv::new();
    // A file where the protocol says a socket is.
    let mut shell = env.command("bash");
    shell
        .arg("-c")
        .arg(r#"exec 3</etc/hostname; LISTEN_FDS=1 exec "$0" start --foreground"#)
        .arg(env.bin("mcli-server"));
    let run = mcli_tests::Run::of(&mut shell);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains("descriptor 3 handed over by the service manager is not a listening stream socket"),
        "{}",
        run.stderr
    );

    // A connection (systemd's Accept=yes) where a listening socket is expected.
    env.create_runtime_dir();
    let socket = env.socket("server");
    let log = env.root.path().join("activate.log");
    let mut activate = socket_activate();
    activate.arg("--accept").arg("-l").arg(&socket);
    for (key, value) in env.server_cmd(&[]).get_envs() {
        if let Some(value) = value {
            activate.env(key, value);
        }
        activate.arg(format!("-E{}", key.to_string_lossy()));
    }
    activate.arg(env.bin("mcli-server")).args(["start", "--foreground"]);
    activate.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log).expect("log"));
    let mut manager = activate.spawn().expect("spawn systemd-socket-activate");
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("systemd-socket-activate to listen", || said().contains("Listening on"));
    let _ = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    wait_until("the server to refuse the connection it was given", || {
        said()
            .contains("descriptor 3 handed over is a connection, not a listening socket (with systemd, use Accept=no)")
    });
    let _ = manager.kill();
    let _ = manager.wait();
}

/// The units in contrib/systemd, with `ExecStart` pointing at the binary under test.
fn units(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.root.path().join("units");
    std::fs::create_dir_all(&dir).expect("units dir");
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd");
    for unit in ["mcli.socket", "mcli.service"] {
        let text = std::fs::read_to_string(contrib.join(unit)).expect("read the unit");
        let text = text.replace("%h/.cargo/bin/mcli-server", &env.bin("mcli-server").display().to_string());
        std::fs::write(dir.join(unit), text).expect("write the unit");
    }
    dir
}

#[test]
fn the_systemd_units_verify_and_their_socket_is_where_clients_look() {
    let env = TestEnv::new();
    let dir = units(&env);
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("mcli.socket"))
        .arg(dir.join("mcli.service"))
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/test.sh installs it)");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && !said.contains("mcli."), "systemd-analyze verify: {said}");

    // The socket unit listens where a client looks with no MCLI_RUNTIME_DIR: %t is
    // $XDG_RUNTIME_DIR, and systemd makes the folder with DirectoryMode=0700.
    let unit = std::fs::read_to_string(dir.join("mcli.socket")).expect("read");
    let listen = unit.lines().find_map(|l| l.strip_prefix("ListenStream=")).expect("ListenStream");
    let xdg = env.root.path().join("xdg-rt");
    let socket = std::path::PathBuf::from(listen.replace("%t", &xdg.display().to_string()));
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(socket.parent().expect("dir")).expect("mkdir");
    let exec = unit_exec_start(&dir.join("mcli.service"));
    let log = env.root.path().join("activate.log");
    let mut activate = socket_activate();
    activate.arg("-l").arg(&socket).arg("--fdname=socket");
    let mut server = env.server_cmd(&[]);
    server.env_remove("MCLI_RUNTIME_DIR");
    for (key, value) in server.get_envs() {
        if let Some(value) = value {
            activate.env(key, value);
            activate.arg(format!("-E{}", key.to_string_lossy()));
        }
    }
    activate.args(&exec).stdin(Stdio::null()).stdout(Stdio::null());
    activate.stderr(std::fs::File::create(&log).expect("log"));
    let mut manager = activate.spawn().expect("spawn systemd-socket-activate");
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("systemd-socket-activate to listen", || said().contains("Listening on"));
    let mut client = env.client_cmd(&["hello", "unit"]);
    client.env_remove("MCLI_RUNTIME_DIR");
    let run = mcli_tests::Run::of(&mut client);
    assert!(run.stdout.contains("Hello unit!"), "{}{}\n{}", run.stdout, run.stderr, said());
    let mut stop = env.server_cmd(&["stop"]);
    stop.env_remove("MCLI_RUNTIME_DIR");
    mcli_tests::Run::of(&mut stop).expect_code(0);
    assert!(manager.wait().expect("wait").success());
}

/// The `ExecStart` command line of a service unit, split on spaces (the units use no quoting).
fn unit_exec_start(unit: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(unit).expect("read the unit");
    let line = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_launchd_agent_is_a_valid_property_list() {
    let plist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/launchd/dev.mcli.server.plist");
    let check = "import plistlib, sys; p = plistlib.load(open(sys.argv[1], 'rb')); print(p['Label'], ' '.join(p['ProgramArguments'][1:]))";
    let out = Command::new("python3").args(["-c", check]).arg(&plist).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "dev.mcli.server start --foreground");
}

/// A copy of `mcli-server` that says it is of another release: the version string patched in
/// place (same length), as a build of another release would report it.
fn server_of_another_release(env: &TestEnv) -> (std::path::PathBuf, String) {
    let mine = env!("CARGO_PKG_VERSION");
    let other: String = mine.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    assert_ne!(mine, other);
    let bytes = std::fs::read(env.bin("mcli-server")).expect("read mcli-server");
    let (from, to) = (mine.as_bytes(), other.as_bytes());
    let mut patched = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(from) {
            patched.extend_from_slice(to);
            at += from.len();
        } else {
            patched.push(bytes[at]);
            at += 1;
        }
    }
    let dir = env.root.path().join("old");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("mcli-server");
    std::fs::write(&path, patched).expect("write the copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (path, other)
}

#[test]
fn a_client_of_a_new_release_restarts_an_idle_server_of_an_old_one() {
    let env = TestEnv::new();
    let (old_server, old_release) = server_of_another_release(&env);
    let started = mcli_tests::Run::of(env.command(&old_server).arg("start"));
    started.expect_code(0);
    let old = env.server_file("server");
    assert_eq!(old["version"], old_release.as_str());
    let run = env.client(&["hello", "upgraded"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Hello upgraded!"), "{}", run.stdout);
    let mine = env!("CARGO_PKG_VERSION");
    assert!(
        run.stderr.contains(&format!("restarted mcli-server (mcli {old_release}, pid {}) as mcli {mine}", old["pid"])),
        "{}",
        run.stderr
    );
    let new = env.server_file("server");
    assert_eq!(new["version"], mine);
    assert_ne!(new["pid"], old["pid"]);
    // Now they match: nothing more is said.
    let again = env.client(&["hello"]);
    assert_eq!(again.stderr, "", "{}", again.stderr);
}

#[test]
fn a_client_of_a_new_release_says_so_while_the_old_server_is_busy() {
    let env = TestEnv::new();
    let (old_server, old_release) = server_of_another_release(&env);
    mcli_tests::Run::of(env.command(&old_server).arg("start")).expect_code(0);
    let pid = env.server_file("server")["pid"].clone();
    // A call of a client of the old release (a raw one here), still running.
    let mut slow = mcli_tests::RawConn::connect(&env.socket("server"));
    slow.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"execute\",\"params\":{\"command\":\"sleep\",\"args\":[\"3\"]}}\n",
    );
    env.wait_for_active(mcli_tests::Active::Count(1));
    let run = env.client(&["hello", "busy"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Hello busy!"), "the call goes on: {}", run.stdout);
    let mine = env!("CARGO_PKG_VERSION");
    assert!(
        run.stderr.contains(&format!(
            "mcli-client: this client is mcli {mine}, the running server (pid {pid}) is mcli {old_release}; it runs 1 command; restart it with `mcli-server restart` once they have finished"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(env.server_file("server")["pid"], pid, "not restarted under a running command");
    let quiet = env.client(&["-q", "hello"]);
    assert!(!quiet.stderr.contains("this client is"), "-q silences it: {}", quiet.stderr);
    assert_eq!(slow.read_json_line()["result"]["exit_code"], 0);
}

#[test]
fn the_metrics_listener_is_handed_over_too() {
    let mut env = TestEnv::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.use_config(&format!("[api_daemon]\nmetrics_addr = \"127.0.0.1:{port}\"\n"));
    env.server(&["start"]).expect_code(0);
    let restart = env.server(&["restart"]);
    restart.expect_code(0);
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the metrics listener");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn a_job_running_across_a_restart_is_followed_from_the_new_server() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let go = env.root.path().join("go");
    let script = dir.join("slowjob");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho one\nwhile [ ! -e {} ]; do sleep 0.05; done\necho two\nexit 3\n", go.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.server(&["start"]).expect_code(0);
    let detached = env.client(&["-d", "slowjob"]);
    detached.expect_code(0);
    let id = detached.stdout.trim().to_owned();
    env.server(&["restart"]).expect_code(0);
    // The old server runs the job on; the new one follows it through its files.
    let attach = env.client_cmd(&["--attach", &id]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::fs::write(&go, "").unwrap();
    let out = attach.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_job_running_on_the_previous_server_is_cancelled_from_the_new_one() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let detached = env.client(&["-d", "sleep", "120"]);
    detached.expect_code(0);
    let id = detached.stdout.trim().to_owned();
    let old = env.server_pids();
    env.server(&["restart"]).expect_code(0);
    let cancel = env.server(&["cancel", &id]);
    cancel.expect_code(0);
    // The old server ends the job as cancelled, as if it had been asked directly, and exits.
    let attach = env.client(&["--attach", &id]);
    attach.expect_code(130);
    let jobs = env.server(&["jobs", "--json"]);
    let jobs: serde_json::Value = serde_json::from_str(&jobs.stdout).unwrap();
    let job = jobs["jobs"]
        .as_array()
        .expect("a list of jobs")
        .iter()
        .find(|j| j["id"].as_u64().map(|n| n.to_string()) == Some(id.clone()))
        .expect("the job is listed");
    assert_eq!(job["state"], "cancelled", "{job}");
    wait_until("the previous server has exited", || old.iter().all(|pid| process_gone(*pid)));
    // A job that runs nowhere any more cannot be cancelled again.
    let again = env.server(&["cancel", &id]);
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains(&format!("nothing runs with id {id}")), "{again:?}");
}
