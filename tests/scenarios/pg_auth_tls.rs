//! Authentication and TLS to the sites: SCRAM-SHA-256 with the password from an
//! environment variable over verified TLS, md5 with the password from a file,
//! and the refusals a DBA needs to see (password in conninfo, untrusted CA).

use std::time::Duration;

use crate::support::{make_certificates, query_bool, wait_for, Pair, SiteSecurity};
use duplex::localdb::pg::{LocalAuth, LocalPgOptions, LocalTls};
use duplex::pipeline::PipelineTuning;

const SCHEMA: &str = "CREATE TABLE notes (id int PRIMARY KEY, body text);";

async fn assert_syncs_both_ways(pair: &Pair) {
    syncing_both_ways(pair).await.shutdown().await;
}

/// duplex started on `pair`, a row gone each way: the running duplex.
async fn syncing_both_ways(pair: &Pair) -> duplex::runner::RunHandle {
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .unwrap_or_else(|e| panic!("start duplex: {}", duplex::error_class::explained(&e, "ab")));
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.execute("INSERT INTO notes VALUES (1, 'from a')", &[])
        .await
        .unwrap();
    b.execute("INSERT INTO notes VALUES (2, 'from b')", &[])
        .await
        .unwrap();
    let t = Duration::from_secs(30);
    wait_for("a -> b", t, || {
        query_bool(&b, "SELECT EXISTS (SELECT 1 FROM notes WHERE id = 1)")
    })
    .await;
    wait_for("b -> a", t, || {
        query_bool(&a, "SELECT EXISTS (SELECT 1 FROM notes WHERE id = 2)")
    })
    .await;
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_with_password_env_over_verified_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let password = "s3cret 'quoted' \\ pass";
    std::env::set_var("DUPLEX_TEST_SCRAM_PW", password);
    let opts = LocalPgOptions {
        auth: LocalAuth::Scram {
            password: password.into(),
        },
        tls: Some(LocalTls {
            cert_pem_path: cert,
            key_pem_path: key,
        }),
        ..LocalPgOptions::default()
    };
    let security = SiteSecurity {
        tls_mode: "verify-full".into(),
        tls_ca_file: Some(ca.display().to_string()),
        password_env: [
            Some("DUPLEX_TEST_SCRAM_PW".into()),
            Some("DUPLEX_TEST_SCRAM_PW".into()),
        ],
        password_file: [None, None],
    };
    let pair = Pair::start_with(SCHEMA, &["notes"], opts, security).await;
    let run = duplex::runner::start(&pair.control_url, PipelineTuning::default())
        .await
        .expect("start duplex");
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    a.execute("INSERT INTO notes VALUES (1, 'over tls')", &[])
        .await
        .unwrap();
    wait_for("a -> b over TLS", Duration::from_secs(30), || {
        query_bool(&b, "SELECT EXISTS (SELECT 1 FROM notes WHERE id = 1)")
    })
    .await;
    // duplex's sessions on A (the walsender streaming A's changes and the
    // applier of B's changes) are encrypted.
    for pg in [&a, &b] {
        let q = "SELECT count(*) FILTER (WHERE s.ssl) = count(*) AND count(*) >= 2 FROM pg_stat_activity act
                   JOIN pg_stat_ssl s USING (pid) WHERE act.application_name LIKE 'duplex%'";
        assert!(query_bool(pg, q).await, "a duplex session without TLS");
    }
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_with_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "md5 pass\n").unwrap();
    let opts = LocalPgOptions {
        auth: LocalAuth::Md5 {
            password: "md5 pass".into(),
        },
        ..LocalPgOptions::default()
    };
    let f = Some(file.display().to_string());
    let security = SiteSecurity {
        password_file: [f.clone(), f],
        ..SiteSecurity::default()
    };
    let pair = Pair::start_with(SCHEMA, &["notes"], opts, security).await;
    assert_syncs_both_ways(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_refused_with_a_clear_error() {
    let certs = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = make_certificates(certs.path());
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = make_certificates(other.path());
    let err = refusal(cert, key, "verify-full", &other_ca).await;
    assert!(
        err.contains("site a")
            && err.to_lowercase().contains("certificate")
            && err.contains(
                "Fix: the server's certificate is not signed by a CA in duplex.sites tls_ca_file"
            ),
        "unclear error: {err}"
    );
}

/// Why duplex refuses to start on a pair whose servers present `cert`
/// (`key`), under `mode` with `ca` as tls_ca_file: the error and its fix.
async fn refusal(
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    mode: &str,
    ca: &std::path::Path,
) -> String {
    let opts = LocalPgOptions {
        tls: Some(LocalTls {
            cert_pem_path: cert,
            key_pem_path: key,
        }),
        ..LocalPgOptions::default()
    };
    let security = SiteSecurity {
        tls_mode: mode.into(),
        tls_ca_file: Some(ca.display().to_string()),
        ..SiteSecurity::default()
    };
    let pair = Pair::start_with(SCHEMA, &["notes"], opts, security).await;
    match duplex::runner::start(&pair.control_url, PipelineTuning::default()).await {
        Ok(_) => panic!("duplex connected to a server whose certificate it cannot trust"),
        Err(e) => duplex::error_class::explained(&e, "ab"),
    }
}

/// A self-signed certificate for 127.0.0.1 made by PostgreSQL's documented
/// recipe (`openssl req -x509`: marked as a CA), as `dir/name.crt` and
/// `dir/name.key`.
fn self_signed_certificate(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-text",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-out",
            &crt,
            "-keyout",
            &key,
        ])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{out:?}");
    (dir.join(crt), dir.join(key))
}

/// PostgreSQL's own recipe for a server certificate (`openssl req -x509`:
/// self-signed, marked CA:TRUE) given to duplex as the CA, as libpq takes
/// it: trusted under verify-ca and verify-full, on the SQL sessions and the
/// replication sessions alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_server_certificate_given_as_the_ca_is_trusted() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(certs.path(), "server");
    for mode in ["verify-ca", "verify-full"] {
        let opts = LocalPgOptions {
            tls: Some(LocalTls {
                cert_pem_path: cert.clone(),
                key_pem_path: key.clone(),
            }),
            ..LocalPgOptions::default()
        };
        let security = SiteSecurity {
            tls_mode: mode.into(),
            tls_ca_file: Some(cert.display().to_string()),
            ..SiteSecurity::default()
        };
        let pair = Pair::start_with(SCHEMA, &["notes"], opts, security).await;
        let run = syncing_both_ways(&pair).await;
        let (a, b) = (pair.client_a().await, pair.client_b().await);
        let t = Duration::from_secs(30);
        // Both replication sessions run over TLS.
        for site in [&a, &b] {
            wait_for("a replication session over TLS", t, || {
                query_bool(
                    site,
                    "SELECT count(*) >= 1 AND bool_and(coalesce(s.ssl, false)) FROM pg_stat_replication r LEFT JOIN pg_stat_ssl s USING (pid)",
                )
            })
            .await;
        }
        run.shutdown().await;
    }
}

/// Another server's self-signed certificate given as the CA is no trust:
/// refused, saying what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_of_another_server_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(certs.path(), "server");
    let (other, _) = self_signed_certificate(certs.path(), "other");
    let err = refusal(cert, key, "verify-ca", &other).await;
    assert!(err.contains("Fix:") && err.contains("tls_ca_file"), "{err}");
}
