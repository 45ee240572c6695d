//! Key generators that collide: a synced table whose primary key both sites
//! generate (a PostgreSQL sequence or identity column, a MySQL/MariaDB
//! `auto_increment` column) from values the other site generates too. Two
//! inserts, one on each site, then take the same key: a conflict each time,
//! settled by policy, one of the rows lost to it. Found by `duplex config
//! check`, with the fix.

use super::site_conn::{setup_conn, SetupConn};
use crate::canonical::TableName;
use crate::control::{LinkConfig, Site, SiteEngine};

/// How one site generates a key column's values: `residue`, `residue +
/// step`, `residue + 2 step`, ... (modulo `step`).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGenerator {
    pub column: String,
    /// What generates it, for messages ("sequence public.t_id_seq, increment 1").
    pub what: String,
    pub step: i64,
    pub residue: i64,
    /// The key's largest value now, where known.
    pub max: Option<i64>,
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Can the two generators hand out the same value? Values `r_a + k s_a` and
/// `r_b + j s_b` meet exactly when `r_a ≡ r_b (mod gcd(s_a, s_b))`.
pub fn collide(a: &KeyGenerator, b: &KeyGenerator) -> bool {
    let g = gcd(a.step, b.step);
    (a.residue - b.residue).rem_euclid(g) == 0
}

/// A PostgreSQL table's key columns that a sequence (serial or identity)
/// fills. Reads only.
async fn pg_generators(
    client: &tokio_postgres::Client,
    table: &TableName,
) -> Result<Vec<KeyGenerator>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, q.seq, s.increment_by, coalesce(s.last_value, s.start_value)
               FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
               CROSS JOIN LATERAL (SELECT pg_get_serial_sequence(i.indrelid::regclass::text, a.attname) AS seq) q
               JOIN pg_sequences s ON format('%I.%I', s.schemaname, s.sequencename) = q.seq
              WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            &[&crate::pg::quote_table(table)],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let (column, seq, step, known): (String, String, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        // The sequence itself says where it is, also just after a RESTART
        // (where pg_sequences shows the original start); it needs SELECT on
        // the sequence, else pg_sequences' figure stands. `seq` comes from
        // pg_get_serial_sequence, quoted as needed.
        let at: i64 = client
            .query_one(&format!("SELECT last_value FROM {seq}"), &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(known);
        let max: Option<i64> = client
            .query_one(
                &format!(
                    "SELECT max({})::bigint FROM {}",
                    crate::pg::quote_ident(&column),
                    crate::pg::quote_table(table)
                ),
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get(0));
        out.push(KeyGenerator {
            what: format!("sequence {seq}, increment {step}"),
            column,
            step,
            residue: at.rem_euclid(step.abs().max(1)),
            max,
        });
    }
    Ok(out)
}

/// A MySQL/MariaDB table's `auto_increment` key column, with the server's
/// `auto_increment_increment` and `auto_increment_offset` (what new
/// sessions get). Reads only.
async fn mysql_generators(
    conn: &mut mysql_async::Conn,
    database: &str,
    table: &str,
) -> Result<Vec<KeyGenerator>, mysql_async::Error> {
    use mysql_async::prelude::Queryable;
    let columns: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_KEY = 'PRI' AND EXTRA LIKE '%auto_increment%'",
            (database, table),
        )
        .await?;
    let Some(column) = columns.into_iter().next() else {
        return Ok(Vec::new());
    };
    let (step, offset): (i64, i64) = conn
        .query_first("SELECT @@GLOBAL.auto_increment_increment, @@GLOBAL.auto_increment_offset")
        .await?
        .unwrap_or((1, 1));
    let max: Option<i64> = conn
        .query_first(format!(
            "SELECT CAST(MAX({}) AS SIGNED) FROM {}.{}",
            crate::mysql::quote_ident(&column),
            crate::mysql::quote_ident(database),
            crate::mysql::quote_ident(table)
        ))
        .await
        .ok()
        .flatten()
        .flatten();
    // An offset beyond the increment is ignored by the server (as 1).
    let offset = if offset > step { 1 } else { offset };
    Ok(vec![KeyGenerator {
        what: format!(
            "auto_increment, auto_increment_increment {step}, auto_increment_offset {offset}"
        ),
        column,
        step,
        residue: offset.rem_euclid(step.max(1)),
        max,
    }])
}

/// The key generators of `table` on `site`.
async fn generators(site: &Site, table: &TableName) -> Result<Vec<KeyGenerator>, crate::Error> {
    Ok(match setup_conn(site).await? {
        SetupConn::Pg(client) => pg_generators(&client, table).await.map_err(|e| {
            crate::Error::Internal(format!(
                "site {}: read the key generators of {table}: {e}",
                site.name
            ))
        })?,
        SetupConn::Mysql(mut conn, ep) => {
            let database = ep.database().to_string();
            mysql_generators(&mut conn, &database, &table.name)
                .await
                .map_err(|e| {
                    crate::Error::Internal(format!(
                        "site {}: read the key generators of {table}: {e}",
                        site.name
                    ))
                })?
        }
    })
}

/// What to do about `column` of `table` generated on both sites.
fn fix(lc: &LinkConfig, table: &TableName, column: &str) -> String {
    let per_site = |site: &Site, slot: u32| {
        match site.engine {
        SiteEngine::Postgres => format!(
            "on {}: the sequence's INCREMENT BY 2 and a start ≡ {slot} (mod 2) above both sites' largest key",
            site.name
        ),
        SiteEngine::Mysql => format!(
            "on {}: auto_increment_increment = 2 and auto_increment_offset = {slot} in my.cnf (server settings), and the table's AUTO_INCREMENT above both sites' largest key",
            site.name
        ),
    }
    };
    format!(
        "give each site its own values of {table}.{column}: {}; {}",
        per_site(&lc.site_a, 1),
        per_site(&lc.site_b, 2)
    )
}

/// Every synced table of `lc` whose key both sites generate from values the
/// other generates too: (table, why and what to do).
pub async fn collisions(lc: &LinkConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in &lc.tables {
        let (a, b) = match (
            generators(&lc.site_a, &t.table).await,
            generators(&lc.site_b, &t.table).await,
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                out.push((
                    t.table.to_string(),
                    format!("cannot read its key generators: {e}"),
                ));
                continue;
            }
        };
        for ga in &a {
            let Some(gb) = b.iter().find(|g| g.column == ga.column) else {
                continue;
            };
            if collide(ga, gb) {
                out.push((
                    t.table.to_string(),
                    format!(
                        "both sites generate key {} from overlapping values ({}: {}; {}: {}), so inserts on both sites can take the same key (a conflict each, one row lost to it): {}",
                        ga.column,
                        lc.site_a.name,
                        ga.what,
                        lc.site_b.name,
                        gb.what,
                        fix(lc, &t.table, &ga.column)
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(step: i64, residue: i64) -> KeyGenerator {
        KeyGenerator {
            column: "id".into(),
            what: String::new(),
            step,
            residue,
            max: None,
        }
    }

    #[test]
    fn generators_collide_unless_their_values_are_interleaved() {
        // The defaults on both sites: every value.
        assert!(collide(&generator(1, 0), &generator(1, 0)));
        // One site interleaved, the other not: the other takes every value.
        assert!(collide(&generator(2, 1), &generator(1, 0)));
        // Interleaved: odd and even.
        assert!(!collide(&generator(2, 1), &generator(2, 0)));
        // The same offset on both: collide.
        assert!(collide(&generator(2, 1), &generator(2, 1)));
        // Different steps whose values never meet (1 mod 4 and 0 mod 2)...
        assert!(!collide(&generator(4, 1), &generator(2, 0)));
        // ...and ones that do (1 mod 4 and 1 mod 2: 5, 9, ...).
        assert!(collide(&generator(4, 1), &generator(2, 1)));
        // Negative steps count by their size.
        assert!(!collide(&generator(-2, 1), &generator(2, 0)));
    }
}
