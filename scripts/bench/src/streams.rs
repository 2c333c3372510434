//! The client's streams passed to the command (the default over the local socket) against
//! streaming them through the server (`--no-pass-streams`): a warm round trip of a built-in and
//! of a trivial script, interleaved, and the throughput of a command writing 1 GiB to
//! /dev/null, as a ratio to running it directly.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Bench, median, ms, time};

/// Bytes the throughput command writes.
const GIB: u64 = 1 << 30;

pub fn run(bench: &Bench, iterations: usize) -> anyhow::Result<()> {
    let commands = bench.dir.path().join("cfg/mcli/commands");
    std::fs::create_dir_all(&commands)?;
    for (name, body) in [("trivial", ":".to_owned()), ("gib", format!("exec head -c {GIB} /dev/zero"))] {
        let script = commands.join(name);
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n"))?;
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    bench.client(&["-q", "hello"]).status()?;
    let rounds = iterations.min(500);
    for command in ["hello", "trivial"] {
        let (mut passed, mut streamed) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            passed.push(time(&mut bench.client(&[command]))?);
            streamed.push(time(&mut bench.client(&["--no-pass-streams", command]))?);
        }
        let (p, s) = (median(&mut passed), median(&mut streamed));
        println!(
            "| warm `mcli-client {command}`, streams passed / streamed (median of {rounds}) | {} / {} |",
            ms(p),
            ms(s)
        );
    }
    let gib = commands.join("gib");
    let (mut direct, mut passed, mut streamed) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        direct = direct.min(time(Command::new(&gib).stdout(Stdio::null()))?);
        passed = passed.min(time(&mut bench.client(&["gib"]))?);
        streamed = streamed.min(time(&mut bench.client(&["--no-pass-streams", "gib"]))?);
    }
    let rate = |d: Duration| GIB as f64 / d.as_secs_f64() / (1 << 20) as f64;
    println!("| 1 GiB to /dev/null, run directly (best of 3) | {} ({:.0} MiB/s) |", ms(direct), rate(direct));
    println!("| the same through `mcli-client`, streams passed | {} ({:.0} MiB/s) |", ms(passed), rate(passed));
    println!("| the same with `--no-pass-streams` | {} ({:.0} MiB/s) |", ms(streamed), rate(streamed));
    println!(
        "| **1 GiB throughput through mcli / direct: passed, streamed** | **{:.2}x**, {:.2}x |",
        direct.as_secs_f64() / passed.as_secs_f64(),
        direct.as_secs_f64() / streamed.as_secs_f64()
    );
    Ok(())
}
