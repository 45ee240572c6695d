//! `duplex demo`: two throwaway PostgreSQL clusters, a small CRM/support schema,
//! duplex syncing them, and writes on each side shown arriving on the other.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_postgres::Client;

use crate::localdb::pg::{LocalPgOptions, LocalPostgres};
use crate::pg::PgEndpoint;
use crate::pipeline::PipelineTuning;

const DEMO_SCHEMA: &str = "
CREATE TABLE customers (
    id         bigint PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    tier       text NOT NULL DEFAULT 'standard',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tickets (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers,
    subject     text NOT NULL,
    status      text NOT NULL DEFAULT 'open'
);";

async fn sql(ep: &PgEndpoint) -> anyhow::Result<Client> {
    Ok(ep.connect("duplex demo").await?)
}

/// Poll `query` (which returns one boolean) until it is true or 15 s pass.
async fn wait_until(client: &Client, query: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let ok: bool = client.query_one(query, &[]).await?.get(0);
        if ok {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("the change did not arrive within 15 s; check the log above");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn endpoint(pg: &LocalPostgres, db: &str) -> anyhow::Result<PgEndpoint> {
    Ok(PgEndpoint::from_url(db, &pg.conninfo(db))?)
}

pub async fn run(rounds: u32) -> anyhow::Result<()> {
    println!("== duplex demo: starting two throwaway PostgreSQL clusters (crm, support) ...");
    let crm =
        tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default())).await??;
    let support =
        tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default())).await??;
    for pg in [&crm, &support] {
        pg.create_database("app")
            .context("create the demo database")?;
        pg.psql("app", DEMO_SCHEMA)
            .context("create the demo schema")?;
    }
    println!("   crm     = {}", crm.conninfo("app"));
    println!("   support = {}", support.conninfo("app"));

    // The control schema lives in the crm cluster's `postgres` database.
    let control_url = crm.conninfo("postgres");
    let mut control = sql(&endpoint(&crm, "postgres")?).await?;
    crate::control::migrate(&mut control).await?;
    let config_sql = format!(
        "INSERT INTO duplex.sites (site_id, name, engine, conninfo, tls_mode) VALUES
             (1, 'crm', 'postgresql', '{}', 'disable'),
             (2, 'support', 'postgresql', '{}', 'disable');
         INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'crm_support', 1, 2);
         INSERT INTO duplex.link_tables (link_id, schema_name, table_name) VALUES
             (1, 'public', 'customers'), (1, 'public', 'tickets');",
        crm.conninfo("app").replace('\'', "''"),
        support.conninfo("app").replace('\'', "''")
    );
    control.batch_execute(&config_sql).await?;
    println!("== configured through SQL on the control schema:\n{config_sql}\n");

    let handle = crate::runner::start(&control_url, PipelineTuning::default()).await?;
    let a = sql(&endpoint(&crm, "app")?).await?;
    let b = sql(&endpoint(&support, "app")?).await?;

    let names = [
        "Ada Lovelace",
        "Grace Hopper",
        "Edsger Dijkstra",
        "Barbara Liskov",
        "Donald Knuth",
        "Frances Allen",
        "Ken Thompson",
    ];
    for round in 0..rounds {
        let i = i64::from(round) + 1;
        let name = names[(round as usize) % names.len()];
        // crm creates a customer.
        a.execute(
            "INSERT INTO customers (id, name, email) VALUES ($1, $2, $3)",
            &[&i, &name, &format!("c{i}@example.com")],
        )
        .await?;
        let t = wait_until(
            &b,
            &format!("SELECT EXISTS (SELECT 1 FROM customers WHERE id = {i})"),
        )
        .await?;
        println!(
            "crm     -> support  insert customer {i} '{name}'            arrived in {:>4} ms",
            t.as_millis()
        );
        // support opens a ticket for them (its own key range).
        let ticket = 1_000_000 + i;
        b.execute(
            "INSERT INTO tickets (id, customer_id, subject) VALUES ($1, $2, $3)",
            &[&ticket, &i, &format!("Question #{i} from {name}")],
        )
        .await?;
        let t = wait_until(
            &a,
            &format!("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = {ticket})"),
        )
        .await?;
        println!(
            "support -> crm      insert ticket {ticket} for customer {i}      arrived in {:>4} ms",
            t.as_millis()
        );
        // support upgrades the customer's tier; crm sees it.
        b.execute(
            "UPDATE customers SET tier = 'gold', updated_at = now() WHERE id = $1",
            &[&i],
        )
        .await?;
        let t = wait_until(
            &a,
            &format!("SELECT tier = 'gold' FROM customers WHERE id = {i}"),
        )
        .await?;
        println!(
            "support -> crm      update customer {i} tier=gold             arrived in {:>4} ms",
            t.as_millis()
        );
        // crm closes the ticket in one transaction with an email change.
        a.batch_execute(&format!(
            "BEGIN; UPDATE tickets SET status = 'closed' WHERE id = {ticket}; UPDATE customers SET email = 'vip{i}@example.com' WHERE id = {i}; COMMIT;"
        ))
        .await?;
        let t = wait_until(
            &b,
            &format!("SELECT status = 'closed' FROM tickets WHERE id = {ticket}"),
        )
        .await?;
        println!(
            "crm     -> support  close ticket {ticket} + new email (one txn)  arrived in {:>4} ms",
            t.as_millis()
        );
    }
    // A delete flows too.
    b.execute("DELETE FROM tickets WHERE id = 1000001", &[])
        .await?;
    let t = wait_until(
        &a,
        "SELECT NOT EXISTS (SELECT 1 FROM tickets WHERE id = 1000001)",
    )
    .await?;
    println!(
        "support -> crm      delete ticket 1000001                     arrived in {:>4} ms",
        t.as_millis()
    );

    let digest = "SELECT md5(string_agg(format('%s|%s|%s|%s', id, name, email, tier), ',' ORDER BY id)) FROM customers";
    let da: Option<String> = a.query_one(digest, &[]).await?.get(0);
    let db: Option<String> = b.query_one(digest, &[]).await?.get(0);
    let ta: String = a.query_one("SELECT md5(string_agg(format('%s|%s|%s', id, subject, status), ',' ORDER BY id)) FROM tickets", &[]).await?.get(0);
    let tb: String = b.query_one("SELECT md5(string_agg(format('%s|%s|%s', id, subject, status), ',' ORDER BY id)) FROM tickets", &[]).await?.get(0);
    println!(
        "\n== both sides: customers digest {} / {}, tickets digest {} / {}",
        short(&da),
        short(&db),
        &ta[..8],
        &tb[..8]
    );
    for d in &handle.directions {
        println!(
            "   {:<28} applied {} txns ({} rows), skipped {} echo txns",
            d.name,
            d.stats
                .applied_txns
                .load(std::sync::atomic::Ordering::Relaxed),
            d.stats
                .applied_rows
                .load(std::sync::atomic::Ordering::Relaxed),
            d.stats
                .echo_txns_skipped
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    handle.shutdown().await;
    if da != db || ta != tb {
        bail!("the two sides differ");
    }
    println!("== in sync. Stopping the clusters.");
    Ok(())
}

fn short(s: &Option<String>) -> &str {
    s.as_deref().map(|s| &s[..8.min(s.len())]).unwrap_or("-")
}
