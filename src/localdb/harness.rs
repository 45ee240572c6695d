//! What the PostgreSQL and MariaDB harnesses do alike: the instance's temp
//! dir and the template cache (with the sweep of templates earlier processes
//! left), the loopback port, helper programs run and checked, the server
//! user when we are root, the private files of an instance, SQL piped to a
//! client, the end of a server log, and the teardown of the dir.
//!
//! The engine files keep what differs: which binaries, which settings, how the
//! server is started, found ready and stopped.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::time::Duration;

use tracing::{debug, warn};

/// Loopback only: the servers trust local connections in some modes.
pub(super) const HOST: &str = "127.0.0.1";
/// Port races (another process grabbing the probed port) are rare but real.
pub(super) const START_ATTEMPTS: u32 = 5;
const LOG_TAIL_LINES: usize = 40;
const TEMPLATE_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Failures of the steps both harnesses share; each engine's error wraps it
/// unchanged (`#[error(transparent)]`), so messages read as before.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file-system operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, with a hint where useful.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A helper program ran but reported failure.
    #[error("{what} failed: `{command}` exited with {status}\n{output}\nhint: {hint}")]
    Command {
        /// The step that failed.
        what: &'static str,
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Captured stdout and stderr.
        output: String,
        /// How to fix it.
        hint: &'static str,
    },
}

/// An engine's harness error, as the shared steps build it.
pub(super) trait EngineError: From<HarnessError> {
    /// The options (or the environment they lead to) cannot work.
    fn invalid_options(message: String) -> Self;
}

pub(super) fn io_err(action: String, source: std::io::Error) -> HarnessError {
    HarnessError::Io { action, source }
}

pub(super) fn path_str<E: EngineError>(path: &Path) -> Result<&str, E> {
    path.to_str().ok_or_else(|| {
        E::invalid_options(format!(
            "path {} is not valid UTF-8: set TMPDIR to a plain directory",
            path.display()
        ))
    })
}

/// The directory for instance and template dirs: the temp dir, or `/tmp`
/// when a unix socket `reserved` bytes below it would be over `max_path`.
pub(super) fn base_temp_dir(reserved: usize, max_path: usize) -> PathBuf {
    let dir = std::env::temp_dir();
    let needed = dir.as_os_str().len() + reserved;
    if needed > max_path || dir.to_str().is_none() {
        PathBuf::from("/tmp")
    } else {
        dir
    }
}

/// A new instance's temp dir under `base`, removed when dropped.
pub(super) fn instance_dir(prefix: &str, base: &Path) -> Result<tempfile::TempDir, HarnessError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .map_err(|e| {
            io_err(
                format!(
                    "could not create a temp dir under {} (check that TMPDIR is writable)",
                    base.display()
                ),
                e,
            )
        })
}

/// Removes an instance's temp dir (at drop); a failure is logged.
pub(super) fn remove_instance_dir(root: tempfile::TempDir, engine: &str) {
    let path = root.path().to_path_buf();
    if let Err(e) = root.close() {
        warn!(path = %path.display(), error = %e, "could not remove local {engine} dir");
    }
}

/// Initialised data dirs, one per `K` (the binaries and what else shapes the
/// data dir), that every instance starts from as a copy. The dirs are left at
/// process exit (removing them would need an `atexit` hook, and so `unsafe`)
/// and swept by a later process: see [`Templates::get_or_init`].
pub(super) struct Templates<K> {
    /// Dir name prefix; the owner's pid follows it.
    prefix: &'static str,
    /// For log lines: `PostgreSQL`, `MariaDB`.
    engine: &'static str,
    made: Mutex<Vec<(K, PathBuf)>>,
    sweep: Once,
}

impl<K: PartialEq> Templates<K> {
    pub(super) const fn new(prefix: &'static str, engine: &'static str) -> Templates<K> {
        Templates {
            prefix,
            engine,
            made: Mutex::new(Vec::new()),
            sweep: Once::new(),
        }
    }

    /// The template data dir for `key`, made by `init` (given a fresh dir
    /// under `base`) on first use. The lock is held through `init` so
    /// concurrent starts wait for one run instead of each running their own.
    /// The first call also removes templates of earlier processes.
    pub(super) fn get_or_init<E: From<HarnessError>>(
        &self,
        key: K,
        base: &Path,
        init: impl FnOnce(&Path) -> Result<PathBuf, E>,
    ) -> Result<PathBuf, E> {
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, data)) = made.iter().find(|(k, _)| *k == key) {
            return Ok(data.clone());
        }
        self.sweep.call_once(|| self.remove_stale(base));

        // The pid in the name lets later runs tell whether the owner is gone.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}{}-", self.prefix, std::process::id()))
            .tempdir_in(base)
            .map_err(|e| {
                io_err(
                    format!(
                        "could not create a template dir under {} (check that TMPDIR is writable)",
                        base.display()
                    ),
                    e,
                )
            })?
            .keep();
        match init(&dir) {
            Ok(data) => {
                made.push((key, data.clone()));
                Ok(data)
            }
            Err(e) => {
                if let Err(rm) = std::fs::remove_dir_all(&dir) {
                    warn!(path = %dir.display(), error = %rm, "could not remove failed template dir");
                }
                Err(e)
            }
        }
    }

    /// Removes templates left by earlier processes: one whose owning process
    /// is gone, or that is older than a day.
    fn remove_stale(&self, base: &Path) {
        let mut dirs = vec![base.to_path_buf()];
        let env_dir = std::env::temp_dir();
        if !dirs.contains(&env_dir) {
            dirs.push(env_dir);
        }
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(self.prefix)) else {
                    continue;
                };
                let owner_gone = rest
                    .split('-')
                    .next()
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| {
                        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                    });
                let too_old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > TEMPLATE_MAX_AGE);
                if owner_gone || too_old {
                    let path = entry.path();
                    let engine = self.engine;
                    match std::fs::remove_dir_all(&path) {
                        Ok(()) => debug!(path = %path.display(), "removed stale {engine} template"),
                        Err(e) => {
                            warn!(path = %path.display(), error = %e, "could not remove stale {engine} template")
                        }
                    }
                }
            }
        }
    }
}

/// `cp -a` of a template data dir to an instance's.
pub(super) fn copy_template(
    template: &Path,
    dest: &Path,
    what: &'static str,
) -> Result<(), HarnessError> {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(template).arg(dest);
    run_checked(cp, what, "check free space in the temp dir")
}

/// Copies a TLS file into the instance, readable by its owner only.
pub(super) fn copy_private_file(
    src: &Path,
    dst: &Path,
    copy_failed: impl FnOnce() -> String,
) -> Result<(), HarnessError> {
    std::fs::copy(src, dst).map_err(|e| io_err(copy_failed(), e))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err(format!("could not chmod {}", dst.display()), e))
}

/// Makes the instance dir private: its socket admits the superuser.
pub(super) fn make_private(dir: &Path) -> Result<(), HarnessError> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err(format!("could not chmod {}", dir.display()), e))
}

/// A free loopback port, as the kernel hands one out (see [`START_ATTEMPTS`]).
pub(super) fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((HOST, 0)).map_err(|e| {
        io_err(
            "could not bind 127.0.0.1:0 to find a free port (is loopback up?)".to_owned(),
            e,
        )
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| io_err("could not read the probed port".to_owned(), e))?
        .port();
    Ok(port)
}

/// Drops the variables starting with one of `prefixes` so the caller's
/// environment cannot redirect or break the harness, and pins messages to
/// English so the log checks work.
pub(super) fn scrub_env(cmd: &mut Command, prefixes: &[&str]) {
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| prefixes.iter().any(|p| k.starts_with(p)))
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C");
}

pub(super) fn run_output(mut cmd: Command, what: &str) -> Result<Output, HarnessError> {
    cmd.stdin(Stdio::null());
    cmd.output()
        .map_err(|e| io_err(format!("could not run {what} ({})", describe(&cmd)), e))
}

pub(super) fn run_checked(
    cmd: Command,
    what: &'static str,
    hint: &'static str,
) -> Result<(), HarnessError> {
    let command = describe(&cmd);
    let out = run_output(cmd, what)?;
    if out.status.success() {
        return Ok(());
    }
    Err(HarnessError::Command {
        what,
        command,
        status: out.status.to_string(),
        output: output_text(&out),
        hint,
    })
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim_end();
    if !stderr.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr);
    }
    text
}

/// Feeds `input` to a spawned client's stdin and collects its output: the
/// output, and whether all of `input` was written. The writing is on another
/// thread: a big script and a big result could otherwise fill both pipes and
/// deadlock.
pub(super) fn feed_and_wait(
    mut child: Child,
    input: &str,
) -> (std::io::Result<Output>, std::io::Result<()>) {
    let stdin = child.stdin.take();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || match stdin {
            Some(mut stdin) => stdin.write_all(input.as_bytes()),
            None => Ok(()),
        });
        let output = child.wait_with_output();
        let write_result = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
        (output, write_result)
    })
}

/// The last lines of a server log, or why it could not be read.
pub(super) fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines.get(start..).unwrap_or_default().join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// Whether the server user exists (we are root and hand the server to it).
pub(super) fn user_exists(user: &str) -> bool {
    Command::new("id")
        .args(["-u", user])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `chown [-R] user: paths`, the user's login group with it.
pub(super) fn chown(
    user: &str,
    paths: &[&Path],
    recursive: bool,
    what: &'static str,
) -> Result<(), HarnessError> {
    let mut cmd = Command::new("chown");
    if recursive {
        cmd.arg("-R");
    }
    // `user:` means the user's login group.
    cmd.arg(format!("{user}:")).args(paths);
    run_checked(
        cmd,
        what,
        "run as root or as a non-root user that owns TMPDIR",
    )
}

pub(super) fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let from_proc = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                // "Uid: real effective saved fs"; the effective id matters.
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .map(|euid| euid == "0")
            });
        from_proc.unwrap_or_else(|| {
            Command::new("id")
                .arg("-u")
                .output()
                .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
                .unwrap_or(false)
        })
    })
}

pub(super) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
    })
}

pub(super) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Checks `extra_conf` settings: `key_char` says what a name may hold
/// (`kind` names it in the message), `normalize` folds a name before it is
/// looked up in `reserved`, the settings the harness owns.
pub(super) fn validate_extra_conf<E: EngineError>(
    extra_conf: &[(String, String)],
    key_char: fn(char) -> bool,
    kind: &str,
    normalize: fn(&str) -> String,
    reserved: &[&str],
) -> Result<(), E> {
    for (key, value) in extra_conf {
        let valid_key = !key.is_empty() && key.chars().all(key_char);
        if !valid_key {
            return Err(E::invalid_options(format!(
                "extra_conf key {key:?} is not a {kind}"
            )));
        }
        if reserved.contains(&normalize(key).as_str()) {
            return Err(E::invalid_options(format!(
                "extra_conf may not set {key}: the harness chooses it"
            )));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(E::invalid_options(format!(
                "extra_conf value for {key} contains a line break or NUL"
            )));
        }
    }
    Ok(())
}
