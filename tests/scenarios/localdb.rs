//! Tests for the throwaway PostgreSQL harness. They need the PostgreSQL server
//! binaries and fail (rather than skip) without them, so a CI image that lost
//! them is noticed.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use duplex::localdb::pg::*;

fn start(opts: LocalPgOptions) -> LocalPostgres {
    LocalPostgres::start(opts).unwrap_or_else(|e| panic!("starting local PostgreSQL: {e}"))
}

fn accepts_connections(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
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

#[test]
fn drop_without_stop_kills_server() {
    let pg = start(LocalPgOptions::default());
    let data_dir = pg.data_dir().to_path_buf();
    let port = pg.port();
    drop(pg);
    assert!(!data_dir.exists());
    assert!(!accepts_connections(port));
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
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                start(LocalPgOptions::default())
            })
        })
        .collect();
    let clusters: Vec<LocalPostgres> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(clusters[0].port(), clusters[1].port());
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
