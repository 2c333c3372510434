//! The editor packages of contrib/, end to end: Emacs (`contrib/emacs/mcli.el`, driven by its ERT
//! tests under `emacs --batch`), Neovim (`contrib/nvim`, driven by its test script under
//! `nvim --headless`) and VS Code (`contrib/vscode`, its node tests with a stand-in for the
//! `vscode` module), each against a real server started for the test in a fresh directory,
//! through `mcli-client --stdio`. The editor-side scripts check what a user sees (completion from
//! `list`, output streaming into the buffer while the command runs, the exit status, cancelling);
//! this side checks that the cancelled process is gone and that mcli.el byte-compiles cleanly.
//! Emacs, Neovim and Node come from scripts/test.sh (Debian's `emacs-nox`, `neovim` and
//! `nodejs`); without them these tests fail and say what to install.

#![forbid(unsafe_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcli_tests::{Active, Run, TestEnv, process_gone, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long an editor's whole test script may take: it waits on readiness throughout, so this
/// only bounds a hang, generously for a loaded 2-core machine.
const EDITOR_LIMIT: Duration = Duration::from_secs(180);

/// The contrib/ folder of the source tree.
fn contrib() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib");
    dir.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Fails, saying what to install, when `program` does not start.
fn require_program(program: &str, package: &str) {
    let started = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !started.is_ok_and(|status| status.success()) {
        panic!(
            "`{program}` is needed by this test and was not found on PATH: install Debian's `{package}` \
             (`apt-get install {package}`; scripts/test.sh does so when run as root)"
        );
    }
}

/// A server with the two script commands the editor tests use, and the files they coordinate by.
struct Fixture {
    env: TestEnv,
    /// The directory the editors run commands in.
    work: PathBuf,
    /// Created by the editor test to let `slowlines` print its second line.
    go: PathBuf,
    /// Where `longrun` writes its pid.
    pidfile: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let mut env = TestEnv::new();
        let root = env.root.path().to_path_buf();
        let (work, go, pidfile) = (root.join("work"), root.join("go"), root.join("longrun.pid"));
        std::fs::create_dir(&work).expect("create the work dir");
        let commands = env.config_home.join("mcli/commands");
        std::fs::create_dir_all(&commands).expect("create the commands dir");
        // `slowlines` waits for the test to say go, so that the test sees its first line while it
        // still runs; `longrun` runs until it is cancelled.
        let slowlines = format!(
            "#!/bin/sh\necho 'line 1'\nIFS='|'; echo \"args: $*\"\npwd\n\
             while [ ! -e '{}' ]; do sleep 0.02; done\necho 'line 2'\n",
            go.display()
        );
        let longrun = format!(
            "#!/bin/sh\necho $$ > '{pid}.tmp' && mv '{pid}.tmp' '{pid}'\necho started\nexec sleep 300\n",
            pid = pidfile.display()
        );
        // `latin1` prints bytes that are not UTF-8, which the server sends as `data_b64`.
        let latin1 = "#!/bin/sh\nprintf 'caf\\351\\n'\n".to_string();
        for (name, text) in [("slowlines", slowlines), ("longrun", longrun), ("latin1", latin1)] {
            use std::os::unix::fs::PermissionsExt;
            let path = commands.join(name);
            std::fs::write(&path, text).expect("write a script command");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
        }
        env.foreground_server(&[]);
        Fixture { env, work, go, pidfile }
    }

    /// `program` with the test's environment and the variables the editor test scripts read.
    fn editor(&self, program: &str) -> Command {
        let mut cmd = self.env.command(program);
        cmd.env("MCLI_TEST_CLIENT", self.env.bin("mcli-client"))
            .env("MCLI_TEST_DIR", &self.work)
            .env("MCLI_TEST_GO", &self.go)
            .env("MCLI_TEST_PIDFILE", &self.pidfile);
        cmd
    }

    /// The pid `longrun` wrote, if it ran.
    fn longrun_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile).ok()?.trim().parse().ok()
    }

    /// Checks that the command the editor cancelled is gone and the server is idle.
    fn expect_cancelled_and_idle(&self) {
        let pid = self.longrun_pid().expect("longrun ran and wrote its pid");
        wait_until("the cancelled command's process is gone", || process_gone(pid));
        self.env.wait_for_active(Active::Count(0));
    }
}

impl Drop for Fixture {
    /// Ends what a failed editor test may have left running, before the server is killed.
    fn drop(&mut self) {
        let _ = std::fs::write(&self.go, "");
        if let Some(pid) = self.longrun_pid().filter(|pid| !process_gone(*pid)) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Runs `cmd` to its end, killing it (and failing) after [`EDITOR_LIMIT`].
fn run_editor(cmd: &mut Command) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
    let drain = |mut source: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = source.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + EDITOR_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the editor") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(status.is_some(), "{:?} did not end within {EDITOR_LIMIT:?}; its output:\n{run:?}", cmd.get_program());
    run
}

#[test]
fn emacs_runs_completes_streams_shows_the_status_and_cancels() {
    require_program("emacs", "emacs-nox");
    let fixture = Fixture::new();
    let emacs = contrib().join("emacs");
    let run = run_editor(
        fixture.editor("emacs").args(["--batch", "-Q", "--eval", "(setq load-prefer-newer t)", "-L"]).args([
            emacs.as_os_str(),
            "-l".as_ref(),
            emacs.join("test/mcli-test.el").as_os_str(),
            "-f".as_ref(),
            "ert-run-tests-batch-and-exit".as_ref(),
        ]),
    );
    run.expect_code(0);
    assert!(run.stderr.contains("Ran 8 tests, 8 results as expected"), "{}", run.stderr);
    fixture.expect_cancelled_and_idle();
}

#[test]
fn mcli_el_byte_compiles_without_warnings_and_passes_checkdoc() {
    require_program("emacs", "emacs-nox");
    let env = TestEnv::new();
    // Compiled in a copy, so that no .elc lands in the source tree.
    let dir = env.root.path().join("elc");
    std::fs::create_dir(&dir).expect("create a dir");
    std::fs::copy(contrib().join("emacs/mcli.el"), dir.join("mcli.el")).expect("copy mcli.el");
    let compile = run_editor(env.command("emacs").current_dir(&dir).args([
        "--batch",
        "-Q",
        "--eval",
        "(setq byte-compile-error-on-warn t)",
        "-f",
        "batch-byte-compile",
        "mcli.el",
    ]));
    compile.expect_code(0);
    assert!(!compile.stderr.contains("Warning") && !compile.stderr.contains("Error"), "{}", compile.stderr);
    assert!(dir.join("mcli.elc").is_file(), "no mcli.elc: {}", compile.stderr);
    let checkdoc = run_editor(env.command("emacs").current_dir(&dir).args([
        "--batch",
        "-Q",
        "--eval",
        "(checkdoc-file \"mcli.el\")",
    ]));
    checkdoc.expect_code(0);
    assert!(!checkdoc.stderr.contains("Warning"), "checkdoc:\n{}", checkdoc.stderr);
}

#[test]
fn neovim_runs_completes_streams_shows_the_status_and_cancels() {
    require_program("nvim", "neovim");
    let fixture = Fixture::new();
    let nvim = contrib().join("nvim");
    let rtp = format!("set rtp^={}", nvim.display());
    let test = format!("luafile {}", nvim.join("test/mcli_test.lua").display());
    let run = run_editor(fixture.editor("nvim").args([
        "--headless",
        "-u",
        "NONE",
        "-i",
        "NONE",
        "--cmd",
        &rtp,
        "--cmd",
        "runtime plugin/mcli.lua",
        "-c",
        &test,
    ]));
    run.expect_code(0);
    assert!(run.stderr.contains("0 of 8 nvim tests failed"), "{}", run.stderr);
    fixture.expect_cancelled_and_idle();
}

#[test]
fn vscode_extension_picks_streams_shows_the_status_and_cancels() {
    require_program("node", "nodejs");
    let fixture = Fixture::new();
    let test = contrib().join("vscode/test/extension.test.js");
    let run = run_editor(fixture.editor("node").arg("--test").arg(&test));
    run.expect_code(0);
    assert!(run.stdout.contains("# pass 8") && run.stdout.contains("# fail 0"), "{}", run.stdout);
    fixture.expect_cancelled_and_idle();
}
