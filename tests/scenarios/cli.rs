//! The `duplex` command line against a real control database.

use std::process::Command;
use std::time::Duration;

use crate::support::{query_bool, wait_for, DuplexProcess, Pair};

fn duplex(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run duplex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_idempotent_status_shows_directions_and_a_newer_schema_is_refused() {
    let pair = Pair::start("CREATE TABLE t (id int PRIMARY KEY, v text);", &["t"]).await;
    // Pair installed the schema already: init again is a no-op that says so.
    let out = duplex(&["init", "--control", &pair.control_url]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "{out:?}"
    );
    // The server's NOTICEs ("schema ... already exists, skipping") are not
    // the DBA's business.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("NOTICE")
            && !String::from_utf8_lossy(&out.stdout).contains("NOTICE"),
        "{out:?}"
    );
    // --log-format json (or DUPLEX_LOG_FORMAT=json): every log line is one
    // JSON object.
    for (flag, env) in [(Some("json"), None), (None, Some("json"))] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_duplex"));
        cmd.args(["init", "--control", &pair.control_url])
            .env("DUPLEX_LOG", "debug");
        if let Some(f) = flag {
            cmd.args(["--log-format", f]);
        }
        if let Some(e) = env {
            cmd.env("DUPLEX_LOG_FORMAT", e);
        }
        let out = cmd.output().expect("run duplex");
        let logs = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !logs.trim().is_empty(), "{out:?}");
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(
                v.get("level").is_some() && v.get("fields").is_some(),
                "{line}"
            );
        }
    }
    // Text logs into a pipe or a file carry no colour codes (NO_COLOR unset).
    let out = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args(["init", "--control", &pair.control_url])
        .env("DUPLEX_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .expect("run duplex");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !logs.trim().is_empty() && !logs.contains('\u{1b}'),
        "{logs}"
    );

    let logdir = tempfile::tempdir().unwrap();
    let mut run = DuplexProcess::spawn(&pair.control_url, &logdir.path().join("run.log"));
    let (a, b) = (pair.client_a().await, pair.client_b().await);
    // Changes made before duplex created its slot are initial sync's business.
    wait_for("duplex streaming", Duration::from_secs(30), || {
        query_bool(&a, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'duplex_l1_s1' AND active)")
    })
    .await;
    a.execute("INSERT INTO t VALUES (1, 'x')", &[])
        .await
        .unwrap();
    wait_for("row on B", Duration::from_secs(30), || {
        query_bool(&b, "SELECT EXISTS (SELECT 1 FROM t WHERE id = 1)")
    })
    .await;
    let control = crate::support::connect(&pair.control_url).await;
    wait_for("status rows", Duration::from_secs(30), || {
        query_bool(&control, "SELECT count(*) = 2 AND bool_and(state = 'streaming') AND sum(applied_txns) = 1 FROM duplex.link_status")
    })
    .await;
    // The views a DBA queries: lag and counters per direction and per table.
    wait_for("per-table counters", Duration::from_secs(30), || {
        query_bool(
            &control,
            "SELECT count(*) = 1 AND bool_and(inserted = 1 AND updated = 0 AND deleted = 0 AND conflicts = 0 AND quarantined = 0)
               FROM duplex.table_overview WHERE table_name = 'public.t'",
        )
    })
    .await;
    // Caught up both ways (the direction that only saw echoes too).
    wait_for("no lag", Duration::from_secs(30), || {
        query_bool(
            &control,
            "SELECT count(*) = 2 AND bool_and(lag_seconds = 0 AND lag_bytes >= 0 AND config_state = 'running')
               FROM duplex.link_overview",
        )
    })
    .await;
    let out = duplex(&["status", "--tables", "--control", &pair.control_url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("a->b")
            && text.contains("b->a")
            && text.contains("streaming")
            && text.contains("public.t"),
        "{text}"
    );
    run.kill9();

    // A control schema newer than this build understands is refused, clearly.
    control.batch_execute("INSERT INTO duplex.schema_migrations (version, description) VALUES (999, 'from the future')").await.unwrap();
    let out = duplex(&["run", "--control", &pair.control_url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("version 999") && err.contains("upgrade duplex"),
        "{err}"
    );
}
