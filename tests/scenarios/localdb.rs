//! Tests for the throwaway server harness (`duplex::localdb`), PostgreSQL and
//! MariaDB. They need the server binaries and fail (rather than skip) without
//! them, so a CI image that lost them is noticed. What holds for both engines (a
//! dropped server is gone, servers started at once do not collide) runs from one
//! body per engine.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn accepts_connections(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// A self-signed certificate for localhost, made with openssl: (cert.pem,
/// key.pem) in `dir`.
fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running openssl to make a test certificate");
    assert!(status.success());
    (cert, key)
}

/// What the checks both engines share need of a throwaway server.
trait Local: Sized + Send + 'static {
    fn start_default() -> Self;
    fn port(&self) -> u16;
    /// The directory the server lives in, removed on drop.
    fn home(&self) -> PathBuf;
}

/// Dropped without a stop: the server is killed and its directory removed.
fn drop_without_stop_kills_server<S: Local>() {
    let server = S::start_default();
    let home = server.home();
    let port = server.port();
    drop(server);
    assert!(!home.exists());
    assert!(!accepts_connections(port));
}

/// Two servers started at the same moment get distinct ports.
fn start_two_at_once<S: Local>() -> Vec<S> {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                S::start_default()
            })
        })
        .collect();
    let servers: Vec<S> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(servers[0].port(), servers[1].port());
    servers
}

mod postgresql {
    use super::*;
    use duplex::localdb::pg::*;

    fn start(opts: LocalPgOptions) -> LocalPostgres {
        LocalPostgres::start(opts).unwrap_or_else(|e| panic!("starting local PostgreSQL: {e}"))
    }

    async fn connect(
        conninfo: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config: tokio_postgres::Config = conninfo.parse()?;
        config.password(password);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    #[test]
    fn trust_cluster_runs_sql_and_cleans_up() {
        let mut pg = start(LocalPgOptions::default());
        assert_eq!(pg.host(), "127.0.0.1");
        assert_eq!(pg.superuser(), "postgres");
        assert_eq!(pg.password(), None);
        assert!(
            pg.server_version_num() >= 100000,
            "{}",
            pg.server_version_num()
        );
        assert_eq!(
            pg.conninfo("db"),
            format!("host=127.0.0.1 port={} user=postgres dbname=db", pg.port())
        );

        assert_eq!(pg.psql("postgres", "select 1").unwrap().trim(), "1");
        assert_eq!(
            pg.psql("postgres", "show wal_level").unwrap().trim(),
            "logical"
        );
        assert_eq!(
            pg.psql("postgres", "show track_commit_timestamp")
                .unwrap()
                .trim(),
            "on"
        );

        let odd_name = "it's a \"db\"";
        pg.create_database(odd_name).unwrap();
        assert_eq!(
            pg.psql(odd_name, "select current_database()")
                .unwrap()
                .trim(),
            odd_name
        );

        let err = pg
            .psql("postgres", "select * from no_such_table")
            .unwrap_err();
        assert!(err.to_string().contains("no_such_table"), "{err}");

        let data_dir = pg.data_dir().to_path_buf();
        let port = pg.port();
        assert!(data_dir.join("server.log").exists());
        assert!(accepts_connections(port));

        pg.stop().unwrap();
        pg.stop().unwrap();
        assert!(
            !accepts_connections(port),
            "port {port} still open after stop"
        );
        assert!(data_dir.exists(), "stop keeps the data dir until drop");
        assert!(pg.psql("postgres", "select 1").is_err());

        drop(pg);
        assert!(!data_dir.exists(), "{} still exists", data_dir.display());
        assert!(
            !accepts_connections(port),
            "port {port} still open after drop"
        );
    }

    #[tokio::test]
    async fn scram_cluster_checks_password() {
        let pg = start(LocalPgOptions {
            auth: LocalAuth::Scram {
                password: "s3cret 'quoted' \\ pw".to_owned(),
            },
            // A name that needs quoting in conninfo and SQL.
            superuser: "Duplex Admin".to_owned(),
            ..LocalPgOptions::default()
        });
        assert_eq!(pg.superuser(), "Duplex Admin");
        assert_eq!(pg.password(), Some("s3cret 'quoted' \\ pw"));

        let client = connect(&pg.conninfo("postgres"), "s3cret 'quoted' \\ pw")
            .await
            .unwrap();
        let row = client
            .query_one(
                "select current_user::text, (select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = current_user)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "Duplex Admin");
        assert!(row.get::<_, bool>(1));

        let err = connect(&pg.conninfo("postgres"), "wrong").await;
        assert!(err.is_err(), "wrong password was accepted");

        // psql goes over TCP too, with the password.
        assert_eq!(pg.psql("postgres", "select 1").unwrap().trim(), "1");
    }

    #[tokio::test]
    async fn md5_cluster_stores_md5_password() {
        let pg = start(LocalPgOptions {
            auth: LocalAuth::Md5 {
                password: "md5-pw".to_owned(),
            },
            ..LocalPgOptions::default()
        });
        assert_eq!(
            pg.psql(
                "postgres",
                "select rolpassword like 'md5%' from pg_authid where rolname = current_user"
            )
            .unwrap()
            .trim(),
            "t"
        );
        let client = connect(&pg.conninfo("postgres"), "md5-pw").await.unwrap();
        let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        assert!(connect(&pg.conninfo("postgres"), "nope").await.is_err());
    }

    #[test]
    fn concurrent_clusters_get_distinct_ports() {
        let clusters: Vec<LocalPostgres> = start_two_at_once();
        assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
        for pg in &clusters {
            assert_eq!(pg.psql("postgres", "select 1").unwrap().trim(), "1");
            assert_eq!(
                pg.psql("postgres", "show port").unwrap().trim(),
                pg.port().to_string()
            );
        }
    }

    #[tokio::test]
    async fn tls_cluster_accepts_tls_and_plain() {
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_certificate(certs.path());

        let pg = start(LocalPgOptions {
            tls: Some(LocalTls {
                cert_pem_path: cert,
                key_pem_path: key,
            }),
            extra_conf: vec![("application_name".to_owned(), "tls test".to_owned())],
            ..LocalPgOptions::default()
        });
        // psql defaults to sslmode=prefer, so this connection is encrypted.
        assert_eq!(
            pg.psql(
                "postgres",
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
            )
            .unwrap()
            .trim(),
            "t"
        );
        assert_eq!(pg.psql("postgres", "show ssl").unwrap().trim(), "on");

        // The plain `host` lines still admit non-TLS clients.
        let client = connect(&pg.conninfo("postgres"), "").await.unwrap();
        let ssl: bool = client
            .query_one(
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!ssl);
    }

    #[test]
    fn bad_options_are_rejected_with_a_reason() {
        let err = LocalPostgres::start(LocalPgOptions {
            auth: LocalAuth::Scram {
                password: String::new(),
            },
            ..LocalPgOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");

        let err = LocalPostgres::start(LocalPgOptions {
            extra_conf: vec![("port".to_owned(), "5432".to_owned())],
            ..LocalPgOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn drop_without_stop_kills_server() {
        super::drop_without_stop_kills_server::<LocalPostgres>();
    }

    impl Local for LocalPostgres {
        fn start_default() -> Self {
            start(LocalPgOptions::default())
        }
        fn port(&self) -> u16 {
            LocalPostgres::port(self)
        }
        fn home(&self) -> PathBuf {
            self.data_dir().to_path_buf()
        }
    }
}

mod mariadb {
    use super::*;
    use duplex::localdb::mysql::*;
    use duplex::localdb::pg::LocalTls;
    use mysql_async::prelude::*;

    fn start(opts: LocalMariaDbOptions) -> LocalMariaDb {
        LocalMariaDb::start(opts).unwrap_or_else(|e| panic!("starting local MariaDB: {e}"))
    }

    /// Connects over TCP. mysql_async by default reconnects through the unix
    /// socket it finds in `@@socket` when the host is loopback, which would test
    /// root@localhost instead of the TCP account.
    async fn connect(url: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
        let opts = mysql_async::Opts::from_url(url)?;
        mysql_async::Conn::new(mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false)).await
    }

    type BinlogVars = (i64, String, String, String, u32);

    async fn binlog_vars(conn: &mut mysql_async::Conn) -> BinlogVars {
        conn.query_first(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id",
        )
        .await
        .unwrap()
        .unwrap()
    }

    #[tokio::test]
    async fn default_server_has_row_binlog_and_cleans_up() {
        let mut db = start(LocalMariaDbOptions::default());
        assert_eq!(db.host(), "127.0.0.1");
        assert_eq!(db.root_password(), None);
        assert!(
            db.server_version().contains("MariaDB"),
            "{}",
            db.server_version()
        );
        assert_eq!(
            db.url("app"),
            format!("mysql://root@127.0.0.1:{}/app", db.port())
        );
        assert_eq!(db.url_with_password("app"), db.url("app"));
        assert_eq!(db.server_id(), u32::from(db.port()));

        let mut conn = connect(&db.url("mysql")).await.unwrap();
        let user: String = conn
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user, "root@127.0.0.1");
        let vars = binlog_vars(&mut conn).await;
        assert_eq!(
            vars,
            (
                1,
                "ROW".to_owned(),
                "FULL".to_owned(),
                "FULL".to_owned(),
                db.server_id()
            )
        );
        let (port, tz, collation): (u16, String, String) = conn
            .query_first("SELECT @@port, @@time_zone, @@collation_server")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(port, db.port());
        assert_eq!(tz, "+00:00");
        assert_eq!(collation, "utf8mb4_bin");
        conn.disconnect().await.unwrap();

        // Harness setup (accounts) stays out of the binlog.
        let events = db.sql(None, "SHOW BINLOG EVENTS").unwrap();
        assert!(!events.to_ascii_uppercase().contains("GRANT"), "{events}");

        let odd_name = "it`s a db";
        db.create_database(odd_name).unwrap();
        assert_eq!(
            db.sql(Some(odd_name), "SELECT DATABASE()").unwrap().trim(),
            odd_name
        );
        db.sql(
            Some(odd_name),
            "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10)); INSERT INTO t VALUES (1, 'a'), (2, 'A');",
        )
        .unwrap();
        // Over TCP, with the database name percent-encoded in the URL.
        let mut conn = connect(&db.url(odd_name)).await.unwrap();
        let (name, count): (String, i64) = conn
            .query_first("SELECT DATABASE(), (SELECT COUNT(DISTINCT s) FROM t)")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(name, odd_name);
        assert_eq!(count, 2, "the database collation is case-sensitive");
        conn.disconnect().await.unwrap();

        let err = db.sql(None, "SELECT * FROM no_such_table").unwrap_err();
        assert!(err.to_string().contains("no_such_table"), "{err}");

        let root = db.socket_path().parent().unwrap().to_path_buf();
        let port = db.port();
        assert!(db.socket_path().exists());
        assert!(db.binlog_dir().join("mysql-bin.index").exists());
        assert!(db.error_log_path().exists());
        assert!(accepts_connections(port));

        db.stop().unwrap();
        db.stop().unwrap();
        assert!(
            !accepts_connections(port),
            "port {port} still open after stop"
        );
        assert!(root.exists(), "stop keeps the dir until drop");
        assert!(db.sql(None, "SELECT 1").is_err());

        drop(db);
        assert!(!root.exists(), "{} still exists", root.display());
        assert!(
            !accepts_connections(port),
            "port {port} still open after drop"
        );
    }

    #[test]
    fn concurrent_servers_get_distinct_ports_and_server_ids() {
        let servers: Vec<LocalMariaDb> = start_two_at_once();
        assert_ne!(servers[0].server_id(), servers[1].server_id());
        assert_ne!(servers[0].socket_path(), servers[1].socket_path());
        for db in &servers {
            assert_eq!(
                db.sql(None, "SELECT @@port, @@server_id").unwrap().trim(),
                format!("{}	{}", db.port(), db.server_id())
            );
        }
    }

    #[tokio::test]
    async fn mixed_binlog_format_and_explicit_server_id() {
        let db = start(LocalMariaDbOptions {
            binlog_format: "MIXED".to_owned(),
            server_id: Some(4242),
            ..LocalMariaDbOptions::default()
        });
        assert_eq!(db.server_id(), 4242);
        let mut conn = connect(&db.url("mysql")).await.unwrap();
        let vars = binlog_vars(&mut conn).await;
        assert_eq!(vars.1, "MIXED");
        assert_eq!(vars.4, 4242);
        conn.disconnect().await.unwrap();
    }

    #[tokio::test]
    async fn password_is_required_over_tcp() {
        let password = "p@ss:w/rd %'\"\\#x";
        let db = start(LocalMariaDbOptions {
            root_password: Some(password.to_owned()),
            ..LocalMariaDbOptions::default()
        });
        assert_eq!(db.root_password(), Some(password));
        assert!(!db.url("mysql").contains("p%40ss"));
        let url = db.url_with_password("mysql");
        assert!(
            url.starts_with("mysql://root:p%40ss%3Aw%2Frd%20%25%27%22%5C%23x@127.0.0.1:"),
            "{url}"
        );

        let mut conn = connect(&url).await.unwrap();
        let user: String = conn
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user, "root@127.0.0.1");
        conn.disconnect().await.unwrap();

        assert!(
            connect(&db.url("mysql")).await.is_err(),
            "no password was accepted"
        );
        let wrong = url.replace("p%40ss", "wrong");
        assert!(
            connect(&wrong).await.is_err(),
            "a wrong password was accepted"
        );

        // The harness's own socket connection knows the password.
        assert_eq!(db.sql(None, "SELECT 1").unwrap().trim(), "1");
        assert_eq!(
            db.sql(
                None,
                "SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'root' AND JSON_VALUE(Priv, '$.authentication_string') = ''"
            )
            .unwrap()
            .trim(),
            "0",
            "some root account has no password"
        );
    }

    #[tokio::test]
    async fn restart_keeps_data_and_port_and_applies_new_settings() {
        let mut db = start(LocalMariaDbOptions {
            root_password: Some("pw".to_owned()),
            extra_conf: vec![("max_connections".to_owned(), "50".to_owned())],
            ..LocalMariaDbOptions::default()
        });
        let port = db.port();
        let server_id = db.server_id();
        db.create_database("app").unwrap();
        db.sql(
            Some("app"),
            "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (7);",
        )
        .unwrap();
        assert_eq!(
            db.sql(None, "SELECT @@max_connections").unwrap().trim(),
            "50"
        );

        db.restart_with(vec![
            ("max-connections".to_owned(), "77".to_owned()),
            ("binlog_format".to_owned(), "STATEMENT".to_owned()),
        ])
        .unwrap();
        assert_eq!(db.port(), port);
        assert_eq!(db.server_id(), server_id);
        assert_eq!(db.sql(Some("app"), "SELECT id FROM t").unwrap().trim(), "7");
        let mut conn = connect(&db.url_with_password("app")).await.unwrap();
        let (max_conn, format): (u32, String) = conn
            .query_first("SELECT @@max_connections, @@binlog_format")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((max_conn, format.as_str()), (77, "STATEMENT"));
        conn.disconnect().await.unwrap();

        db.restart().unwrap();
        assert_eq!(
            db.sql(None, "SELECT @@max_connections").unwrap().trim(),
            "77"
        );
        assert!(db
            .restart_with(vec![("port".to_owned(), "1".to_owned())])
            .is_err());
        assert_eq!(db.sql(None, "SELECT 1").unwrap().trim(), "1");
    }

    #[tokio::test]
    async fn tls_server_accepts_tls_and_plain() {
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_certificate(certs.path());
        // Both rustls backends are compiled in (via other dependencies), so rustls
        // cannot pick one by itself.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let db = start(LocalMariaDbOptions {
            tls: Some(LocalTls {
                cert_pem_path: cert,
                key_pem_path: key,
            }),
            ..LocalMariaDbOptions::default()
        });
        assert_eq!(db.sql(None, "SELECT @@have_ssl").unwrap().trim(), "YES");

        let opts = mysql_async::OptsBuilder::from_opts(
            mysql_async::Opts::from_url(&db.url("mysql")).unwrap(),
        )
        .prefer_socket(false)
        .ssl_opts(mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true));
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let cipher: Option<(String, String)> = conn
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .await
            .unwrap();
        let cipher = cipher.unwrap().1;
        assert!(!cipher.is_empty(), "the connection is not encrypted");
        conn.disconnect().await.unwrap();

        let mut plain = connect(&db.url("mysql")).await.unwrap();
        let cipher: (String, String) = plain
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cipher.1, "");
        plain.disconnect().await.unwrap();
    }

    #[test]
    fn bad_options_are_rejected_with_a_reason() {
        let err = LocalMariaDb::start(LocalMariaDbOptions {
            root_password: Some(String::new()),
            ..LocalMariaDbOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("root_password"), "{err}");

        let err = LocalMariaDb::start(LocalMariaDbOptions {
            extra_conf: vec![("socket".to_owned(), "/tmp/x.sock".to_owned())],
            ..LocalMariaDbOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("socket"), "{err}");

        let err = LocalMariaDb::start(LocalMariaDbOptions {
            binlog_format: "FANCY".to_owned(),
            ..LocalMariaDbOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("FANCY"), "{err}");
    }

    #[test]
    fn bad_setting_reports_the_error_log() {
        let err = LocalMariaDb::start(LocalMariaDbOptions {
            extra_conf: vec![("no_such_setting_xyz".to_owned(), "1".to_owned())],
            ..LocalMariaDbOptions::default()
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("did not start"), "{text}");
        assert!(text.contains("no_such_setting_xyz"), "{text}");
    }

    #[test]
    fn drop_without_stop_kills_server() {
        super::drop_without_stop_kills_server::<LocalMariaDb>();
    }

    impl Local for LocalMariaDb {
        fn start_default() -> Self {
            start(LocalMariaDbOptions::default())
        }
        fn port(&self) -> u16 {
            LocalMariaDb::port(self)
        }
        fn home(&self) -> PathBuf {
            self.data_dir().parent().unwrap().to_path_buf()
        }
    }
}
