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
    /// The last value handed out (a sequence's position, a MySQL table's
    /// next AUTO_INCREMENT less one), where known.
    pub position: Option<i64>,
    /// A PostgreSQL sequence's name (quoted as needed).
    pub sequence: Option<String>,
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
            position: Some(at),
            sequence: Some(seq),
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
    let next: Option<i64> = conn
        .exec_first(
            "SELECT CAST(AUTO_INCREMENT AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (database, table),
        )
        .await?
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
        position: next.map(|n| n - 1),
        sequence: None,
    }])
}

/// The key generators of `table` on `site`, over `conn` (one of its
/// setup connections).
async fn generators(
    conn: &mut SetupConn,
    site: &Site,
    table: &TableName,
) -> Result<Vec<KeyGenerator>, crate::Error> {
    let fail = |e: String| {
        crate::Error::Internal(format!(
            "site {}: read the key generators of {table}: {e}",
            site.name
        ))
    };
    Ok(match conn {
        SetupConn::Pg(client) => pg_generators(client, table)
            .await
            .map_err(|e| fail(e.to_string()))?,
        SetupConn::Mysql(conn, ep) => {
            let database = ep.database().to_string();
            mysql_generators(conn, &database, &table.name)
                .await
                .map_err(|e| fail(e.to_string()))?
        }
    })
}

/// Both sites' key generators, per synced table of `lc`.
type Pairs = Vec<(
    TableName,
    Result<(Vec<KeyGenerator>, Vec<KeyGenerator>), crate::Error>,
)>;

/// Both sites' key generators of every synced table of `lc`, over one
/// connection to each site.
async fn pairs(lc: &LinkConfig) -> Result<Pairs, crate::Error> {
    let mut conn_a = setup_conn(&lc.site_a).await?;
    let mut conn_b = setup_conn(&lc.site_b).await?;
    let mut out = Vec::new();
    for t in &lc.tables {
        let both = match generators(&mut conn_a, &lc.site_a, &t.table).await {
            Ok(a) => generators(&mut conn_b, &lc.site_b, &t.table)
                .await
                .map(|b| (a, b)),
            Err(e) => Err(e),
        };
        out.push((t.table.clone(), both));
    }
    Ok(out)
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

/// Every synced table of `lc` whose key both sites generate from
/// overlapping values: (table, why and what to do).
pub async fn collisions(lc: &LinkConfig) -> Vec<(String, String)> {
    let pairs = match pairs(lc).await {
        Ok(p) => p,
        Err(e) => {
            return vec![(
                String::new(),
                format!("cannot read the key generators: {e}"),
            )]
        }
    };
    let mut out = Vec::new();
    for (table, both) in pairs {
        let (a, b) = match both {
            Ok(ab) => ab,
            Err(e) => {
                out.push((
                    table.to_string(),
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
                    table.to_string(),
                    format!(
                        "both sites generate key {} from overlapping values ({}: {}; {}: {}), so inserts on both sites can take the same key (a conflict each, one row lost to it): {}",
                        ga.column,
                        lc.site_a.name,
                        ga.what,
                        lc.site_b.name,
                        gb.what,
                        fix(lc, &table, &ga.column)
                    ),
                ));
            }
        }
    }
    out
}

/// One step of `duplex keys interleave`: on `site`, for `table`, the
/// statement run (`done`) or to run, and anything else to do there.
#[derive(Debug, Clone)]
pub struct InterleaveStep {
    pub table: String,
    pub site: String,
    pub statement: String,
    pub done: bool,
    pub note: Option<String>,
}

/// The smallest value above `floor` that is `residue` modulo `step`.
fn first_above(floor: i64, step: i64, residue: i64) -> i64 {
    let v = floor + 1;
    v + (residue - v).rem_euclid(step)
}

/// How the two sites share a key's values: (step, residue of site a,
/// residue of site b). A MySQL server's own settings (server-wide, in
/// my.cnf) are kept where they already leave room; otherwise odd keys on
/// site a, even on site b.
fn shares(a: (&Site, &KeyGenerator), b: (&Site, &KeyGenerator)) -> (i64, i64, i64) {
    let fixed = |(site, g): (&Site, &KeyGenerator)| {
        (site.engine == SiteEngine::Mysql && g.step >= 2).then_some((g.step, g.residue))
    };
    match (fixed(a), fixed(b)) {
        (Some((n, r)), None) => (n, r, (r + 1).rem_euclid(n)),
        (None, Some((n, r))) => (n, (r + 1).rem_euclid(n), r),
        _ => (2, 1, 0),
    }
}

/// Give each site of `lc` its own values of every synced key both generate
/// from overlapping values: above the largest key either site holds, site
/// a's values and site b's never meet. PostgreSQL sequences are altered
/// where duplex's role may (`apply`), or the statement is given for their
/// owner; MySQL/MariaDB's increment and offset are server settings, given
/// for my.cnf.
pub async fn interleave(lc: &LinkConfig, apply: bool) -> Result<Vec<InterleaveStep>, crate::Error> {
    let mut steps = Vec::new();
    let mut conns = [setup_conn(&lc.site_a).await?, setup_conn(&lc.site_b).await?];
    for (table, both) in pairs(lc).await? {
        let (ga, gb) = both?;
        for a in &ga {
            let Some(b) = gb.iter().find(|g| g.column == a.column) else {
                continue;
            };
            if !collide(a, b) {
                continue;
            }
            let (n, ra, rb) = shares((&lc.site_a, a), (&lc.site_b, b));
            let floor = [a.max, b.max, a.position, b.position]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(0);
            for (i, (site, g, residue)) in [(&lc.site_a, a, ra), (&lc.site_b, b, rb)]
                .into_iter()
                .enumerate()
            {
                let start = first_above(floor, n, residue);
                let slot = i as i64 + 1;
                steps.push(
                    step_for(
                        &mut conns[i],
                        site,
                        &table,
                        g,
                        n,
                        residue,
                        start,
                        slot,
                        apply,
                    )
                    .await?,
                );
            }
        }
    }
    Ok(steps)
}

#[allow(clippy::too_many_arguments)]
async fn step_for(
    conn: &mut SetupConn,
    site: &Site,
    table: &TableName,
    g: &KeyGenerator,
    step: i64,
    residue: i64,
    start: i64,
    slot: i64,
    apply: bool,
) -> Result<InterleaveStep, crate::Error> {
    let mut out = InterleaveStep {
        table: table.to_string(),
        site: site.name.clone(),
        statement: String::new(),
        done: false,
        note: None,
    };
    match conn {
        SetupConn::Pg(client) => {
            let Some(seq) = &g.sequence else {
                return Ok(out);
            };
            out.statement =
                format!("ALTER SEQUENCE {seq} INCREMENT BY {step} RESTART WITH {start}");
            if apply {
                match client.batch_execute(&out.statement).await {
                    Ok(()) => out.done = true,
                    Err(e) => {
                        out.note = Some(format!(
                            "not run ({}): run it as the sequence's owner",
                            e.as_db_error()
                                .map(|d| d.message().to_string())
                                .unwrap_or_else(|| e.to_string())
                        ))
                    }
                }
            }
        }
        SetupConn::Mysql(conn, ep) => {
            use mysql_async::prelude::Queryable;
            out.statement = format!(
                "ALTER TABLE {}.{} AUTO_INCREMENT = {start}",
                crate::mysql::quote_ident(ep.database()),
                crate::mysql::quote_ident(&table.name)
            );
            // MySQL generates offset, offset + increment, ...: an offset
            // of 0 is the increment itself.
            let offset = if residue == 0 { step } else { residue };
            if g.step != step || g.residue != residue {
                out.note = Some(format!(
                    "server settings (they apply to every table of the server): put `auto_increment_increment = {step}` and `auto_increment_offset = {offset}` under [mysqld] in my.cnf, and for now run SET GLOBAL auto_increment_increment = {step}, GLOBAL auto_increment_offset = {offset} (needs SUPER or SYSTEM_VARIABLES_ADMIN); sessions opened after take them (site {} is slot {slot} of the link)",
                    site.name
                ));
            }
            if apply {
                if let Err(e) = conn.query_drop(&out.statement).await {
                    let why =
                        format!("not run ({e}): run it as an account with ALTER on the table");
                    out.note = Some(match out.note.take() {
                        Some(n) => format!("{why}; {n}"),
                        None => why,
                    });
                } else {
                    out.done = true;
                }
            }
        }
    }
    Ok(out)
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
            position: None,
            sequence: None,
        }
    }

    #[test]
    fn the_first_value_above_a_floor_in_a_residue_class() {
        assert_eq!(first_above(1000, 2, 1), 1001);
        assert_eq!(first_above(1000, 2, 0), 1002);
        assert_eq!(first_above(1001, 2, 1), 1003);
        assert_eq!(first_above(0, 3, 2), 2);
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
