//! `mcli-bench --compare OLD NEW`: two builds of mcli side by side in one run, for the figures
//! a change must not make worse. Each build gets its own private server; the calls alternate
//! between them (and `/bin/true`), so that both see the same machine load.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Bench, kib, median, ms, rss_kib, throughput, time};

pub fn run(old: &Path, new: &Path, iterations: usize) -> anyhow::Result<()> {
    let builds = [Bench::new(old)?, Bench::new(new)?];
    println!("old: {}", old.display());
    println!("new: {}", new.display());
    println!();
    println!("| measure | old | new | new / old |");
    println!("|---|---|---|---|");
    for bench in &builds {
        bench.client(&["-q", "hello"]).status()?;
    }
    let (mut samples, mut truth) = ([Vec::new(), Vec::new()], Vec::new());
    for _ in 0..iterations {
        truth.push(time(&mut Command::new("/bin/true"))?);
        for (bench, samples) in builds.iter().zip(&mut samples) {
            samples.push(time(&mut bench.client(&["hello"]))?);
        }
    }
    let truth = median(&mut truth);
    let [old_rt, new_rt] = samples.map(|mut s| median(&mut s));
    row(&format!("warm `mcli-client hello` (median of {iterations})"), ms(old_rt), ms(new_rt), ratio(old_rt, new_rt));
    let per_truth = |d: Duration| format!("{:.2}x", d.as_secs_f64() / truth.as_secs_f64());
    row("warm round trip / `/bin/true`", per_truth(old_rt), per_truth(new_rt), ratio(old_rt, new_rt));

    std::thread::sleep(Duration::from_millis(200));
    let rss = |bench: &Bench, field: &str| -> anyhow::Result<u64> { rss_kib(bench.server_pid()?, field) };
    let (old_rss, new_rss) = (rss(&builds[0], "VmRSS")?, rss(&builds[1], "VmRSS")?);
    let label = format!("server RSS at idle after {} calls", iterations + 1);
    row(&label, kib(old_rss), kib(new_rss), format!("{:.2}", new_rss as f64 / old_rss as f64));
    let (old_anon, new_anon) = (rss(&builds[0], "RssAnon")?, rss(&builds[1], "RssAnon")?);
    row("of which private", kib(old_anon), kib(new_anon), format!("{:.2}", new_anon as f64 / old_anon as f64));

    let per_connection = (iterations * 10).max(1000);
    let mut best = [0f64, 0f64];
    for _ in 0..3 {
        for (bench, best) in builds.iter().zip(&mut best) {
            *best = best.max(throughput(&bench.dir.path().join("rt/server.sock"), 8, per_connection, "echo")?);
        }
    }
    row(
        &format!("built-in `execute`, 8 connections x {per_connection} calls (best of 3)"),
        format!("{:.0}/s", best[0]),
        format!("{:.0}/s", best[1]),
        format!("{:.2}", best[1] / best[0]),
    );

    let mut cold = [Vec::new(), Vec::new()];
    for _ in 0..20 {
        for (bench, cold) in builds.iter().zip(&mut cold) {
            bench.stop()?;
            cold.push(time(&mut bench.client(&["-q", "hello"]))?);
        }
    }
    let [old_cold, new_cold] = cold.map(|mut s| median(&mut s));
    row("cold `mcli-client hello` (median of 20)", ms(old_cold), ms(new_cold), ratio(old_cold, new_cold));
    let (old_rss, new_rss) = (rss(&builds[0], "VmRSS")?, rss(&builds[1], "VmRSS")?);
    row(
        "server RSS right after a cold start",
        kib(old_rss),
        kib(new_rss),
        format!("{:.2}", new_rss as f64 / old_rss as f64),
    );
    Ok(())
}

fn row(what: &str, old: String, new: String, ratio: String) {
    println!("| {what} | {old} | {new} | {ratio} |");
}

fn ratio(old: Duration, new: Duration) -> String {
    format!("{:.2}", new.as_secs_f64() / old.as_secs_f64())
}
