//! Detached jobs: the `--detach` round trip against a plain warm call (interleaved, medians),
//! and following a job that writes 1 GiB (`--detach`, then `--attach`, to its end) against
//! running the same command attached; both with output to /dev/null, best of three.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Bench, median, ms};

/// One GiB.
const GIB: u64 = 1 << 30;

pub fn run(bench: &Bench, iterations: usize) -> anyhow::Result<()> {
    // A server of its own, keeping a whole GiB per job.
    let config = bench.dir.path().join("jobs.toml");
    std::fs::write(&config, format!("[server]\njob_output_max = {}\njobs_output_total_max = {}\n", 2 * GIB, 4 * GIB))?;
    let config = config.to_str().unwrap_or_default().to_owned();
    let started = bench.command("mcli-server", &["-s", "jobs", "--config", &config, "start"]).status()?;
    if !started.success() {
        bail!("cannot start the jobs server");
    }
    let result = measure(bench, iterations);
    bench.command("mcli-server", &["-s", "jobs", "stop"]).status()?;
    result
}

fn measure(bench: &Bench, iterations: usize) -> anyhow::Result<()> {
    let rounds = iterations.min(300);
    let (mut plain, mut detached) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(super::time(&mut bench.client(&["-s", "jobs", "echo", "x"]))?);
        detached.push(super::time(&mut bench.client(&["-s", "jobs", "-d", "echo", "x"]))?);
    }
    let (p, d) = (median(&mut plain), median(&mut detached));
    println!("| warm `mcli-client echo x` / `--detach echo x` (median of {rounds}) | {} / {} |", ms(p), ms(d));
    println!("| **`--detach` round trip / plain warm call** | **{:.2}x** |", d.as_secs_f64() / p.as_secs_f64());

    let commands = bench.dir.path().join("cfg/mcli/commands");
    std::fs::create_dir_all(&commands)?;
    let script = commands.join("gib");
    std::fs::write(&script, format!("#!/bin/sh\nexec head -c {GIB} /dev/zero\n"))?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (mut attached, mut followed) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        attached = attached.min(super::time(&mut bench.client(&["-s", "jobs", "gib"]))?);
        followed = followed.min(follow_gib(bench)?);
    }
    println!("| a command writing 1 GiB, run attached (best of 3) | {} |", ms(attached));
    println!("| the same, `--detach` then `--attach` to its end (best of 3) | {} |", ms(followed));
    println!(
        "| **following a 1 GiB job / running it attached** | **{:.2}x** |",
        followed.as_secs_f64() / attached.as_secs_f64()
    );
    Ok(())
}

/// Starts the 1 GiB job detached and follows it to its end; the time of both.
fn follow_gib(bench: &Bench) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = bench.client(&["-s", "jobs", "-d", "gib"]).stdout(Stdio::piped()).output()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || id.is_empty() {
        bail!("`--detach gib` failed: {}", out.status);
    }
    let status = bench.client(&["-s", "jobs", "--attach", &id]).status().context("--attach")?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("`--attach {id}` failed: {status}");
    }
    // Free the disk for the next round.
    let _ = std::fs::remove_dir_all(bench.dir.path().join("state/mcli/jobs.jobs").join(&id));
    Ok(elapsed)
}
