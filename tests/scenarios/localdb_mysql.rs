//! Tests for the throwaway MariaDB harness. They need the MariaDB server and
//! client binaries and fail (rather than skip) without them, so a CI image
//! that lost them is noticed.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use duplex::localdb::mysql::*;
use duplex::localdb::pg::LocalTls;
use mysql_async::prelude::*;

fn start(opts: LocalMariaDbOptions) -> LocalMariaDb {
    LocalMariaDb::start(opts).unwrap_or_else(|e| panic!("starting local MariaDB: {e}"))
}

fn accepts_connections(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
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
fn drop_without_stop_kills_server() {
    let db = start(LocalMariaDbOptions::default());
    let root = db.data_dir().parent().unwrap().to_path_buf();
    let port = db.port();
    drop(db);
    assert!(!root.exists());
    assert!(!accepts_connections(port));
}

#[test]
fn concurrent_servers_get_distinct_ports_and_server_ids() {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                start(LocalMariaDbOptions::default())
            })
        })
        .collect();
    let servers: Vec<LocalMariaDb> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(servers[0].port(), servers[1].port());
    assert_ne!(servers[0].server_id(), servers[1].server_id());
    assert_ne!(servers[0].socket_path(), servers[1].socket_path());
    for db in &servers {
        assert_eq!(
            db.sql(None, "SELECT @@port, @@server_id").unwrap().trim(),
            format!("{}\t{}", db.port(), db.server_id())
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
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
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

    let opts =
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&db.url("mysql")).unwrap())
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
