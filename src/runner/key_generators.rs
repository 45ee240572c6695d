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
    /// `None` where the position cannot be read (duplex's role may not
    /// read the sequence: `sql/roles/postgresql-site.sql` grants it).
    pub residue: Option<i64>,
    /// The largest value it may hand out (a sequence's MAXVALUE).
    pub max_value: Option<i64>,
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

/// Whether two generators can hand out the same value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Overlap {
    Yes,
    No,
    /// A position could not be read, and the steps leave room to interleave.
    Unknown,
}

/// Can the two generators hand out the same value? Values `r_a + k s_a` and
/// `r_b + j s_b` meet exactly when `r_a ≡ r_b (mod gcd(s_a, s_b))`.
pub fn overlap(a: &KeyGenerator, b: &KeyGenerator) -> Overlap {
    let g = gcd(a.step, b.step);
    if g == 1 {
        return Overlap::Yes;
    }
    match (a.residue, b.residue) {
        (Some(ra), Some(rb)) if (ra - rb).rem_euclid(g) == 0 => Overlap::Yes,
        (Some(_), Some(_)) => Overlap::No,
        _ => Overlap::Unknown,
    }
}

/// A PostgreSQL table's key columns that a sequence (serial or identity)
/// fills. Reads only.
async fn pg_generators(
    client: &tokio_postgres::Client,
    table: &TableName,
) -> Result<Vec<KeyGenerator>, tokio_postgres::Error> {
    // The sequence filling each key column: owned by it (serial,
    // identity), or only named in its default (`DEFAULT nextval('s')`, as
    // older and converted schemas have).
    let rows = client
        .query(
            "SELECT a.attname::text, format('%I.%I', s.schemaname, s.sequencename), s.increment_by, s.max_value
               FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
               CROSS JOIN LATERAL (
                    SELECT coalesce(pg_get_serial_sequence(i.indrelid::regclass::text, quote_ident(a.attname))::regclass,
                                    (SELECT dep.refobjid::regclass
                                       FROM pg_attrdef d
                                       JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                                                         AND dep.refclassid = 'pg_class'::regclass
                                       JOIN pg_class c ON c.oid = dep.refobjid AND c.relkind = 'S'
                                      WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                                      LIMIT 1)) AS seq) q
               JOIN pg_class sc ON sc.oid = q.seq
               JOIN pg_namespace sn ON sn.oid = sc.relnamespace
               JOIN pg_sequences s ON s.schemaname = sn.nspname AND s.sequencename = sc.relname
              WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            &[&crate::pg::quote_table(table)],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let (column, seq, step, max_value): (String, String, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        // Where it is: read from the sequence itself (also right after a
        // RESTART, where pg_sequences still shows the original start),
        // which needs SELECT on it. Without that, unknown: guessing the
        // start could reuse keys.
        let at: Option<i64> = client
            .query_one(&format!("SELECT last_value FROM {seq}"), &[])
            .await
            .ok()
            .map(|r| r.get(0));
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
            residue: at.map(|at| at.rem_euclid(step.abs().max(1))),
            max_value: Some(max_value),
            max,
            position: at,
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
    // The server's values are ≡ offset (mod increment), an offset beyond
    // the increment too (MariaDB 10.11 at 3 and 5 hands out 5, 11, 14, ...).
    Ok(vec![KeyGenerator {
        what: format!(
            "auto_increment, auto_increment_increment {step}, auto_increment_offset {offset}"
        ),
        column,
        step,
        residue: Some(offset.rem_euclid(step.max(1))),
        max_value: None,
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
async fn pairs(lc: &LinkConfig, conns: &mut [SetupConn; 2]) -> Pairs {
    let [conn_a, conn_b] = conns;
    let mut out = Vec::new();
    for t in &lc.tables {
        let both = match generators(conn_a, &lc.site_a, &t.table).await {
            Ok(a) => generators(conn_b, &lc.site_b, &t.table)
                .await
                .map(|b| (a, b)),
            Err(e) => Err(e),
        };
        out.push((t.table.clone(), both));
    }
    out
}

/// One setup connection to each site of `lc`.
async fn connect_both(lc: &LinkConfig) -> Result<[SetupConn; 2], crate::Error> {
    Ok([setup_conn(&lc.site_a).await?, setup_conn(&lc.site_b).await?])
}

/// How the two sites share a key's values: (step, residue of site a,
/// residue of site b). A MySQL server's own settings (server-wide, in
/// my.cnf) are kept where they already leave room; otherwise odd keys on
/// site a, even on site b.
fn shares(a: (&Site, &KeyGenerator), b: (&Site, &KeyGenerator)) -> (i64, i64, i64) {
    let fixed = |(site, g): (&Site, &KeyGenerator)| match (site.engine, g.residue) {
        (SiteEngine::Mysql, Some(r)) if g.step >= 2 => Some((g.step, r)),
        _ => None,
    };
    match (fixed(a), fixed(b)) {
        (Some((n, r)), None) => (n, r, (r + 1).rem_euclid(n)),
        (None, Some((n, r))) => (n, (r + 1).rem_euclid(n), r),
        _ => (2, 1, 0),
    }
}

/// "odd", "even", or "≡ r (mod n)".
fn class(step: i64, residue: i64) -> String {
    match (step, residue) {
        (2, 1) => "odd".into(),
        (2, 0) => "even".into(),
        _ => format!("≡ {residue} (mod {step})"),
    }
}

/// What to do about `column` of `table` generated on both sites.
fn fix(lc: &LinkConfig, a: &KeyGenerator, b: &KeyGenerator) -> String {
    let (n, ra, rb) = shares((&lc.site_a, a), (&lc.site_b, b));
    let per_site = |site: &Site, g: &KeyGenerator, r: i64| {
        match site.engine {
        SiteEngine::Postgres => format!(
            "{} {} values (INCREMENT BY {n}, restarted above both sites' largest key)",
            site.name,
            class(n, r)
        ),
        SiteEngine::Mysql if g.step == n && g.residue == Some(r) => {
            format!("{} keeps its server settings ({} values)", site.name, class(n, r))
        }
        SiteEngine::Mysql => format!(
            "{} {} values (auto_increment_increment = {n} and auto_increment_offset = {} in my.cnf: server settings, for every table of the server)",
            site.name,
            class(n, r),
            if r == 0 { n } else { r }
        ),
    }
    };
    format!(
        "give each site its own values: {}; {}. `duplex keys interleave --link {}` does it",
        per_site(&lc.site_a, a, ra),
        per_site(&lc.site_b, b, rb),
        lc.link.name
    )
}

/// Every synced table of `lc` whose key both sites generate from
/// overlapping values (or may: a position that cannot be read): (table,
/// why and what to do).
pub async fn collisions(lc: &LinkConfig) -> Vec<(String, String)> {
    let pairs = match connect_both(lc).await {
        Ok(mut conns) => pairs(lc, &mut conns).await,
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
            let why = match overlap(ga, gb) {
                Overlap::No => continue,
                Overlap::Yes => format!(
                    "both sites generate key {} from overlapping values ({}: {}; {}: {}), so inserts on both sites can take the same key (a conflict each, one row lost to it): {}",
                    ga.column,
                    lc.site_a.name,
                    ga.what,
                    lc.site_b.name,
                    gb.what,
                    fix(lc, ga, gb)
                ),
                Overlap::Unknown => format!(
                    "both sites generate key {} ({}: {}; {}: {}), and duplex's role may not read where a sequence is, so whether their values overlap is unknown: grant it SELECT on the sequence (sql/roles/postgresql-site.sql does)",
                    ga.column, lc.site_a.name, ga.what, lc.site_b.name, gb.what
                ),
            };
            out.push((table.to_string(), why));
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
    let v = floor.saturating_add(1);
    v.saturating_add((residue - v).rem_euclid(step))
}

/// Why `duplex keys interleave` leaves this generator to a person, if it
/// does: a descending sequence (its values are the application's design),
/// a position it cannot read (restarting below it would reuse keys).
fn refused(g: &KeyGenerator) -> Option<String> {
    if g.step < 0 {
        return Some(format!(
            "{} counts down: give the two sites disjoint ranges by hand (MINVALUE/MAXVALUE), duplex only interleaves ascending keys",
            g.what
        ));
    }
    if g.residue.is_none() {
        return Some(format!(
            "duplex's role may not read where {} is (grant it SELECT on the sequence, as sql/roles/postgresql-site.sql does): restarting it blind could reuse keys",
            g.what
        ));
    }
    None
}

/// Give each site of `lc` its own values of every synced key both generate
/// from overlapping values: above the largest key either site holds and
/// either generator's position, site a's values and site b's never meet.
/// PostgreSQL sequences are altered where duplex's role may (`apply`), or
/// the statement is given for their owner; MySQL/MariaDB's increment and
/// offset are server settings, given for my.cnf (once per site).
pub async fn interleave(lc: &LinkConfig, apply: bool) -> Result<Vec<InterleaveStep>, crate::Error> {
    let mut steps = Vec::new();
    let mut conns = connect_both(lc).await?;
    let mut settings_said = [false, false];
    for (table, both) in pairs(lc, &mut conns).await {
        let (ga, gb) = both?;
        for a in &ga {
            let Some(b) = gb.iter().find(|g| g.column == a.column) else {
                continue;
            };
            if overlap(a, b) == Overlap::No {
                continue;
            }
            if let Some(why) = refused(a).or_else(|| refused(b)) {
                steps.push(InterleaveStep {
                    table: table.to_string(),
                    site: format!("{} and {}", lc.site_a.name, lc.site_b.name),
                    statement: String::new(),
                    done: false,
                    note: Some(why),
                });
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
                let mut step =
                    step_for(&mut conns[i], site, &table, g, n, residue, start, apply).await?;
                if site.engine == SiteEngine::Mysql && step.note.is_some() {
                    // The server settings: said once per site.
                    if std::mem::replace(&mut settings_said[i], true) {
                        step.note = step.note.filter(|n| n.starts_with("not run"));
                    }
                }
                steps.push(step);
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
    apply: bool,
) -> Result<InterleaveStep, crate::Error> {
    let mut out = InterleaveStep {
        table: table.to_string(),
        site: site.name.clone(),
        statement: String::new(),
        done: false,
        note: None,
    };
    // Room for a million more keys at least, or it is said.
    let near_end = g
        .max_value
        .is_some_and(|max| start > max.saturating_sub(step.saturating_mul(1_000_000)));
    match conn {
        SetupConn::Pg(client) => {
            let Some(seq) = &g.sequence else {
                return Ok(out);
            };
            out.statement =
                format!("ALTER SEQUENCE {seq} INCREMENT BY {step} RESTART WITH {start}");
            if near_end {
                out.note = Some(format!(
                    "{seq} would then have fewer than a million values left before its MAXVALUE: widen the key (bigint) first"
                ));
            }
            if apply && !near_end {
                match client.batch_execute(&out.statement).await {
                    Ok(()) => out.done = true,
                    Err(e) => {
                        let privilege = e.code()
                            == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
                        let why = e
                            .as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or_else(|| e.to_string());
                        out.note = Some(if privilege {
                            format!("not run ({why}): run it now as the sequence's owner (later, recompute it: more keys may have been taken)")
                        } else {
                            format!("not run: {why}")
                        });
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
            if g.step != step || g.residue != Some(residue) {
                out.note = Some(format!(
                    "server settings (they apply to every table of the server): put `auto_increment_increment = {step}` and `auto_increment_offset = {offset}` under [mysqld] in my.cnf, and for now run SET GLOBAL auto_increment_increment = {step}, GLOBAL auto_increment_offset = {offset} (needs SUPER or SYSTEM_VARIABLES_ADMIN); sessions opened after take them"
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
            residue: Some(residue),
            max_value: None,
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
    fn generators_overlap_unless_their_values_are_interleaved() {
        use Overlap::*;
        // The defaults on both sites: every value.
        assert_eq!(overlap(&generator(1, 0), &generator(1, 0)), Yes);
        // One site interleaved, the other not: the other takes every value.
        assert_eq!(overlap(&generator(2, 1), &generator(1, 0)), Yes);
        // Interleaved: odd and even.
        assert_eq!(overlap(&generator(2, 1), &generator(2, 0)), No);
        // The same offset on both: overlap.
        assert_eq!(overlap(&generator(2, 1), &generator(2, 1)), Yes);
        // Different steps whose values never meet (1 mod 4 and 0 mod 2)...
        assert_eq!(overlap(&generator(4, 1), &generator(2, 0)), No);
        // ...and ones that do (1 mod 4 and 1 mod 2: 5, 9, ...).
        assert_eq!(overlap(&generator(4, 1), &generator(2, 1)), Yes);
        // Negative steps count by their size.
        assert_eq!(overlap(&generator(-2, 1), &generator(2, 0)), No);
        // A position unknown: unknown where the steps leave room...
        let unknown = KeyGenerator {
            residue: None,
            ..generator(2, 0)
        };
        assert_eq!(overlap(&unknown, &generator(2, 1)), Unknown);
        // ...and certain where they do not.
        assert_eq!(overlap(&unknown, &generator(1, 0)), Yes);
    }

    #[test]
    fn a_mysql_server_interleaved_already_keeps_its_settings() {
        let site = |engine| Site {
            site_id: 1,
            name: "s".into(),
            engine,
            conninfo: String::new(),
            password_env: None,
            password_file: None,
            tls_mode: crate::control::TlsMode::Disable,
            tls_ca_file: None,
        };
        let (pg, my) = (site(SiteEngine::Postgres), site(SiteEngine::Mysql));
        // MariaDB at increment 2, offset 1: PostgreSQL takes the even values.
        assert_eq!(
            shares((&pg, &generator(1, 0)), (&my, &generator(2, 1))),
            (2, 0, 1)
        );
        assert_eq!(
            shares((&my, &generator(2, 1)), (&pg, &generator(1, 0))),
            (2, 1, 0)
        );
        // Defaults: odd on site a, even on site b.
        assert_eq!(
            shares((&pg, &generator(1, 0)), (&my, &generator(1, 1))),
            (2, 1, 0)
        );
        assert_eq!(class(2, 1), "odd");
        assert_eq!(class(3, 2), "≡ 2 (mod 3)");
    }
}
