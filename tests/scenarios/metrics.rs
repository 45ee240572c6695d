//! The metrics endpoint (`duplex run --metrics-listen`): Prometheus text at
//! `/metrics`, scraped over HTTP as Prometheus would.

use std::time::Duration;

use crate::support::{connect, http_get, query_i64, wait_for, DuplexProcess, Pair};

const SCHEMA: &str = "CREATE TABLE item (id int PRIMARY KEY, note text);";
const T: Duration = Duration::from_secs(60);

/// The value of the sample whose line starts with `series` (name and
/// labels, as rendered), if the body has it.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

/// Every `duplex_...` metric name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("duplex_")
        .filter(|(at, _)| {
            // Not inside another word (`job="duplex"`).
            text[..*at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
        })
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_applied_and_show_the_slot() {
    let pair = Pair::start(SCHEMA, &["item"]).await;
    let a = pair.client_a().await;
    let b = pair.client_b().await;
    // One key on both sites with different content: the initial sync meets
    // it as a conflict.
    a.batch_execute("INSERT INTO item VALUES (10, 'on a')")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO item VALUES (10, 'on b')")
        .await
        .unwrap();
    let mut run = crate::support::start_synced(&pair.control_url).await;
    let addr = run
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .await
        .expect("serve metrics")
        .to_string();
    a.batch_execute(
        "INSERT INTO item VALUES (1, 'a'), (2, 'b'), (3, 'c');
         UPDATE item SET note = 'x' WHERE id = 1;
         DELETE FROM item WHERE id = 2;",
    )
    .await
    .unwrap();
    wait_for("the changes on b", T, || async {
        query_i64(&b, "SELECT count(*) FROM item WHERE id = 1 AND note = 'x'").await == 1
            && query_i64(&b, "SELECT count(*) FROM item").await == 3
    })
    .await;
    let dir = r#"link="ab",source="a",target="b""#;
    let slot_series = format!("duplex_source_retained_bytes{{{dir}}} ");
    wait_for("the slot read, in the metrics", T, || async {
        let (status, text) = http_get(&addr, "/metrics").await.expect("scrape");
        assert_eq!(status, 200, "{text}");
        text.contains(&slot_series)
    })
    .await;
    let (_, body) = http_get(&addr, "/metrics").await.expect("scrape");
    for (series, want) in [
        (
            format!(r#"duplex_direction_state{{{dir},state="streaming"}}"#),
            1.0,
        ),
        (format!("duplex_direction_up{{{dir}}}"), 1.0),
        (
            // Three inserted, one copied by the initial sync.
            format!(r#"duplex_direction_applied_rows_total{{{dir},op="insert"}}"#),
            4.0,
        ),
        (
            format!(r#"duplex_direction_applied_rows_total{{{dir},op="update"}}"#),
            1.0,
        ),
        (
            format!(r#"duplex_direction_applied_rows_total{{{dir},op="delete"}}"#),
            1.0,
        ),
        (
            format!(r#"duplex_table_applied_rows_total{{{dir},table="public.item",op="update"}}"#),
            1.0,
        ),
        (
            format!("duplex_direction_applied_transactions_total{{{dir}}}"),
            1.0,
        ),
        (
            format!(r#"duplex_direction_errors_total{{{dir},class="operator"}}"#),
            0.0,
        ),
        (format!("duplex_direction_lag_seconds{{{dir}}}"), 0.0),
        (
            format!(r#"duplex_slot_wal_status{{{dir},wal_status="reserved"}}"#),
            1.0,
        ),
        (format!("duplex_retention_at_risk{{{dir}}}"), 0.0),
    ] {
        assert_eq!(sample(&body, &series), Some(want), "{series} in:\n{body}");
    }
    assert!(
        body.contains("# TYPE duplex_direction_applied_rows counter"),
        "{body}"
    );
    // The initial sync's progress, per direction and table.
    for d in [dir, r#"link="ab",source="b",target="a""#] {
        for (series, want) in [
            (
                format!(r#"duplex_initial_sync_done{{{d},table="public.item"}}"#),
                1.0,
            ),
            (
                format!(r#"duplex_initial_sync_rows_copied{{{d},table="public.item"}}"#),
                1.0,
            ),
        ] {
            assert_eq!(sample(&body, &series), Some(want), "{series} in:\n{body}");
        }
    }
    // Conflicts by table, kind and outcome add up to the directions' counts.
    let sum = |prefix: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let by_table = sum("duplex_table_conflicts_total{");
    assert!(
        by_table >= 1.0 && by_table == sum("duplex_direction_conflicts_total{"),
        "conflicts by table {by_table} in:\n{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("duplex_table_conflicts_total{")
                && l.contains(r#"table="public.item""#)
                && l.contains("kind=\"")
                && l.contains("outcome=\"")),
        "{body}"
    );
    // The latest parity check, whoever ran it.
    let (ok, out) = crate::support::duplex_cli(&pair.control_url, &["check"]);
    assert!(ok, "{out}");
    wait_for("the parity result in the metrics", T, || async {
        let (_, text) = http_get(&addr, "/metrics").await.expect("scrape");
        sample(
            &text,
            r#"duplex_parity_differences{link="ab",table="public.item"}"#,
        ) == Some(0.0)
            && text.contains(
                r#"duplex_parity_last_check_timestamp_seconds{link="ab",table="public.item"}"#,
            )
    })
    .await;
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // The alert rules and the dashboard shipped in docs/monitoring use only
    // metrics duplex serves.
    for file in ["duplex-alerts.yml", "duplex-dashboard.json"] {
        let path = format!("{}/docs/monitoring/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("docs/monitoring file");
        let names = metric_names(&text);
        assert!(names.len() >= 8, "{file}: {names:?}");
        for name in names {
            let family = name.strip_suffix("_total").unwrap_or(&name);
            assert!(
                body.contains(&format!("# TYPE {family} ")),
                "{file} uses {name}, which duplex does not serve:\n{body}"
            );
        }
    }
    let (status, _) = http_get(&addr, "/nothing").await.expect("scrape");
    assert_eq!(status, 404);
    run.shutdown().await;
}

/// `duplex run --metrics-listen ADDR`, as a DBA starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_run_serves_metrics_where_it_is_told() {
    let pair = Pair::start(SCHEMA, &["item"]).await;
    let control = connect(&pair.control_url).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("duplex.log");
    let mut duplex =
        DuplexProcess::spawn_with(&pair.control_url, &log, &["--metrics-listen", &addr]);
    wait_for("both directions streaming, in the metrics", T, || async {
        match http_get(&addr, "/metrics").await {
            Ok((200, body)) => body.contains(
                r#"duplex_direction_state{link="ab",source="a",target="b",state="streaming"} 1"#,
            ) && body.contains(
                r#"duplex_direction_state{link="ab",source="b",target="a",state="streaming"} 1"#,
            ),
            _ => false,
        }
    })
    .await;
    drop(control);
    duplex.stop();
}
