//! `mcli-bench`: measures mcli against baselines run side by side in the same run, and prints
//! the figures as a Markdown table for BENCHMARKS.md. Run it with `scripts/bench/run.sh`, which
//! builds the release binaries first.
//!
//! - round trip: a warm `mcli-client hello` and `/bin/true`, interleaved, as a ratio of medians;
//! - cold start: `mcli-client hello` that has to start the server first (median of several);
//! - idle memory: the server's resident set after the warm calls.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let bins = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from("target/release"),
    };
    let iterations: usize = std::env::var("MCLI_BENCH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let bench = Bench::new(&bins)?;
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();
    println!("| measure | value |");
    println!("|---|---|");

    bench.client(&["-q", "hello"]).status().context("first call")?;
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
    println!("| server RSS at idle after {} calls | {} |", 2 * iterations + 1, kib(rss_kib(pid)?));

    let mut cold = Vec::new();
    for _ in 0..20 {
        bench.stop()?;
        cold.push(time(&mut bench.client(&["-q", "hello"]))?);
    }
    println!("| cold `mcli-client hello`, server started on demand (median of 20) | {} |", ms(median(&mut cold)));
    let pid = bench.server_pid()?;
    println!("| server RSS right after a cold start | {} |", kib(rss_kib(pid)?));
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

    fn server_pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.dir.path().join("rt/server.json"))?;
        let at = text.find("\"pid\":").context("pid in server file")? + 6;
        let digits: String = text[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
        Ok(digits.parse()?)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.stop();
    }
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

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
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
