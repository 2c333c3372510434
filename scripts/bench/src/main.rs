//! `mcli-bench`: measures mcli against baselines run side by side in the same run, and prints
//! the figures as a Markdown table for BENCHMARKS.md. Run it with `scripts/bench/run.sh`, which
//! builds the release binaries first.
//!
//! - round trip: a warm `mcli-client hello` and `/bin/true`, interleaved, as a ratio of medians;
//! - cold start: `mcli-client hello` that has to start the server first (median of several);
//! - idle memory: the server's resident set after the warm calls;
//! - script overhead: a trivial script run directly and through `mcli-client`, interleaved;
//! - throughput: built-in `execute` calls over 8 persistent connections at once;
//! - jobs: the `--detach` round trip, and following a job that writes 1 GiB (`jobs.rs`).
//! - streams: the client's streams passed against streamed through the server (`streams.rs`);
//!   `MCLI_BENCH_ONLY=streams` runs only these.
//!
//! `mcli-bench --compare OLD_BIN_DIR NEW_BIN_DIR` instead measures two builds side by side
//! (`scripts/bench/compare.sh REF` builds REF and compares it with the work tree).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mcli_protocol::ServerFile;

mod compare;
mod jobs;
mod streams;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations: usize = std::env::var("MCLI_BENCH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    if let [flag, old, new] = args.as_slice()
        && flag == "--compare"
    {
        return compare::run(Path::new(old), Path::new(new), iterations);
    }
    let bins = match args.first() {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from("target/release"),
    };
    let bench = Bench::new(&bins)?;
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    if std::env::var("MCLI_BENCH_ONLY").is_ok_and(|only| only == "streams") {
        return streams::run(&bench, iterations);
    }

    bench.client(&["-q", "hello"]).status().context("first call")?;
    if std::env::var("MCLI_BENCH_ONLY").is_ok_and(|only| only == "jobs") {
        // The jobs figures alone (`MCLI_BENCH_ONLY=jobs scripts/bench/run.sh`).
        return jobs::run(&bench, iterations);
    }
    let truth = Path::new("/bin/true");
    let (mut client, mut baseline, mut version) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iterations {
        baseline.push(time(&mut Command::new(truth))?);
        client.push(time(&mut bench.client(&["hello"]))?);
        version.push(time(&mut bench.client(&["--version"]))?);
    }
    let (c, b, v) = (median(&mut client), median(&mut baseline), median(&mut version));
    println!("| `/bin/true` (median of {iterations}) | {} |", ms(b));
    println!("| `mcli-client --version`, no connection (median) | {} |", ms(v));
    println!("| warm `mcli-client hello` (median) | {} |", ms(c));
    println!("| **warm round trip / `/bin/true`** | **{:.2}x** |", c.as_secs_f64() / b.as_secs_f64());
    println!("| `mcli-client --version` / `/bin/true` | {:.2}x |", v.as_secs_f64() / b.as_secs_f64());

    let pid = bench.server_pid()?;
    std::thread::sleep(Duration::from_millis(200));
    println!("| server RSS at idle after {} calls | {} |", 2 * iterations + 1, kib(rss_kib(pid, "VmRSS")?));
    println!("| of which private (anonymous) memory | {} |", kib(rss_kib(pid, "RssAnon")?));

    // A trivial script, run directly and through the server, interleaved.
    let commands = bench.dir.path().join("cfg/mcli/commands");
    std::fs::create_dir_all(&commands)?;
    let script = commands.join("trivial");
    std::fs::write(&script, "#!/bin/sh\n:\n")?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    let rounds = iterations.min(500);
    for _ in 0..rounds {
        direct.push(time(&mut Command::new(&script))?);
        through.push(time(&mut bench.client(&["trivial"]))?);
    }
    let (d, t) = (median(&mut direct), median(&mut through));
    println!("| trivial script run directly (median of {rounds}) | {} |", ms(d));
    println!("| the same script through `mcli-client` (median) | {} |", ms(t));
    println!("| **script through mcli / direct** | **{:.2}x** |", t.as_secs_f64() / d.as_secs_f64());

    let per_connection = (iterations * 10).max(1000);
    let rate = throughput(&bench.dir.path().join("rt/server.sock"), 8, per_connection, "echo")?;
    println!(
        "| built-in `execute` calls, 8 persistent connections ({} calls) | {:.0} calls/s |",
        8 * per_connection,
        rate
    );

    // History on (the server above) and off (a second server), alternating, best of three each.
    let config = bench.dir.path().join("no-history.toml");
    std::fs::write(&config, "[api_daemon]\nenable_command_history = false\n")?;
    let started = bench
        .command("mcli-server", &["--socket-name", "nohist", "--config", config.to_str().unwrap_or_default(), "start"])
        .status()?;
    if !started.success() {
        bail!("cannot start the second server");
    }
    let (on_sock, off_sock) = (bench.dir.path().join("rt/server.sock"), bench.dir.path().join("rt/nohist.sock"));
    for (command, calls, what) in [("echo", per_connection, "built-in `echo`"), ("trivial", 100, "trivial script")] {
        let (mut on, mut off) = (0f64, 0f64);
        for _ in 0..3 {
            on = on.max(throughput(&on_sock, 8, calls, command)?);
            off = off.max(throughput(&off_sock, 8, calls, command)?);
        }
        println!("| {what}: `execute` throughput with history on / off (best of 3) | {on:.0} / {off:.0} calls/s |");
        println!("| **{what}: history cost** (1 - on/off) | **{:.1}%** |", (1.0 - on / off) * 100.0);
    }
    bench.command("mcli-server", &["--socket-name", "nohist", "stop"]).status()?;

    streams::run(&bench, iterations)?;
    warm_worker(&bench)?;
    idle_connections(&bench, 1000)?;
    http(&bench)?;
    jobs::run(&bench, iterations)?;

    let mut cold = Vec::new();
    for _ in 0..20 {
        bench.stop()?;
        cold.push(time(&mut bench.client(&["-q", "hello"]))?);
    }
    println!("| cold `mcli-client hello`, server started on demand (median of 20) | {} |", ms(median(&mut cold)));
    let pid = bench.server_pid()?;
    println!("| server RSS right after a cold start | {} |", kib(rss_kib(pid, "VmRSS")?));
    bench.stop()?;
    Ok(())
}

/// A private environment (runtime, config and state dirs) for the binaries under test.
struct Bench {
    bins: PathBuf,
    dir: tempfile::TempDir,
}

impl Bench {
    fn new(bins: &Path) -> anyhow::Result<Self> {
        for name in ["mcli-client", "mcli-server"] {
            if !bins.join(name).is_file() {
                bail!("{} is missing; run `cargo build --release` first", bins.join(name).display());
            }
        }
        let dir = tempfile::Builder::new().prefix("mb").tempdir_in("/tmp")?;
        Ok(Bench { bins: bins.to_owned(), dir })
    }

    fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bins.join(name));
        let root = self.dir.path();
        cmd.args(args)
            .env("MCLI_RUNTIME_DIR", root.join("rt"))
            .env("XDG_CONFIG_HOME", root.join("cfg"))
            .env("XDG_STATE_HOME", root.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn client(&self, args: &[&str]) -> Command {
        self.command("mcli-client", args)
    }

    fn stop(&self) -> anyhow::Result<()> {
        let status = self.command("mcli-server", &["stop"]).status()?;
        if !status.success() {
            bail!("mcli-server stop failed");
        }
        Ok(())
    }

    /// The server file of the server named `name`.
    fn server_file(&self, name: &str) -> anyhow::Result<ServerFile> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("rt/{name}.json")))?;
        Ok(ServerFile::parse(&text)?)
    }

    fn server_pid(&self) -> anyhow::Result<u32> {
        Ok(self.server_file("server")?.pid)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Calls `execute COMMAND x` over `connections` persistent connections at once, each waiting for
/// every result before the next call; returns calls per second.
fn throughput(socket: &Path, connections: usize, calls: usize, command: &str) -> anyhow::Result<f64> {
    use mcli_client::connection::Connection;
    use mcli_protocol::ExecuteParams;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(connections + 1));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let mut conn = Connection::connect(socket)?;
            let barrier = std::sync::Arc::clone(&barrier);
            let command = command.to_owned();
            Ok(std::thread::spawn(move || -> anyhow::Result<()> {
                let params = ExecuteParams { command, args: vec!["x".into()], ..Default::default() };
                barrier.wait();
                for _ in 0..calls {
                    let result = conn.execute(&params, |_| Ok(()))?;
                    if result.exit_code != Some(0) {
                        bail!("the command failed: {result:?}");
                    }
                }
                Ok(())
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    barrier.wait();
    let start = Instant::now();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    Ok((connections * calls) as f64 / start.elapsed().as_secs_f64())
}

/// The example model worker (300 ms start): a warm call through `mcli-client` against running
/// the same script cold, one call per process, interleaved.
fn warm_worker(bench: &Bench) -> anyhow::Result<()> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/model");
    let commands = bench.dir.path().join("cfg/mcli/commands");
    std::fs::copy(example.join("model.toml"), commands.join("model.toml"))?;
    std::fs::copy(example.join("model.py"), commands.join("model.py"))?;
    bench.client(&["-q", "model", "warm-up"]).status()?;
    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        warm.push(time(&mut bench.client(&["model", "x"]))?);
        // Cold: the worker script started for one call and ended, as without a daemon.
        cold.push(time(bench.client(&["model", "x"]).env("MCLI_DAEMON_ROUTING", "false"))?);
    }
    let (w, c) = (median(&mut warm), median(&mut cold));
    println!("| worker command (300 ms start): warm call through the server (median of 10) | {} |", ms(w));
    println!("| the same command cold, started for the call (median of 10) | {} |", ms(c));
    println!("| **cold / warm** | **{:.0}x** |", c.as_secs_f64() / w.as_secs_f64());
    Ok(())
}

/// Server memory with `count` idle connections open (each has made one call).
fn idle_connections(bench: &Bench, count: usize) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let pid = bench.server_pid()?;
    let before = rss_kib(pid, "VmRSS")?;
    let socket = bench.dir.path().join("rt/server.sock");
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket)?;
        stream.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\"}\n")?;
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply)?;
        if !reply.contains("healthy") {
            bail!("unexpected reply: {reply}");
        }
        open.push(stream);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (rss, anon) = (rss_kib(pid, "VmRSS")?, rss_kib(pid, "RssAnon")?);
    println!("| server RSS with {count} idle connections open (before: {}) | {} |", kib(before), kib(rss));
    println!("| of which private (anonymous) memory | {} |", kib(anon));
    drop(open);
    Ok(())
}

/// HTTP throughput with wrk (from Debian's packages), when it is installed.
fn http(bench: &Bench) -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        println!("| HTTP throughput | skipped: wrk is not installed |");
        return Ok(());
    }
    let started = bench.command("mcli-server", &["--socket-name", "web", "start", "--http"]).status()?;
    if !started.success() {
        bail!("cannot start the HTTP server");
    }
    let file = bench.server_file("web")?;
    let (addr, token) = (file.http.context("the server file has no HTTP address")?, file.token);
    let script = bench.dir.path().join("execute.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"command_name\":\"echo\",\"args\":[\"x\"]}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )?;
    for (what, path, extra) in
        [("GET /health", "/health", None), ("POST /execute (built-in echo)", "/execute", Some(&script))]
    {
        let mut cmd = Command::new("wrk");
        cmd.args(["-t2", "-c16", "-d5s", "-H", &format!("X-API-Key: {token}")]);
        if let Some(script) = extra {
            cmd.arg("-s").arg(script);
        }
        let out = cmd.arg(format!("http://{addr}{path}")).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rate = text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).map(str::trim).unwrap_or("?");
        let errors =
            text.lines().find(|l| l.contains("Non-2xx")).map(|l| format!(" ({})", l.trim())).unwrap_or_default();
        println!("| HTTP {what}, wrk 2 threads 16 connections 5 s | {rate} requests/s{errors} |");
    }
    bench.command("mcli-server", &["--socket-name", "web", "stop"]).status()?;
    Ok(())
}

fn time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = cmd.status()?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(elapsed)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn kib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / 1024.0)
}

/// A memory figure of process `pid` from /proc (`VmRSS`, `RssAnon`, ...), in KiB.
fn rss_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':'))).context("field")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}
