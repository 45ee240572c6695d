//! Throwaway PostgreSQL clusters started from the system's PostgreSQL binaries.
//!
//! The test suite and `duplex demo` need real servers with logical decoding
//! enabled, but must not depend on a pre-configured service or Docker. Each
//! [`LocalPostgres`] is a private cluster in its own temp dir, listening only on
//! loopback, torn down when the value is dropped.
//!
//! `initdb` is the slow part (seconds on a small machine), so the first cluster
//! for a given (bindir, superuser) pair initialises a template once per process
//! and every cluster is a `cp -a` of it. Template dirs cannot be removed at
//! process exit without an `atexit` hook (which would need `unsafe`), so they
//! are left in the temp dir and swept on a later run: a template whose owning
//! process is gone, or that is older than a day, is removed on first use.
//!
//! PostgreSQL refuses to run as root. When we are root (CI containers), the
//! server-side programs run as the `postgres` system user through `runuser`,
//! and the cluster's dirs are chowned to it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::harness::{
    self, copy_private_file, copy_template, free_port, instance_dir, io_err, is_executable,
    make_private, output_text, remove_instance_dir, run_checked, run_output, running_as_root,
    which, EngineError, HarnessError, Templates, HOST, START_ATTEMPTS,
};

/// The OS account the server runs as when we are root.
const SERVER_USER: &str = "postgres";
/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const CLUSTER_PREFIX: &str = "duplex-pg-";
const TEMPLATE_PREFIX: &str = "duplex-pg-template-";
const SERVER_BINS: [&str; 3] = ["initdb", "postgres", "pg_ctl"];
/// Settings the harness owns; overriding them would leave the handle pointing at
/// the wrong address.
const RESERVED_SETTINGS: [&str; 3] = ["port", "listen_addresses", "unix_socket_directories"];

/// Errors from starting, using or stopping a [`LocalPostgres`]; each message
/// says what failed and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum LocalDbError {
    /// No directory with `initdb`, `postgres` and `pg_ctl` was found.
    #[error(
        "PostgreSQL server binaries not found (looked in DUPLEX_PG_BINDIR, pg_config --bindir, \
         /usr/lib/postgresql/*/bin): install them with `apt-get install -y postgresql` or set \
         DUPLEX_PG_BINDIR to the directory holding initdb, postgres and pg_ctl"
    )]
    BinariesNotFound,

    /// The directory named (`DUPLEX_PG_BINDIR`, or `LocalPgOptions::bindir`)
    /// lacks a server program.
    #[error(
        "{} does not contain an executable {missing}: point DUPLEX_PG_BINDIR (or the bindir \
         option) at a PostgreSQL server bin directory (e.g. /usr/lib/postgresql/15/bin), or unset it",
        .bindir.display()
    )]
    BadBinDir {
        /// The directory named.
        bindir: PathBuf,
        /// Programs that are missing there.
        missing: String,
    },

    /// No `psql` client next to the server binaries or on the system.
    #[error(
        "psql not found (looked in {} and /usr/bin, and on PATH): install it with \
         `apt-get install -y postgresql-client`",
        .bindir.display()
    )]
    PsqlNotFound {
        /// The server bin directory that was searched first.
        bindir: PathBuf,
    },

    /// We are root and cannot switch to an unprivileged account.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, so the server must run as the \
         `postgres` system user, but {problem}: {fix}"
    )]
    CannotDropRoot {
        /// What is missing.
        problem: String,
        /// How to fix it.
        fix: String,
    },

    /// The options cannot produce a working cluster.
    #[error("invalid LocalPgOptions: {0}")]
    InvalidOptions(String),

    /// A file-system operation or a helper program failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),

    /// The server did not come up; includes the end of `server.log`.
    #[error(
        "PostgreSQL server in {} did not start (attempts: {attempts}): {reason}\n\
         --- last lines of {}/server.log ---\n{log_tail}\n--- end of log ---\n\
         hint: check the log above; set DUPLEX_PG_BINDIR to use another PostgreSQL installation",
        .data_dir.display(), .data_dir.display()
    )]
    StartFailed {
        /// The cluster's data directory (removed once the error is returned).
        data_dir: PathBuf,
        /// How many ports were tried.
        attempts: u32,
        /// What went wrong.
        reason: String,
        /// The end of the server log.
        log_tail: String,
    },

    /// SQL run through `psql` failed.
    #[error("psql on database {dbname:?} at {conninfo} failed ({status}): {stderr}")]
    Sql {
        /// Target database.
        dbname: String,
        /// Connection string used (without password).
        conninfo: String,
        /// psql's exit status.
        status: String,
        /// psql's stderr.
        stderr: String,
    },

    /// The cluster was already stopped.
    #[error(
        "the local PostgreSQL server in {} has been stopped: start a new LocalPostgres instead",
        .data_dir.display()
    )]
    NotRunning {
        /// The cluster's data directory.
        data_dir: PathBuf,
    },

    /// Neither `pg_ctl stop` nor `kill -9` got rid of the postmaster.
    #[error(
        "could not stop the PostgreSQL server in {}: {detail}; kill the postmaster by hand \
         (its pid is the first line of postmaster.pid)",
        .data_dir.display()
    )]
    StopFailed {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// What was tried.
        detail: String,
    },
}

impl EngineError for LocalDbError {
    fn invalid_options(message: String) -> Self {
        LocalDbError::InvalidOptions(message)
    }
}

/// How TCP clients authenticate; `local` socket connections always trust so the
/// harness itself never needs the password.
#[derive(Debug, Clone)]
pub enum LocalAuth {
    /// No password.
    Trust,
    /// Password stored and checked as SCRAM-SHA-256.
    Scram {
        /// The superuser's password.
        password: String,
    },
    /// Password stored as MD5, for testing clients against legacy servers.
    Md5 {
        /// The superuser's password.
        password: String,
    },
}

impl LocalAuth {
    fn password(&self) -> Option<&str> {
        match self {
            LocalAuth::Trust => None,
            LocalAuth::Scram { password } | LocalAuth::Md5 { password } => Some(password),
        }
    }

    fn hba_method(&self) -> &'static str {
        match self {
            LocalAuth::Trust => "trust",
            LocalAuth::Scram { .. } => "scram-sha-256",
            LocalAuth::Md5 { .. } => "md5",
        }
    }

    fn password_encryption(&self) -> Option<&'static str> {
        match self {
            LocalAuth::Trust => None,
            LocalAuth::Scram { .. } => Some("scram-sha-256"),
            LocalAuth::Md5 { .. } => Some("md5"),
        }
    }
}

/// Server certificate and key for TLS tests; copied into the data dir because
/// the server insists on owning a 0600 key file.
#[derive(Debug, Clone)]
pub struct LocalTls {
    /// PEM certificate (chain) file.
    pub cert_pem_path: PathBuf,
    /// PEM private key file.
    pub key_pem_path: PathBuf,
}

/// What kind of cluster to start.
#[derive(Debug, Clone)]
pub struct LocalPgOptions {
    /// Authentication for TCP connections; default [`LocalAuth::Trust`].
    pub auth: LocalAuth,
    /// The bootstrap superuser (`initdb --username`); default `postgres`.
    pub superuser: String,
    /// Extra `postgresql.conf` settings, applied after (and so overriding) the
    /// harness defaults; `port`, `listen_addresses` and `unix_socket_directories`
    /// are refused.
    pub extra_conf: Vec<(String, String)>,
    /// Enable TLS with this certificate; default off.
    pub tls: Option<LocalTls>,
    /// The directory of the server programs (initdb, postgres, pg_ctl) to
    /// run; default: found as [`LocalPostgres::start`] describes. Lets one
    /// process run two PostgreSQL versions side by side.
    pub bindir: Option<PathBuf>,
}

impl Default for LocalPgOptions {
    fn default() -> Self {
        LocalPgOptions {
            auth: LocalAuth::Trust,
            superuser: "postgres".to_owned(),
            extra_conf: Vec::new(),
            tls: None,
            bindir: None,
        }
    }
}

/// A running throwaway PostgreSQL cluster on 127.0.0.1.
///
/// Dropping it stops the server (immediate shutdown) and deletes its directory,
/// also during a panic unwind, so a failing test leaves nothing behind.
pub struct LocalPostgres {
    /// `None` only while dropping.
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    data_dir: PathBuf,
    bindir: PathBuf,
    psql_bin: PathBuf,
    runner: Runner,
    port: u16,
    superuser: String,
    password: Option<String>,
    version_num: u32,
    running: bool,
}

impl std::fmt::Debug for LocalPostgres {
    // Hand-written so the password never ends up in test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("superuser", &self.superuser)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("version_num", &self.version_num)
            .field("running", &self.running)
            .finish()
    }
}

impl LocalPostgres {
    /// Creates and starts a cluster. Blocking (std::process only), so it may be
    /// called from async code, at the cost of blocking that thread for ~1 s.
    pub fn start(opts: LocalPgOptions) -> Result<LocalPostgres, LocalDbError> {
        validate_options(&opts)?;
        let bindir = match &opts.bindir {
            Some(dir) => checked_bindir(dir.clone())?,
            None => discover_bindir()?,
        };
        let psql_bin = find_psql(&bindir)?;
        let runner = Runner::detect()?;
        let template = template_for(&bindir, &opts.superuser, &runner)?;

        let base = base_temp_dir();
        let root = instance_dir(CLUSTER_PREFIX, &base)?;
        let root_path = root.path().to_path_buf();
        let data_dir = root_path.join("data");
        let mut lp = LocalPostgres {
            root: Some(root),
            root_path,
            data_dir,
            bindir,
            psql_bin,
            runner,
            port: 0,
            superuser: opts.superuser.clone(),
            password: opts.auth.password().map(str::to_owned),
            version_num: 0,
            running: false,
        };
        // From here on, Drop removes the temp dir if anything fails.
        lp.prepare(&template, &opts)?;
        lp.boot(&opts)?;
        Ok(lp)
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bootstrap superuser name.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The superuser's password, `None` with [`LocalAuth::Trust`].
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The directory of the server's programs (`pgbench` ships beside them).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The cluster's data directory (contains `server.log`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A libpq key=value connection string for `dbname`. The password is left
    /// out so the string can be logged; pass it separately.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            HOST,
            self.port,
            conninfo_quote(&self.superuser),
            conninfo_quote(dbname)
        )
    }

    /// Creates database `name` (any characters allowed; it is quoted).
    pub fn create_database(&self, name: &str) -> Result<(), LocalDbError> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .map(|_| ())
    }

    /// Runs SQL as the superuser over TCP (`psql -X -A -t -q`, stopping at the
    /// first error) and returns psql's raw stdout, trailing newline included.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, LocalDbError> {
        if !self.running {
            return Err(LocalDbError::NotRunning {
                data_dir: self.data_dir.clone(),
            });
        }
        self.psql_at(
            &self.conninfo(dbname),
            dbname,
            self.password.as_deref(),
            sql,
        )
    }

    /// `server_version_num` as reported by the running server, e.g. 150018.
    pub fn server_version_num(&self) -> u32 {
        self.version_num
    }

    /// Stops the server (immediate shutdown); calling it again is a no-op. The
    /// data dir stays until drop so its log can still be read.
    pub fn stop(&mut self) -> Result<(), LocalDbError> {
        if !self.running {
            return Ok(());
        }
        let result = self.stop_server();
        // Even on failure there is nothing more we can do, and retrying the
        // kill from Drop would only repeat the same warnings.
        self.running = false;
        result
    }

    /// Starts a stopped server again on the same port with the same data,
    /// as after a site's restart or outage; a running one is left alone.
    pub fn start_again(&mut self) -> Result<(), LocalDbError> {
        if self.running {
            return Ok(());
        }
        let out = self.pg_ctl_start()?;
        // pg_ctl -w may give up while a postmaster is still around: stop
        // (or drop) then kills it.
        self.running = true;
        if out.status.success() {
            return Ok(());
        }
        Err(LocalDbError::StartFailed {
            data_dir: self.data_dir.clone(),
            attempts: 1,
            reason: format!(
                "`pg_ctl start` exited with {}: {}",
                out.status,
                output_text(&out)
            ),
            log_tail: self.log_tail(),
        })
    }

    /// `pg_ctl start` on the data dir, logging to `server.log`, waiting up
    /// to 60 s for the server to accept connections.
    fn pg_ctl_start(&self) -> Result<std::process::Output, LocalDbError> {
        let mut cmd = self.runner.command(&self.bindir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .args(["-w", "-t", "60", "-s", "start"]);
        Ok(run_output(cmd, "pg_ctl start")?)
    }

    /// Copies the template and writes the config that does not depend on the port.
    fn prepare(&mut self, template: &Path, opts: &LocalPgOptions) -> Result<(), LocalDbError> {
        let socket_len = path_str(&self.root_path)?.len() + "/.s.PGSQL.65535".len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(LocalDbError::InvalidOptions(format!(
                "the unix socket path under {} would be {socket_len} bytes, over the {MAX_SOCKET_PATH}-byte limit: set TMPDIR to a shorter directory",
                self.root_path.display()
            )));
        }
        copy_template(template, &self.data_dir, "copying the template cluster")?;

        let hba_path = self.data_dir.join("pg_hba.conf");
        std::fs::write(&hba_path, hba_conf(&opts.auth, opts.tls.is_some()))
            .map_err(|e| io_err(format!("could not write {}", hba_path.display()), e))?;

        if let Some(tls) = &opts.tls {
            for (src, name) in [
                (&tls.cert_pem_path, "server.crt"),
                (&tls.key_pem_path, "server.key"),
            ] {
                copy_private_file(src, &self.data_dir.join(name), || {
                    format!(
                        "could not copy TLS file {} into the data dir (check LocalTls paths)",
                        src.display()
                    )
                })?;
            }
        }
        // `local` lines trust, so nobody else may reach the socket.
        make_private(&self.root_path)?;
        // Files we wrote are owned by root; the server must be able to read them.
        self.runner.chown(&self.root_path)
    }

    /// Starts the server, retrying with a fresh port if the probed one got taken.
    fn boot(&mut self, opts: &LocalPgOptions) -> Result<(), LocalDbError> {
        let conf_path = self.data_dir.join("postgresql.conf");
        let base_conf = std::fs::read_to_string(&conf_path)
            .map_err(|e| io_err(format!("could not read {}", conf_path.display()), e))?;
        let log_path = self.data_dir.join("server.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port()?;
            let conf = format!("{base_conf}\n{}", self.server_conf(opts)?);
            // Overwriting keeps the file's owner (the server user).
            std::fs::write(&conf_path, conf)
                .map_err(|e| io_err(format!("could not write {}", conf_path.display()), e))?;
            if let Err(e) = std::fs::remove_file(&log_path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %log_path.display(), error = %e, "could not remove old server log");
                }
            }

            let out = self.pg_ctl_start()?;
            if out.status.success() {
                self.running = true;
                return match self.finish_boot(opts) {
                    Ok(()) => {
                        debug!(port = self.port, data_dir = %self.data_dir.display(), "local PostgreSQL started");
                        Ok(())
                    }
                    Err(e) => {
                        let log_tail = self.log_tail();
                        if let Err(stop_err) = self.stop() {
                            warn!(error = %stop_err, "could not stop half-started PostgreSQL");
                        }
                        Err(LocalDbError::StartFailed {
                            data_dir: self.data_dir.clone(),
                            attempts: attempt,
                            reason: e.to_string(),
                            log_tail,
                        })
                    }
                };
            }

            // pg_ctl -w may give up while a postmaster is still around.
            self.running = true;
            if let Err(e) = self.stop() {
                warn!(error = %e, "could not stop PostgreSQL after a failed start");
            }
            let log_tail = self.log_tail();
            let port_taken = [
                "could not bind",
                "Address already in use",
                "could not create any TCP/IP sockets",
                "could not create listen socket",
            ]
            .iter()
            .any(|needle| log_tail.contains(needle));
            if port_taken && attempt < START_ATTEMPTS {
                warn!(
                    port = self.port,
                    attempt, "PostgreSQL could not bind its port, retrying with another"
                );
                continue;
            }
            return Err(LocalDbError::StartFailed {
                data_dir: self.data_dir.clone(),
                attempts: attempt,
                reason: format!(
                    "`pg_ctl start` exited with {}: {}",
                    out.status,
                    output_text(&out)
                ),
                log_tail,
            });
        }
    }

    /// Sets the password and proves the server answers over TCP.
    fn finish_boot(&mut self, opts: &LocalPgOptions) -> Result<(), LocalDbError> {
        if let (Some(password), Some(encryption)) =
            (opts.auth.password(), opts.auth.password_encryption())
        {
            // Over the socket, which always trusts: TCP already demands the
            // password we are about to set.
            let socket_conninfo = format!(
                "host={} port={} user={} dbname=postgres",
                conninfo_quote(path_str(&self.root_path)?),
                self.port,
                conninfo_quote(&self.superuser)
            );
            let sql = format!(
                "SET password_encryption = {};\nALTER ROLE {} PASSWORD {};\n",
                quote_literal(encryption),
                quote_ident(&self.superuser),
                quote_literal(password)
            );
            self.psql_at(&socket_conninfo, "postgres", None, &sql)?;
        }
        let version = self.psql("postgres", "SELECT current_setting('server_version_num')")?;
        self.version_num = version.trim().parse().map_err(|_| {
            LocalDbError::InvalidOptions(format!(
                "server returned an unparsable server_version_num {version:?}"
            ))
        })?;
        Ok(())
    }

    /// The harness's postgresql.conf block for the current port.
    fn server_conf(&self, opts: &LocalPgOptions) -> Result<String, LocalDbError> {
        let socket_dir = path_str(&self.root_path)?;
        let socket_dir = if socket_dir.contains([',', '"', ' ']) {
            format!("\"{}\"", socket_dir.replace('"', "\"\""))
        } else {
            socket_dir.to_owned()
        };
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", HOST.to_owned()),
            ("port", self.port.to_string()),
            ("unix_socket_directories", socket_dir),
            ("unix_socket_permissions", "0700".to_owned()),
            ("wal_level", "logical".to_owned()),
            ("max_wal_senders", "10".to_owned()),
            ("max_replication_slots", "10".to_owned()),
            ("max_worker_processes", "8".to_owned()),
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            ("shared_buffers", "32MB".to_owned()),
            ("max_connections", "50".to_owned()),
            ("track_commit_timestamp", "on".to_owned()),
            ("log_min_messages", "warning".to_owned()),
            ("logging_collector", "off".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(enc) = opts.auth.password_encryption() {
            settings.push(("password_encryption".to_owned(), enc.to_owned()));
        }
        if opts.tls.is_some() {
            settings.push(("ssl".to_owned(), "on".to_owned()));
            settings.push((
                "ssl_cert_file".to_owned(),
                path_str(&self.data_dir.join("server.crt"))?.to_owned(),
            ));
            settings.push((
                "ssl_key_file".to_owned(),
                path_str(&self.data_dir.join("server.key"))?.to_owned(),
            ));
        }
        settings.extend(opts.extra_conf.iter().cloned());

        let mut conf =
            String::from("# Added by duplex's local PostgreSQL harness (src/localdb/pg.rs).\n");
        for (key, value) in settings {
            let _ = writeln!(conf, "{key} = {}", conf_quote(&value));
        }
        Ok(conf)
    }

    fn psql_at(
        &self,
        conninfo: &str,
        dbname: &str,
        password: Option<&str>,
        sql: &str,
    ) -> Result<String, LocalDbError> {
        let mut cmd = Command::new(&self.psql_bin);
        scrub_env(&mut cmd);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-f",
            "-",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        let child = cmd
            .spawn()
            .map_err(|e| io_err(format!("could not run {}", self.psql_bin.display()), e))?;
        let (output, write_result) = harness::feed_and_wait(child, sql);
        let output =
            output.map_err(|e| io_err(format!("could not run {}", self.psql_bin.display()), e))?;
        if !output.status.success() {
            return Err(LocalDbError::Sql {
                dbname: dbname.to_owned(),
                conninfo: conninfo.to_owned(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr)
                    .trim_end()
                    .to_owned(),
            });
        }
        // A write error with a successful exit means psql never saw the whole script.
        write_result.map_err(|e| io_err("could not send SQL to psql".to_owned(), e))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn stop_server(&self) -> Result<(), LocalDbError> {
        let mut cmd = self.runner.command(&self.bindir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["stop", "-m", "immediate", "-w", "-t", "20", "-s"]);
        let pg_ctl_problem = match run_output(cmd, "pg_ctl stop") {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => format!(
                "pg_ctl stop exited with {}: {}",
                out.status,
                output_text(&out)
            ),
            Err(e) => e.to_string(),
        };

        let pid_file = self.data_dir.join("postmaster.pid");
        let pid = match std::fs::read_to_string(&pid_file) {
            Ok(text) => text
                .lines()
                .next()
                .and_then(|line| line.trim().parse::<u32>().ok()),
            // No pid file: nothing is running (e.g. a start that never got going).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(LocalDbError::StopFailed {
                    data_dir: self.data_dir.clone(),
                    detail: format!(
                        "{pg_ctl_problem}; could not read {}: {e}",
                        pid_file.display()
                    ),
                })
            }
        };
        let Some(pid) = pid.filter(|&p| p > 1) else {
            return Err(LocalDbError::StopFailed {
                data_dir: self.data_dir.clone(),
                detail: format!("{pg_ctl_problem}; {} holds no pid", pid_file.display()),
            });
        };
        if !is_postgres_process(pid) {
            return Ok(());
        }
        warn!(pid, problem = %pg_ctl_problem, "pg_ctl stop failed, killing the postmaster");
        let mut kill = Command::new("kill");
        kill.arg("-9").arg(pid.to_string());
        if let Err(e) = run_checked(kill, "kill -9 of the postmaster", "kill it by hand") {
            warn!(pid, error = %e, "kill -9 failed");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_postgres_process(pid) {
            if Instant::now() > deadline {
                return Err(LocalDbError::StopFailed {
                    data_dir: self.data_dir.clone(),
                    detail: format!("{pg_ctl_problem}; pid {pid} survived kill -9 for 10 s"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        harness::log_tail(&self.data_dir.join("server.log"))
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            warn!(error = %e, "could not stop local PostgreSQL");
        }
        if let Some(root) = self.root.take() {
            remove_instance_dir(root, "PostgreSQL");
        }
    }
}

/// Runs server-side programs, as `postgres` when we are root.
#[derive(Debug, Clone)]
struct Runner {
    runuser: Option<PathBuf>,
}

impl Runner {
    fn detect() -> Result<Runner, LocalDbError> {
        if !running_as_root() {
            return Ok(Runner { runuser: None });
        }
        if !harness::user_exists(SERVER_USER) {
            return Err(LocalDbError::CannotDropRoot {
                problem: format!("there is no `{SERVER_USER}` user"),
                fix: "install the postgresql package (it creates the user) or run \
                      `useradd --system --user-group --home-dir /var/lib/postgresql postgres`, \
                      or run as a non-root user"
                    .to_owned(),
            });
        }
        let runuser = [
            "/usr/sbin/runuser",
            "/sbin/runuser",
            "/usr/bin/runuser",
            "/bin/runuser",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_executable(p))
        .or_else(|| which("runuser"));
        match runuser {
            Some(runuser) => Ok(Runner {
                runuser: Some(runuser),
            }),
            None => Err(LocalDbError::CannotDropRoot {
                problem: "`runuser` was not found".to_owned(),
                fix:
                    "install util-linux (`apt-get install -y util-linux`) or run as a non-root user"
                        .to_owned(),
            }),
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = match &self.runuser {
            Some(runuser) => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", SERVER_USER, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        scrub_env(&mut cmd);
        // The server user may not be able to enter our working directory.
        cmd.current_dir("/").stdin(Stdio::null());
        cmd
    }

    fn chown(&self, path: &Path) -> Result<(), LocalDbError> {
        if self.runuser.is_none() {
            return Ok(());
        }
        Ok(harness::chown(
            SERVER_USER,
            &[path],
            true,
            "handing the cluster dir to the postgres user",
        )?)
    }
}

fn validate_options(opts: &LocalPgOptions) -> Result<(), LocalDbError> {
    if opts.superuser.is_empty() {
        return Err(LocalDbError::InvalidOptions(
            "superuser must not be empty".to_owned(),
        ));
    }
    if opts.superuser.contains('\0') {
        return Err(LocalDbError::InvalidOptions(
            "superuser must not contain NUL".to_owned(),
        ));
    }
    if let Some(password) = opts.auth.password() {
        // PostgreSQL turns an empty password into "no password", locking us out.
        if password.is_empty() || password.contains('\0') {
            return Err(LocalDbError::InvalidOptions(
                "the password must be non-empty and contain no NUL; use LocalAuth::Trust for no password".to_owned(),
            ));
        }
    }
    harness::validate_extra_conf(
        &opts.extra_conf,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '.',
        "PostgreSQL setting name",
        |key| key.to_ascii_lowercase(),
        &RESERVED_SETTINGS,
    )
}

fn has_server_bins(dir: &Path) -> Vec<&'static str> {
    SERVER_BINS
        .iter()
        .copied()
        .filter(|bin| !is_executable(&dir.join(bin)))
        .collect()
}

/// `dir`, if it holds the server programs.
fn checked_bindir(dir: PathBuf) -> Result<PathBuf, LocalDbError> {
    let missing = has_server_bins(&dir);
    if missing.is_empty() {
        return Ok(dir);
    }
    Err(LocalDbError::BadBinDir {
        bindir: dir,
        missing: missing.join(", "),
    })
}

fn discover_bindir() -> Result<PathBuf, LocalDbError> {
    if let Some(dir) = std::env::var_os("DUPLEX_PG_BINDIR").filter(|v| !v.is_empty()) {
        return checked_bindir(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            // Debian's pg_config reports the client-only /usr/bin.
            if has_server_bins(&dir).is_empty() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let key = name
                .split('.')
                .map(|part| part.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()?;
            Some((key, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|(_, dir)| dir)
        .find(|dir| has_server_bins(dir).is_empty())
        .ok_or(LocalDbError::BinariesNotFound)
}

fn find_psql(bindir: &Path) -> Result<PathBuf, LocalDbError> {
    [bindir.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|p| is_executable(p))
        .or_else(|| which("psql"))
        .ok_or_else(|| LocalDbError::PsqlNotFound {
            bindir: bindir.to_path_buf(),
        })
}

/// The directory for cluster and template dirs, kept short enough for the
/// unix socket path limit.
fn base_temp_dir() -> PathBuf {
    // root + "/duplex-pg-XXXXXX" + "/.s.PGSQL.65535"
    harness::base_temp_dir(
        1 + CLUSTER_PREFIX.len() + 6 + "/.s.PGSQL.65535".len(),
        MAX_SOCKET_PATH,
    )
}

/// The initdb'd templates, one per (bindir, superuser).
static TEMPLATES: Templates<(PathBuf, String)> = Templates::new(TEMPLATE_PREFIX, "PostgreSQL");

/// Returns the initdb'd template for (bindir, superuser), creating it on
/// first use (see [`Templates::get_or_init`]).
fn template_for(bindir: &Path, superuser: &str, runner: &Runner) -> Result<PathBuf, LocalDbError> {
    TEMPLATES.get_or_init(
        (bindir.to_path_buf(), superuser.to_owned()),
        &base_temp_dir(),
        |dir| init_template(dir, bindir, superuser, runner),
    )
}

fn init_template(
    dir: &Path,
    bindir: &Path,
    superuser: &str,
    runner: &Runner,
) -> Result<PathBuf, LocalDbError> {
    runner.chown(dir)?;
    let data = dir.join("data");
    let mut cmd = runner.command(&bindir.join("initdb"));
    cmd.arg("-D").arg(&data).arg("-U").arg(superuser).args([
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    let started = Instant::now();
    run_checked(
        cmd,
        "initdb of the template cluster",
        "check that the server user can write to the temp dir, or set DUPLEX_PG_BINDIR to another installation",
    )?;
    debug!(elapsed_ms = started.elapsed().as_millis() as u64, path = %data.display(), "initdb template ready");
    Ok(data)
}

fn is_postgres_process(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim().starts_with("postgres"),
        // Without /proc we cannot tell; the pid file is our best evidence.
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// Drops PG* variables so the caller's environment (PGDATA, PGSSLMODE,
/// PGSERVICE, ...) cannot redirect or break the harness, and pins messages to
/// English so the log checks work.
fn path_str(path: &Path) -> Result<&str, LocalDbError> {
    harness::path_str(path)
}

fn scrub_env(cmd: &mut Command) {
    harness::scrub_env(cmd, &["PG"]);
}

/// libpq conninfo value quoting: bare when safe, else single-quoted with `\`
/// escapes.
fn conninfo_quote(value: &str) -> Cow<'_, str> {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if bare {
        return Cow::Borrowed(value);
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// SQL identifier quoting; always quoted so names keep their case.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQL string literal; relies on standard_conforming_strings (on since 9.1),
/// so backslashes need no escaping.
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// postgresql.conf value; every setting type accepts the quoted form, and the
/// conf parser treats backslash as an escape.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn hba_conf(auth: &LocalAuth, tls: bool) -> String {
    let method = auth.hba_method();
    let mut hba = String::from(
        "# Written by duplex's local PostgreSQL harness (src/localdb/pg.rs).\n\
         # The socket dir is private to this cluster, so local connections trust.\n\
         local all all trust\n\
         local replication all trust\n",
    );
    if tls {
        let _ = writeln!(hba, "hostssl all all {HOST}/32 {method}");
        let _ = writeln!(hba, "hostssl replication all {HOST}/32 {method}");
    }
    let _ = writeln!(hba, "host all all {HOST}/32 {method}");
    let _ = writeln!(hba, "host replication all {HOST}/32 {method}");
    hba
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted_per_libpq() {
        assert_eq!(conninfo_quote("postgres"), "postgres");
        assert_eq!(conninfo_quote(""), "''");
        assert_eq!(conninfo_quote("a b"), "'a b'");
        assert_eq!(conninfo_quote(r"it's\x"), r"'it\'s\\x'");
    }

    #[test]
    fn sql_and_conf_quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal(r"it's \n"), r"'it''s \n'");
        assert_eq!(conf_quote(r"it's \n"), r"'it''s \\n'");
    }

    #[test]
    fn hba_keeps_plain_host_lines_with_tls() {
        let hba = hba_conf(
            &LocalAuth::Md5 {
                password: "x".to_owned(),
            },
            true,
        );
        assert!(hba.contains("hostssl all all 127.0.0.1/32 md5"));
        assert!(hba.contains("host all all 127.0.0.1/32 md5"));
        assert!(hba.contains("host replication all 127.0.0.1/32 md5"));
        assert!(hba.contains("local all all trust"));
    }
}
