//! Throwaway MariaDB servers started from the system's MariaDB binaries.
//!
//! The MySQL side of the test suite and `duplex demo` needs real servers with a
//! row-based binary log, without depending on a pre-configured service or
//! Docker. Each [`LocalMariaDb`] is a private server in its own temp dir,
//! listening on loopback and on a unix socket inside that dir, torn down when
//! the value is dropped. It is the MariaDB twin of [`super::pg::LocalPostgres`].
//!
//! `mariadb-install-db` is the slow part (seconds on a small machine), so the
//! first server for a given set of binaries initialises a template data dir
//! once per process and every server gets a `cp -a` of it. Template dirs are
//! left in the temp dir at exit (removing them would need an `atexit` hook and
//! so `unsafe`) and swept on a later run: a template whose owning process is
//! gone, or that is older than a day, is removed on first use.
//!
//! The server is configured only by the `my.cnf` the harness writes, passed
//! with `--defaults-file` so no system option file is read. The harness talks
//! to the server through the `mariadb` and `mariadb-admin` clients over the
//! unix socket, using a private `client.cnf` that carries root's password.
//!
//! When we are root (CI containers), `mariadbd` is started with
//! `--user=mysql` and drops privileges itself, and the instance dir is chowned
//! to that account. The child process is the server itself (no daemonizing),
//! so it can always be killed if a clean shutdown fails.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::harness::{
    self, copy_private_file, copy_template, free_port, instance_dir, io_err, is_executable,
    make_private, output_text, remove_instance_dir, run_checked, run_output, running_as_root,
    which, EngineError, HarnessError, Templates, HOST, START_ATTEMPTS,
};
use super::pg::LocalTls;

/// The OS account the server runs as when we are root.
const SERVER_USER: &str = "mysql";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// `sun_path` is 108 bytes; stay well below it.
const MAX_SOCKET_PATH: usize = 100;
const INSTANCE_PREFIX: &str = "duplex-my-";
const TEMPLATE_PREFIX: &str = "duplex-my-template-";
const SOCKET_NAME: &str = "mysqld.sock";
const ERROR_LOG_NAME: &str = "mariadbd.err";
/// InnoDB sizes shared by the template and the servers, so that no server
/// has to rebuild its redo log on first start.
const INNODB_BUFFER_POOL_SIZE: &str = "32M";
const INNODB_LOG_FILE_SIZE: &str = "48M";
/// Settings the harness owns (normalised: lower case, `_` for `-`); overriding
/// them would leave the handle pointing at the wrong place.
const RESERVED_SETTINGS: [&str; 7] = [
    "port",
    "socket",
    "datadir",
    "bind_address",
    "pid_file",
    "log_error",
    "user",
];

/// Errors from starting, using or stopping a [`LocalMariaDb`]; each message
/// says what failed and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum LocalMariaDbError {
    /// No `mariadbd` or `mariadb-install-db` was found.
    #[error(
        "MariaDB server binaries not found (looked for {looked_for}): install them with \
         `apt-get install -y mariadb-server` or set DUPLEX_MARIADB_BINDIR to the directory \
         holding mariadbd and mariadb-install-db"
    )]
    BinariesNotFound {
        /// The programs that were missing, with where they were looked for.
        looked_for: String,
    },

    /// `DUPLEX_MARIADB_BINDIR` is set but lacks a program.
    #[error(
        "DUPLEX_MARIADB_BINDIR={} does not contain (nor its ../sbin, ../bin or ../scripts) an \
         executable {missing}: point it at a MariaDB bin directory or unset it",
        .bindir.display()
    )]
    BadBinDir {
        /// The directory named by the variable.
        bindir: PathBuf,
        /// Programs that are missing there.
        missing: String,
    },

    /// No `mariadb` or `mariadb-admin` client was found.
    #[error(
        "MariaDB client programs not found (looked for {looked_for}): install them with \
         `apt-get install -y mariadb-client`"
    )]
    ClientNotFound {
        /// The programs that were missing, with where they were looked for.
        looked_for: String,
    },

    /// We are root and cannot hand the server to an unprivileged account.
    #[error(
        "running as root, and the MariaDB server should not, so it must run as the `mysql` \
         system user, but {problem}: {fix}"
    )]
    CannotDropRoot {
        /// What is missing.
        problem: String,
        /// How to fix it.
        fix: String,
    },

    /// The options cannot produce a working server.
    #[error("invalid LocalMariaDbOptions: {0}")]
    InvalidOptions(String),

    /// A file-system operation or a helper program failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),

    /// The server did not come up; includes the end of its error log.
    #[error(
        "MariaDB server in {} did not start (attempts: {attempts}): {reason}\n\
         --- last lines of {}/{ERROR_LOG_NAME} ---\n{log_tail}\n--- end of log ---\n\
         hint: check the log above; set DUPLEX_MARIADB_BINDIR to use another MariaDB installation",
        .dir.display(), .dir.display()
    )]
    StartFailed {
        /// The server's temp dir (removed once the error is returned from `start`).
        dir: PathBuf,
        /// How many ports were tried.
        attempts: u32,
        /// What went wrong.
        reason: String,
        /// The end of the error log.
        log_tail: String,
    },

    /// The binaries found are not MariaDB (e.g. Oracle MySQL's `mysqld`).
    #[error(
        "the server started from {} reports version {version:?}, which is not MariaDB: install \
         MariaDB (`apt-get install -y mariadb-server`) or set DUPLEX_MARIADB_BINDIR to a MariaDB \
         bin directory",
        .server.display()
    )]
    NotMariaDb {
        /// The server binary.
        server: PathBuf,
        /// `SELECT VERSION()`.
        version: String,
    },

    /// SQL run through the `mariadb` client failed.
    #[error("mariadb client on database {database:?} via {} failed ({status}): {stderr}", .socket.display())]
    Sql {
        /// Target database (empty for none).
        database: String,
        /// The unix socket used.
        socket: PathBuf,
        /// The client's exit status.
        status: String,
        /// The client's stderr.
        stderr: String,
    },

    /// The server was already stopped.
    #[error(
        "the local MariaDB server in {} is stopped: call restart() or start a new LocalMariaDb",
        .dir.display()
    )]
    NotRunning {
        /// The server's temp dir.
        dir: PathBuf,
    },

    /// Neither `mariadb-admin shutdown` nor SIGKILL got rid of the server.
    #[error(
        "could not stop the MariaDB server in {}: {detail}; kill it by hand (its pid is in {}/mariadbd.pid)",
        .dir.display(), .dir.display()
    )]
    StopFailed {
        /// The server's temp dir.
        dir: PathBuf,
        /// What was tried.
        detail: String,
    },
}

impl EngineError for LocalMariaDbError {
    fn invalid_options(message: String) -> Self {
        LocalMariaDbError::InvalidOptions(message)
    }
}

/// What kind of server to start.
#[derive(Debug, Clone)]
pub struct LocalMariaDbOptions {
    /// Root's password for every root account (`localhost`, `127.0.0.1`,
    /// `::1`, and an added `%`); default `None`: root has no password.
    pub root_password: Option<String>,
    /// `server_id`; default `None` picks one unique among live instances (the port).
    pub server_id: Option<u32>,
    /// `binlog_format`; default `ROW`.
    pub binlog_format: String,
    /// Extra `[mysqld]` settings, overriding the harness defaults of the same
    /// name (`-` and `_` are equivalent). An empty value writes the bare name,
    /// for flags such as `skip-log-bin`. `port`, `socket`, `datadir`,
    /// `bind-address`, `pid-file`, `log-error` and `user` are refused.
    pub extra_conf: Vec<(String, String)>,
    /// Enable TLS with this certificate (`ssl_cert`/`ssl_key`); default off.
    /// TLS stays optional for clients.
    pub tls: Option<LocalTls>,
}

impl Default for LocalMariaDbOptions {
    fn default() -> Self {
        LocalMariaDbOptions {
            root_password: None,
            server_id: None,
            binlog_format: "ROW".to_owned(),
            extra_conf: Vec::new(),
            tls: None,
        }
    }
}

/// A running throwaway MariaDB server on 127.0.0.1.
///
/// Dropping it shuts the server down (killing it if that fails) and deletes
/// its directory, also during a panic unwind, so a failing test leaves nothing
/// behind.
pub struct LocalMariaDb {
    /// `None` only while dropping.
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    data_dir: PathBuf,
    binlog_dir: PathBuf,
    socket_path: PathBuf,
    bins: Binaries,
    runner: Runner,
    port: u16,
    server_id: u32,
    opts: LocalMariaDbOptions,
    version: String,
    /// The `mariadbd` process; `None` when stopped.
    child: Option<Child>,
}

impl std::fmt::Debug for LocalMariaDb {
    // Hand-written so the password never ends up in test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMariaDb")
            .field("dir", &self.root_path)
            .field("port", &self.port)
            .field("server_id", &self.server_id)
            .field(
                "root_password",
                &self.opts.root_password.as_ref().map(|_| "<redacted>"),
            )
            .field("binlog_format", &self.opts.binlog_format)
            .field("version", &self.version)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl LocalMariaDb {
    /// Creates and starts a server. Blocking (std::process only), so it may be
    /// called from async code, at the cost of blocking that thread for ~1 s.
    pub fn start(opts: LocalMariaDbOptions) -> Result<LocalMariaDb, LocalMariaDbError> {
        validate_options(&opts)?;
        let bins = Binaries::discover()?;
        let runner = Runner::detect()?;
        let template = template_for(&bins, &runner)?;

        let base = base_temp_dir();
        let root = instance_dir(INSTANCE_PREFIX, &base)?;
        let root_path = root.path().to_path_buf();
        let mut db = LocalMariaDb {
            root: Some(root),
            data_dir: root_path.join("data"),
            binlog_dir: root_path.join("binlog"),
            socket_path: root_path.join(SOCKET_NAME),
            root_path,
            bins,
            runner,
            port: 0,
            server_id: opts.server_id.unwrap_or(0),
            opts,
            version: String::new(),
            child: None,
        };
        // From here on, Drop removes the temp dir if anything fails.
        db.prepare(&template)?;
        db.boot(true)?;
        if let Err(e) = db.finish_boot() {
            let log_tail = db.log_tail();
            if let Err(stop_err) = db.stop() {
                warn!(error = %stop_err, "could not stop half-started MariaDB");
            }
            return Err(match e {
                e @ LocalMariaDbError::NotMariaDb { .. } => e,
                e => LocalMariaDbError::StartFailed {
                    dir: db.root_path.clone(),
                    attempts: 1,
                    reason: e.to_string(),
                    log_tail,
                },
            });
        }
        debug!(port = db.port, server_id = db.server_id, dir = %db.root_path.display(), "local MariaDB started");
        Ok(db)
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's unix socket (inside its temp dir).
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The `mariadbd` process's id while it runs (the child is the server
    /// itself, never a daemonizing wrapper): `duplex bench` reads its CPU
    /// time from `/proc`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's `server_id`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// Root's password, `None` when root has none.
    pub fn root_password(&self) -> Option<&str> {
        self.opts.root_password.as_deref()
    }

    /// `SELECT VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// The data dir (`datadir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The dir holding the binary logs (`mysql-bin.NNNNNN`) and their index.
    pub fn binlog_dir(&self) -> &Path {
        &self.binlog_dir
    }

    /// The server's error log.
    pub fn error_log_path(&self) -> PathBuf {
        self.root_path.join(ERROR_LOG_NAME)
    }

    /// `mysql://root@127.0.0.1:PORT/db`, without the password so it can be
    /// logged; `db` is percent-encoded.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@{HOST}:{}/{}", self.port, percent_encode(db))
    }

    /// Like [`url`](Self::url), with root's password (percent-encoded) if it has one.
    pub fn url_with_password(&self, db: &str) -> String {
        match &self.opts.root_password {
            Some(password) => format!(
                "mysql://root:{}@{HOST}:{}/{}",
                percent_encode(password),
                self.port,
                percent_encode(db)
            ),
            None => self.url(db),
        }
    }

    /// Runs SQL as root over the unix socket (`mariadb -N -B`, stopping at the
    /// first error) and returns the client's raw stdout: tab-separated rows,
    /// no header, trailing newline included.
    pub fn sql(&self, db: Option<&str>, sql: &str) -> Result<String, LocalMariaDbError> {
        if self.child.is_none() {
            return Err(LocalMariaDbError::NotRunning {
                dir: self.root_path.clone(),
            });
        }
        self.run_sql(db, sql)
    }

    /// Creates database `name` (any characters allowed; it is quoted) with
    /// `utf8mb4` and the binary collation the server defaults to.
    pub fn create_database(&self, name: &str) -> Result<(), LocalMariaDbError> {
        self.sql(
            None,
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                quote_ident(name)
            ),
        )
        .map(|_| ())
    }

    /// Shuts the server down (killing it if that fails); calling it again is
    /// a no-op. The temp dir stays until drop so its log can still be read and
    /// the server restarted.
    pub fn stop(&mut self) -> Result<(), LocalMariaDbError> {
        self.stop_server()
    }

    /// Stops (if running) and starts the server again with the same data dir,
    /// port and settings.
    pub fn restart(&mut self) -> Result<(), LocalMariaDbError> {
        self.stop()?;
        self.boot(false)
    }

    /// Like [`restart`](Self::restart), replacing the options' `extra_conf`
    /// (validated first; on a validation error the server is left alone).
    pub fn restart_with(
        &mut self,
        extra_conf: Vec<(String, String)>,
    ) -> Result<(), LocalMariaDbError> {
        validate_extra_conf(&extra_conf)?;
        self.opts.extra_conf = extra_conf;
        self.restart()
    }

    /// Copies the template and writes the files that do not depend on the port.
    fn prepare(&mut self, template: &Path) -> Result<(), LocalMariaDbError> {
        let socket_len = path_str(&self.socket_path)?.len();
        if socket_len >= MAX_SOCKET_PATH {
            return Err(LocalMariaDbError::InvalidOptions(format!(
                "the unix socket path {} would be {socket_len} bytes, over the {MAX_SOCKET_PATH}-byte limit: set TMPDIR to a shorter directory",
                self.socket_path.display()
            )));
        }
        copy_template(template, &self.data_dir, "copying the template data dir")?;
        std::fs::create_dir(&self.binlog_dir)
            .map_err(|e| io_err(format!("could not create {}", self.binlog_dir.display()), e))?;
        // A private tmpdir: a starting server deletes every `#sql*` file in its
        // tmpdir, which breaks other servers' queries when they share /tmp.
        let tmp = self.root_path.join("tmp");
        std::fs::create_dir(&tmp)
            .map_err(|e| io_err(format!("could not create {}", tmp.display()), e))?;

        if let Some(tls) = &self.opts.tls {
            for (src, name) in [
                (&tls.cert_pem_path, "server-cert.pem"),
                (&tls.key_pem_path, "server-key.pem"),
            ] {
                copy_private_file(src, &self.root_path.join(name), || {
                    format!(
                        "could not copy TLS file {} into {} (check LocalTls paths)",
                        src.display(),
                        self.root_path.display()
                    )
                })?;
            }
        }
        // Before the password is set, root has none.
        self.write_client_conf(None)?;
        // The socket admits root, so nobody else may reach it.
        make_private(&self.root_path)?;
        // Files we wrote are owned by root; the server must own its dirs.
        self.runner.chown(&[&self.root_path], true)
    }

    /// Starts the server; on the first boot (`new_port`) picks the port,
    /// retrying with a fresh one if the probed one got taken.
    fn boot(&mut self, new_port: bool) -> Result<(), LocalMariaDbError> {
        let log_path = self.error_log_path();
        let conf_path = self.root_path.join("my.cnf");
        let mut attempt = 0;
        loop {
            attempt += 1;
            if new_port {
                self.port = free_port()?;
                self.server_id = self.opts.server_id.unwrap_or(u32::from(self.port));
                if let Err(e) = std::fs::remove_file(&log_path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(path = %log_path.display(), error = %e, "could not remove old MariaDB error log");
                    }
                }
            }
            std::fs::write(&conf_path, self.server_conf()?)
                .map_err(|e| io_err(format!("could not write {}", conf_path.display()), e))?;
            // Errors from option parsing go to stderr before the server opens
            // log-error, so stderr goes to the same file.
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| io_err(format!("could not open {}", log_path.display()), e))?;
            let log_file2 = log_file
                .try_clone()
                .map_err(|e| io_err(format!("could not dup {}", log_path.display()), e))?;
            self.runner.chown(&[&conf_path, &log_path], false)?;

            let mut cmd = Command::new(&self.bins.server);
            scrub_env(&mut cmd);
            cmd.arg(format!("--defaults-file={}", path_str(&conf_path)?))
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_file2);
            let child = cmd
                .spawn()
                .map_err(|e| io_err(format!("could not run {}", self.bins.server.display()), e))?;
            self.child = Some(child);

            let failure = match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            if let Err(e) = self.stop_server() {
                warn!(error = %e, "could not stop MariaDB after a failed start");
            }
            let log_tail = self.log_tail();
            let port_taken = [
                "Address already in use",
                "Do you already have another server running on port",
                "Can't start server: Bind on TCP/IP port",
            ]
            .iter()
            .any(|needle| log_tail.contains(needle));
            if new_port && port_taken && attempt < START_ATTEMPTS {
                warn!(
                    port = self.port,
                    attempt, "MariaDB could not bind its port, retrying with another"
                );
                continue;
            }
            return Err(LocalMariaDbError::StartFailed {
                dir: self.root_path.clone(),
                attempts: attempt,
                reason: failure,
                log_tail,
            });
        }
    }

    /// Polls `mariadb-admin ping` over the socket until the server answers,
    /// it exits, or [`READY_TIMEOUT`] passes; returns the reason on failure.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err("the server process is gone".to_owned());
            };
            match child.try_wait() {
                Ok(Some(status)) => return Err(format!("mariadbd exited with {status}")),
                Ok(None) => {}
                Err(e) => return Err(format!("could not check on mariadbd: {e}")),
            }
            // ping succeeds once the server answers, even if it refused the
            // login, so it works whatever root's password is.
            let mut cmd = self.client_command(&self.bins.admin);
            cmd.args(["--connect-timeout=2", "ping"]);
            if let Ok(out) = run_output(cmd, "mariadb-admin ping") {
                if out.status.success() {
                    debug!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "MariaDB answers"
                    );
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no answer to `mariadb-admin ping` on {} within {} s",
                    self.socket_path.display(),
                    READY_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Makes root usable over TCP, sets its password and checks the version.
    fn finish_boot(&mut self) -> Result<(), LocalMariaDbError> {
        // Harness setup stays out of the binary log, which replication tests read.
        let mut sql = String::from(
            "SET SESSION sql_log_bin = 0;\n\
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n",
        );
        if let Some(password) = &self.opts.root_password {
            let password = quote_literal(password);
            let _ = writeln!(
                sql,
                "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY {password};\n\
                 GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
            );
            // Each account in ALTER USER takes its own IDENTIFIED clause.
            for host in ["localhost", "127.0.0.1", "::1", "%"] {
                let _ = writeln!(
                    sql,
                    "ALTER USER IF EXISTS 'root'@'{host}' IDENTIFIED BY {password};"
                );
            }
        }
        self.run_sql(None, &sql)?;
        if self.opts.root_password.is_some() {
            let password = self.opts.root_password.clone();
            self.write_client_conf(password.as_deref())?;
        }
        let version = self.run_sql(None, "SELECT VERSION()")?.trim().to_owned();
        if !version.contains("MariaDB") {
            return Err(LocalMariaDbError::NotMariaDb {
                server: self.bins.server.clone(),
                version,
            });
        }
        self.version = version;
        Ok(())
    }

    /// The `[mysqld]` option file for the current port.
    fn server_conf(&self) -> Result<String, LocalMariaDbError> {
        let path = |p: PathBuf| path_str(&p).map(str::to_owned);
        let owned = |s: &str| Some(s.to_owned());
        let mut settings: Vec<(String, Option<String>)> = Vec::new();
        let mut set = |key: &str, value: Option<String>| settings.push((key.to_owned(), value));
        if self.runner.as_root {
            set("user", owned(SERVER_USER));
        }
        set("basedir", Some(path(self.bins.basedir.clone())?));
        set("datadir", Some(path(self.data_dir.clone())?));
        set("socket", Some(path(self.socket_path.clone())?));
        set("port", Some(self.port.to_string()));
        set("bind-address", owned(HOST));
        set("pid-file", Some(path(self.root_path.join("mariadbd.pid"))?));
        set("log-error", Some(path(self.error_log_path())?));
        set("tmpdir", Some(path(self.root_path.join("tmp"))?));
        set("server_id", Some(self.server_id.to_string()));
        set("log_bin", Some(path(self.binlog_dir.join("mysql-bin"))?));
        set("binlog_format", Some(self.opts.binlog_format.clone()));
        set("binlog_row_image", owned("FULL"));
        set("binlog_row_metadata", owned("FULL"));
        set("log_bin_compress", owned("OFF"));
        set("innodb_buffer_pool_size", owned(INNODB_BUFFER_POOL_SIZE));
        set("innodb_log_file_size", owned(INNODB_LOG_FILE_SIZE));
        set("innodb_flush_log_at_trx_commit", owned("2"));
        // io_uring/libaio setup fails in some containers (locked-memory and
        // aio-max-nr limits), and tiny test servers gain nothing from it.
        set("innodb_use_native_aio", owned("OFF"));
        set("sync_binlog", owned("0"));
        set("skip-name-resolve", None);
        set("character-set-server", owned("utf8mb4"));
        set("collation-server", owned("utf8mb4_bin"));
        set("default-time-zone", owned("+00:00"));
        set("max_connections", owned("100"));
        if self.opts.tls.is_some() {
            set(
                "ssl_cert",
                Some(path(self.root_path.join("server-cert.pem"))?),
            );
            set(
                "ssl_key",
                Some(path(self.root_path.join("server-key.pem"))?),
            );
        }
        for (key, value) in &self.opts.extra_conf {
            let norm = normalize_key(key);
            settings.retain(|(k, _)| normalize_key(k) != norm);
            let value = (!value.is_empty()).then(|| value.clone());
            settings.push((key.clone(), value));
        }

        let mut conf = String::from(
            "# Written by duplex's local MariaDB harness (src/localdb/mysql.rs).\n[mysqld]\n",
        );
        for (key, value) in settings {
            match value {
                Some(value) => {
                    let _ = writeln!(conf, "{key} = {}", conf_quote(&value));
                }
                None => {
                    let _ = writeln!(conf, "{key}");
                }
            }
        }
        Ok(conf)
    }

    /// Writes `client.cnf`, the option file the harness's client calls use.
    fn write_client_conf(&self, password: Option<&str>) -> Result<(), LocalMariaDbError> {
        let mut conf = format!(
            "# Written by duplex's local MariaDB harness (src/localdb/mysql.rs).\n\
             [client]\nuser = root\nsocket = {}\n",
            conf_quote(path_str(&self.socket_path)?)
        );
        if let Some(password) = password {
            let _ = writeln!(conf, "password = {}", conf_quote(password));
        }
        let path = self.client_conf_path();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(format!("could not open {}", path.display()), e))?;
        file.write_all(conf.as_bytes())
            .map_err(|e| io_err(format!("could not write {}", path.display()), e))?;
        Ok(())
    }

    fn client_conf_path(&self) -> PathBuf {
        self.root_path.join("client.cnf")
    }

    /// A client program reading only `client.cnf`.
    fn client_command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        scrub_env(&mut cmd);
        let mut arg = std::ffi::OsString::from("--defaults-file=");
        arg.push(self.client_conf_path());
        // --defaults-file must come first.
        cmd.arg(arg).stdin(Stdio::null());
        cmd
    }

    fn run_sql(&self, db: Option<&str>, sql: &str) -> Result<String, LocalMariaDbError> {
        let mut cmd = self.client_command(&self.bins.client);
        cmd.args(["-N", "-B", "--connect-timeout=10"]);
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| io_err(format!("could not run {}", self.bins.client.display()), e))?;
        let (output, write_result) = harness::feed_and_wait(child, sql);
        let output = output
            .map_err(|e| io_err(format!("could not run {}", self.bins.client.display()), e))?;
        if !output.status.success() {
            return Err(LocalMariaDbError::Sql {
                database: db.unwrap_or_default().to_owned(),
                socket: self.socket_path.clone(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr)
                    .trim_end()
                    .to_owned(),
            });
        }
        // A write error with a successful exit means the client never saw the whole script.
        write_result
            .map_err(|e| io_err("could not send SQL to the mariadb client".to_owned(), e))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn stop_server(&mut self) -> Result<(), LocalMariaDbError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let mut cmd = self.client_command(&self.bins.admin);
        cmd.args([
            "--connect-timeout=5",
            &format!("--shutdown-timeout={}", STOP_TIMEOUT.as_secs()),
            "shutdown",
        ]);
        let problem = match run_output(cmd, "mariadb-admin shutdown") {
            Ok(out) if out.status.success() => match wait_exit(&mut child, STOP_TIMEOUT) {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => format!(
                    "mariadbd still running {} s after `mariadb-admin shutdown`",
                    STOP_TIMEOUT.as_secs()
                ),
                Err(e) => format!("could not wait for mariadbd: {e}"),
            },
            Ok(out) => format!(
                "`mariadb-admin shutdown` exited with {}: {}",
                out.status,
                output_text(&out)
            ),
            Err(e) => e.to_string(),
        };
        // The shutdown may have failed because the server had already exited.
        if let Ok(Some(status)) = child.try_wait() {
            debug!(%status, problem = %problem, "mariadbd had already exited");
            return Ok(());
        }
        warn!(pid = child.id(), problem = %problem, "clean shutdown failed, killing mariadbd");
        if let Err(e) = child.kill() {
            warn!(pid = child.id(), error = %e, "SIGKILL of mariadbd failed");
        }
        match wait_exit(&mut child, KILL_TIMEOUT) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(LocalMariaDbError::StopFailed {
                dir: self.root_path.clone(),
                detail: format!(
                    "{problem}; pid {} survived SIGKILL for {} s",
                    child.id(),
                    KILL_TIMEOUT.as_secs()
                ),
            }),
            Err(e) => Err(LocalMariaDbError::StopFailed {
                dir: self.root_path.clone(),
                detail: format!("{problem}; could not wait for pid {}: {e}", child.id()),
            }),
        }
    }

    fn log_tail(&self) -> String {
        harness::log_tail(&self.error_log_path())
    }
}

impl Drop for LocalMariaDb {
    fn drop(&mut self) {
        if let Err(e) = self.stop_server() {
            warn!(error = %e, "could not stop local MariaDB");
        }
        if let Some(root) = self.root.take() {
            remove_instance_dir(root, "MariaDB");
        }
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The programs the harness runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binaries {
    server: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
    admin: PathBuf,
    /// The installation prefix (parent of the server's dir), for `basedir`.
    basedir: PathBuf,
}

const SERVER_NAMES: [&str; 2] = ["mariadbd", "mysqld"];
const INSTALL_DB_NAMES: [&str; 2] = ["mariadb-install-db", "mysql_install_db"];
const CLIENT_NAMES: [&str; 2] = ["mariadb", "mysql"];
const ADMIN_NAMES: [&str; 2] = ["mariadb-admin", "mysqladmin"];

impl Binaries {
    fn discover() -> Result<Binaries, LocalMariaDbError> {
        if let Some(dir) = std::env::var_os("DUPLEX_MARIADB_BINDIR").filter(|v| !v.is_empty()) {
            return Binaries::in_bindir(&PathBuf::from(dir));
        }
        let system = |dirs: &[&str], names: &[&str]| -> Option<PathBuf> {
            names
                .iter()
                .flat_map(|name| dirs.iter().map(move |dir| Path::new(dir).join(name)))
                .find(|p| is_executable(p))
                .or_else(|| names.iter().find_map(|name| which(name)))
        };
        let server = system(
            &[
                "/usr/sbin",
                "/usr/libexec",
                "/usr/bin",
                "/usr/local/sbin",
                "/usr/local/bin",
            ],
            &SERVER_NAMES,
        );
        let install_db = system(
            &["/usr/bin", "/usr/local/bin", "/usr/scripts"],
            &INSTALL_DB_NAMES,
        );
        let (server, install_db) = match (server, install_db) {
            (Some(server), Some(install_db)) => (server, install_db),
            (server, install_db) => {
                let mut missing = Vec::new();
                if server.is_none() {
                    missing.push("mariadbd or mysqld in /usr/sbin, /usr/libexec or PATH");
                }
                if install_db.is_none() {
                    missing.push("mariadb-install-db or mysql_install_db in /usr/bin or PATH");
                }
                return Err(LocalMariaDbError::BinariesNotFound {
                    looked_for: missing.join("; "),
                });
            }
        };
        let client_dirs = ["/usr/bin", "/usr/local/bin"];
        let client = system(&client_dirs, &CLIENT_NAMES);
        let admin = system(&client_dirs, &ADMIN_NAMES);
        let (client, admin) = match (client, admin) {
            (Some(client), Some(admin)) => (client, admin),
            (client, admin) => {
                let mut missing = Vec::new();
                if client.is_none() {
                    missing.push("mariadb or mysql");
                }
                if admin.is_none() {
                    missing.push("mariadb-admin or mysqladmin");
                }
                return Err(LocalMariaDbError::ClientNotFound {
                    looked_for: format!("{} in /usr/bin or PATH", missing.join(" and ")),
                });
            }
        };
        Ok(Binaries {
            basedir: prefix_of(&server),
            server,
            install_db,
            client,
            admin,
        })
    }

    /// Everything from `DUPLEX_MARIADB_BINDIR`, also looking in its sibling
    /// `sbin`, `bin` and `scripts` dirs (Debian splits server and clients;
    /// release tarballs keep `mariadb-install-db` in `scripts`).
    fn in_bindir(bindir: &Path) -> Result<Binaries, LocalMariaDbError> {
        let mut dirs = vec![bindir.to_path_buf()];
        if let Some(parent) = bindir.parent() {
            for sibling in ["sbin", "bin", "scripts"] {
                let dir = parent.join(sibling);
                if dir != bindir {
                    dirs.push(dir);
                }
            }
        }
        let mut missing = Vec::new();
        let mut find = |names: &[&'static str]| {
            let found = names
                .iter()
                .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
                .find(|p| is_executable(p));
            if found.is_none() {
                missing.push(names.join(" or "));
            }
            found.unwrap_or_default()
        };
        let server = find(&SERVER_NAMES);
        let install_db = find(&INSTALL_DB_NAMES);
        let client = find(&CLIENT_NAMES);
        let admin = find(&ADMIN_NAMES);
        if !missing.is_empty() {
            return Err(LocalMariaDbError::BadBinDir {
                bindir: bindir.to_path_buf(),
                missing: missing.join(", "),
            });
        }
        Ok(Binaries {
            basedir: prefix_of(&server),
            server,
            install_db,
            client,
            admin,
        })
    }
}

/// `/usr/sbin/mariadbd` -> `/usr`.
fn prefix_of(program: &Path) -> PathBuf {
    program
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr"))
}

/// How server-side programs are run: as `mysql` when we are root.
#[derive(Debug, Clone)]
struct Runner {
    as_root: bool,
}

impl Runner {
    fn detect() -> Result<Runner, LocalMariaDbError> {
        if !running_as_root() {
            return Ok(Runner { as_root: false });
        }
        if !harness::user_exists(SERVER_USER) {
            return Err(LocalMariaDbError::CannotDropRoot {
                problem: format!("there is no `{SERVER_USER}` user"),
                fix: "install the mariadb-server package (it creates the user) or run \
                      `useradd --system --user-group --home-dir /nonexistent mysql`, \
                      or run as a non-root user"
                    .to_owned(),
            });
        }
        Ok(Runner { as_root: true })
    }

    fn chown(&self, paths: &[&Path], recursive: bool) -> Result<(), LocalMariaDbError> {
        if !self.as_root {
            return Ok(());
        }
        Ok(harness::chown(
            SERVER_USER,
            paths,
            recursive,
            "handing the server's files to the mysql user",
        )?)
    }
}

fn normalize_key(key: &str) -> String {
    let key = key.to_ascii_lowercase().replace('-', "_");
    match key.strip_prefix("loose_") {
        Some(rest) => rest.to_owned(),
        None => key,
    }
}

fn validate_extra_conf(extra_conf: &[(String, String)]) -> Result<(), LocalMariaDbError> {
    harness::validate_extra_conf(
        extra_conf,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.',
        "MariaDB option name",
        normalize_key,
        &RESERVED_SETTINGS,
    )
}

fn validate_options(opts: &LocalMariaDbOptions) -> Result<(), LocalMariaDbError> {
    if let Some(password) = &opts.root_password {
        // An empty password means "no password" to MariaDB.
        if password.is_empty() || password.contains('\0') {
            return Err(LocalMariaDbError::InvalidOptions(
                "root_password must be non-empty and contain no NUL; use None for no password"
                    .to_owned(),
            ));
        }
    }
    if opts.server_id == Some(0) {
        return Err(LocalMariaDbError::InvalidOptions(
            "server_id 0 disables binary logging clients; use 1..=4294967295 or None".to_owned(),
        ));
    }
    let format = opts.binlog_format.to_ascii_uppercase();
    if !["ROW", "MIXED", "STATEMENT"].contains(&format.as_str()) {
        return Err(LocalMariaDbError::InvalidOptions(format!(
            "binlog_format {:?} is not ROW, MIXED or STATEMENT",
            opts.binlog_format
        )));
    }
    validate_extra_conf(&opts.extra_conf)
}

/// The directory for instance and template dirs, kept short enough for the
/// unix socket path limit.
fn base_temp_dir() -> PathBuf {
    // dir + "/duplex-my-XXXXXX/" + socket name, below MAX_SOCKET_PATH
    harness::base_temp_dir(
        1 + INSTANCE_PREFIX.len() + 6 + 1 + SOCKET_NAME.len(),
        MAX_SOCKET_PATH - 1,
    )
}

/// The installed template data dirs, one per server binary.
static TEMPLATES: Templates<PathBuf> = Templates::new(TEMPLATE_PREFIX, "MariaDB");

/// Returns the template data dir for these binaries, creating it on first
/// use (see [`Templates::get_or_init`]).
fn template_for(bins: &Binaries, runner: &Runner) -> Result<PathBuf, LocalMariaDbError> {
    TEMPLATES.get_or_init(bins.server.clone(), &base_temp_dir(), |dir| {
        init_template(dir, bins, runner)
    })
}

fn path_str(path: &Path) -> Result<&str, LocalMariaDbError> {
    harness::path_str(path)
}

fn init_template(
    dir: &Path,
    bins: &Binaries,
    runner: &Runner,
) -> Result<PathBuf, LocalMariaDbError> {
    runner.chown(&[dir], false)?;
    let data = dir.join("data");
    // mariadb-install-db also creates root@<hostname>, which skip-name-resolve
    // ignores with a warning at every start; only loopback accounts are useful.
    let extra_sql = dir.join("duplex-init.sql");
    std::fs::write(
        &extra_sql,
        "DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n\
         DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n",
    )
    .map_err(|e| io_err(format!("could not write {}", extra_sql.display()), e))?;
    let mut cmd = Command::new(&bins.install_db);
    scrub_env(&mut cmd);
    // --no-defaults must come first.
    cmd.arg("--no-defaults")
        .arg(format!("--basedir={}", path_str(&bins.basedir)?))
        .arg(format!("--datadir={}", path_str(&data)?));
    if runner.as_root {
        cmd.arg(format!("--user={SERVER_USER}"));
    }
    cmd.args([
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        // Do not insist that the hostname resolves (it often does not in containers).
        "--skip-name-resolve",
    ])
    .arg(format!("--extra-file={}", path_str(&extra_sql)?))
    .arg(format!(
        "--innodb-buffer-pool-size={INNODB_BUFFER_POOL_SIZE}"
    ))
    .arg(format!("--innodb-log-file-size={INNODB_LOG_FILE_SIZE}"))
    .arg("--innodb-use-native-aio=OFF")
    .current_dir("/");
    let started = Instant::now();
    run_checked(
        cmd,
        "mariadb-install-db of the template data dir",
        "check that the mysql user can write to the temp dir, or set DUPLEX_MARIADB_BINDIR to another installation",
    )?;
    debug!(elapsed_ms = started.elapsed().as_millis() as u64, path = %data.display(), "MariaDB template ready");
    Ok(data)
}

/// Drops MYSQL*/MARIADB* variables so the caller's environment (MYSQL_PWD,
/// MYSQL_HOST, MYSQL_UNIX_PORT, ...) cannot redirect or break the harness,
/// and pins messages to English so the log checks work.
fn scrub_env(cmd: &mut Command) {
    harness::scrub_env(cmd, &["MYSQL", "MARIADB"]);
}

/// RFC 3986 percent-encoding of everything but unreserved characters, for
/// URL userinfo and path segments.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// MariaDB identifier quoting: backticks, embedded ones doubled.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// MariaDB string literal under the default sql_mode (backslash escapes on).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Option-file value: double-quoted (so `#` is not a comment and spaces are
/// kept), with the escapes the option-file reader understands.
fn conf_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_literal(r"it's \n"), r"'it''s \\n'");
        assert_eq!(conf_quote("a \"b\" \\ #c"), r#""a \"b\" \\ #c""#);
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(
            percent_encode("p@ss:w/rd %é"),
            "p%40ss%3Aw%2Frd%20%25%C3%A9"
        );
    }

    #[test]
    fn extra_conf_is_checked() {
        assert!(validate_extra_conf(&[("max_connections".into(), "5".into())]).is_ok());
        assert!(validate_extra_conf(&[("skip-log-bin".into(), String::new())]).is_ok());
        assert!(validate_extra_conf(&[("Bind-Address".into(), "0.0.0.0".into())]).is_err());
        assert!(validate_extra_conf(&[("loose-port".into(), "1".into())]).is_err());
        assert!(validate_extra_conf(&[("a b".into(), "1".into())]).is_err());
        assert!(validate_extra_conf(&[("init_connect".into(), "x\ny".into())]).is_err());
    }

    #[test]
    fn keys_normalise() {
        assert_eq!(normalize_key("Log-Bin"), "log_bin");
        assert_eq!(normalize_key("loose-binlog_format"), "binlog_format");
    }
}
