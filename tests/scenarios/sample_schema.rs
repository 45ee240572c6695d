//! A sample schema with what real schemas carry (after pagila): a domain, an
//! enum, arrays, `tsvector`, `CHAR(n)`, a trigger stamping `last_update` on
//! every write, legacy partitioning by inheritance with rows routed to a child
//! by a trigger, declarative partitions, and a rule turning deletes into
//! updates. An application writes on both sites (its own keys per site) while
//! duplex runs; afterwards both sites are compared table by table in plain
//! SQL: nothing lost, nothing changed on the way, no conflict, nothing
//! quarantined, and every application statement succeeded.
//! PostgreSQL <-> PostgreSQL and PostgreSQL <-> MariaDB.

use std::time::Duration;

use crate::support::site::{Db, Engines, Sites};

const PG_SCHEMA: &str = r#"
CREATE DOMAIN year AS integer CONSTRAINT year_check CHECK (VALUE >= 1901 AND VALUE <= 2155);
CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.last_update := clock_timestamp(); RETURN NEW; END $$;
CREATE TABLE film (
    film_id integer PRIMARY KEY,
    title text NOT NULL,
    release_year year,
    rating mpaa_rating DEFAULT 'G',
    special_features text[],
    fts tsvector,
    code char(5) NOT NULL DEFAULT 'ABC',
    last_update timestamp NOT NULL DEFAULT now());
CREATE TRIGGER film_last_updated BEFORE INSERT OR UPDATE ON film
    FOR EACH ROW EXECUTE FUNCTION last_updated();
-- Legacy partitioning: a child without a key, rows routed by a trigger.
CREATE TABLE payment (payment_id integer PRIMARY KEY, amount numeric(7,2) NOT NULL, payment_date timestamp NOT NULL);
CREATE TABLE payment_2020 () INHERITS (payment);
CREATE FUNCTION payment_route() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payment_date < '2021-01-01' THEN
        INSERT INTO payment_2020 VALUES (NEW.*);
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payment_route BEFORE INSERT ON payment FOR EACH ROW EXECUTE FUNCTION payment_route();
-- Declarative partitions.
CREATE TABLE rental (rental_id integer NOT NULL, rental_date timestamp NOT NULL, note char(10),
    PRIMARY KEY (rental_id, rental_date)) PARTITION BY RANGE (rental_date);
CREATE TABLE rental_2022 PARTITION OF rental FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
CREATE TABLE rental_2023 PARTITION OF rental FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
-- A rule: deleting a customer deactivates it.
CREATE TABLE customer (customer_id integer PRIMARY KEY, name text NOT NULL, active boolean NOT NULL DEFAULT true);
CREATE RULE customer_soft_delete AS ON DELETE TO customer
    DO INSTEAD UPDATE customer SET active = false WHERE customer_id = OLD.customer_id;
"#;

const MY_SCHEMA: &str = "
CREATE TABLE film (film_id INT PRIMARY KEY, title TEXT NOT NULL, release_year INT NULL,
    rating ENUM('G','PG','PG-13','R','NC-17') NULL DEFAULT 'G', special_features JSON NULL, fts TEXT NULL,
    code CHAR(5) NOT NULL DEFAULT 'ABC', last_update DATETIME(6) NOT NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE TABLE payment (payment_id INT PRIMARY KEY, amount DECIMAL(7,2) NOT NULL, payment_date DATETIME(6) NOT NULL);
CREATE TABLE rental (rental_id INT NOT NULL, rental_date DATETIME(6) NOT NULL, note CHAR(10) NULL,
    PRIMARY KEY (rental_id, rental_date)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
    PARTITION BY RANGE COLUMNS (rental_date) (
        PARTITION p2022 VALUES LESS THAN ('2023-01-01'), PARTITION p2023 VALUES LESS THAN ('2024-01-01'));
CREATE TABLE customer (customer_id INT PRIMARY KEY, name TEXT NOT NULL, active BOOLEAN NOT NULL DEFAULT TRUE)
    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
";

const TABLES: &[&str] = &["film", "payment", "rental", "customer"];

/// Each synced table's rows as text (the inheritance child is not synced:
/// `ONLY payment`).
const PG_ROWS: &[(&str, &str)] = &[
    ("film", "SELECT concat_ws('|', film_id, title, coalesce(release_year::text, '~'), coalesce(rating::text, '~'), coalesce(array_to_json(special_features)::text, '~'), coalesce(fts::text, '~'), rtrim(code), to_char(last_update, 'YYYY-MM-DD HH24:MI:SS.US')) FROM film ORDER BY film_id"),
    ("payment", "SELECT concat_ws('|', payment_id, amount, to_char(payment_date, 'YYYY-MM-DD HH24:MI:SS.US')) FROM ONLY payment ORDER BY payment_id"),
    ("rental", "SELECT concat_ws('|', rental_id, to_char(rental_date, 'YYYY-MM-DD HH24:MI:SS.US'), coalesce(rtrim(note), '~')) FROM rental ORDER BY rental_id, rental_date"),
    ("customer", "SELECT concat_ws('|', customer_id, name, CASE WHEN active THEN 1 ELSE 0 END) FROM customer ORDER BY customer_id"),
];

const MY_ROWS: &[(&str, &str)] = &[
    ("film", "SELECT CONCAT_WS('|', film_id, title, IFNULL(release_year, '~'), IFNULL(rating, '~'), IFNULL(JSON_COMPACT(special_features), '~'), IFNULL(fts, '~'), code, DATE_FORMAT(last_update, '%Y-%m-%d %H:%i:%s.%f')) FROM film ORDER BY film_id"),
    ("payment", "SELECT CONCAT_WS('|', payment_id, amount, DATE_FORMAT(payment_date, '%Y-%m-%d %H:%i:%s.%f')) FROM payment ORDER BY payment_id"),
    ("rental", "SELECT CONCAT_WS('|', rental_id, DATE_FORMAT(rental_date, '%Y-%m-%d %H:%i:%s.%f'), IFNULL(note, '~')) FROM rental ORDER BY rental_id, rental_date"),
    ("customer", "SELECT CONCAT_WS('|', customer_id, name, active) FROM customer ORDER BY customer_id"),
];

/// The application's transactions on keys from `base`. `pg`: the site is
/// PostgreSQL (arrays and tsvector are written there only: MariaDB has no
/// array type, and its text would reach a tsvector column unnormalised).
fn workload(base: i64, pg: bool) -> Vec<Vec<String>> {
    let mut txns = Vec::new();
    for i in 0..20 {
        let id = base + i;
        let (features, fts) = if pg {
            (
                format!("ARRAY['Trailers', 'Deleted Scenes {i}']"),
                format!("to_tsvector('english', 'A fateful reflection of a moose {i}')"),
            )
        } else {
            ("NULL".to_string(), "NULL".to_string())
        };
        let now = if pg { "DEFAULT" } else { "NOW(6)" };
        txns.push(vec![
            format!("INSERT INTO film (film_id, title, release_year, rating, special_features, fts, code, last_update) VALUES ({id}, 'Film {id}', {}, 'PG-13', {features}, {fts}, 'F{i}', {now})", 1990 + i),
            format!("INSERT INTO customer (customer_id, name) VALUES ({id}, 'Customer {id}')"),
            format!("INSERT INTO payment (payment_id, amount, payment_date) VALUES ({id}, {i}.50, '{}-03-04 05:06:07')", if i % 2 == 0 { 2023 } else { 2020 }),
            format!("INSERT INTO rental (rental_id, rental_date, note) VALUES ({id}, '{}-06-07 08:09:10', 'r{i}')", if i % 2 == 0 { 2022 } else { 2023 }),
        ]);
    }
    let last_update = if pg { "" } else { ", last_update = NOW(6)" };
    txns.push(vec![format!(
        "UPDATE film SET title = concat(title, ' (director''s cut)'){last_update} WHERE film_id BETWEEN {base} AND {}",
        base + 9
    )]);
    // Statements on the inheritance parent reach its children too: they must
    // keep working while the parent is synced.
    txns.push(vec![format!(
        "UPDATE payment SET amount = amount + 1 WHERE payment_id BETWEEN {base} AND {}",
        base + 19
    )]);
    txns.push(vec![format!(
        "DELETE FROM payment WHERE payment_id BETWEEN {} AND {}",
        base + 15,
        base + 19
    )]);
    // A row moved from one partition to the other (its key changes).
    txns.push(vec![format!(
        "UPDATE rental SET rental_date = '2023-01-02 03:04:05' WHERE rental_id = {base}"
    )]);
    txns.push(vec![format!(
        "DELETE FROM customer WHERE customer_id BETWEEN {base} AND {}",
        base + 4
    )]);
    txns.push(vec![format!(
        "DELETE FROM film WHERE film_id = {}",
        base + 19
    )]);
    txns
}

/// Table `i` of [`PG_ROWS`] / [`MY_ROWS`] as text rows.
async fn rows(db: &mut Db, i: usize) -> Vec<String> {
    db.rows(PG_ROWS[i].1, MY_ROWS[i].1).await
}

async fn has_customer(db: &mut Db, id: i64) -> bool {
    db.count(&format!(
        "SELECT count(*) FROM customer WHERE customer_id = {id}"
    ))
    .await
        == 1
}

async fn run(engines: Engines) {
    let sites = Sites::start(engines, PG_SCHEMA, MY_SCHEMA, TABLES).await;
    let control_url = sites.control_url.as_str();
    let (mut a, mut b) = sites.connect().await;
    let run = crate::support::start_synced(control_url).await;
    let b_is_pg = b.is_pg();
    for (db, base, pg) in [(&mut a, 1000, true), (&mut b, 2000, b_is_pg)] {
        for t in workload(base, pg) {
            db.txn(&t).await;
        }
        db.txn(&[format!(
            "INSERT INTO customer (customer_id, name) VALUES ({}, 'fence')",
            base + 999
        )])
        .await;
    }
    for (db, id) in [(&mut b, 1999), (&mut a, 2999)] {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !has_customer(db, id).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the fence {id} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut differences = Vec::new();
    for (i, (table, _)) in PG_ROWS.iter().enumerate() {
        let (ra, rb) = (rows(&mut a, i).await, rows(&mut b, i).await);
        assert!(ra.len() >= 10, "{table}: too few rows to compare: {ra:?}");
        if ra != rb {
            let only_a: Vec<_> = ra.iter().filter(|r| !rb.contains(r)).collect();
            let only_b: Vec<_> = rb.iter().filter(|r| !ra.contains(r)).collect();
            differences.push(format!(
                "{table}: site a only {only_a:?}, site b only {only_b:?}"
            ));
        }
    }
    let control = crate::support::connect(control_url).await;
    let conflicts =
        crate::support::query_i64(&control, "SELECT count(*) FROM duplex.conflicts").await;
    let quarantined =
        crate::support::query_i64(&control, "SELECT count(*) FROM duplex.quarantine").await;
    assert!(differences.is_empty(), "the sites differ: {differences:#?}");
    assert_eq!(conflicts, 0, "conflicts recorded");
    assert_eq!(quarantined, 0, "changes quarantined");
    run.shutdown().await;
}

crate::support::scenario_tests! {
    run:
    sample_schema_postgres_pair(Engines::PgPg);
    sample_schema_pg18_and_pg15(Engines::Pg18Pg);
    sample_schema_postgres_and_mariadb(Engines::PgMariaDb);
}
