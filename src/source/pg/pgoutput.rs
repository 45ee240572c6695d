//! Decoder for the pgoutput logical replication protocol (version 1).
//!
//! The replication client hands over Begin and Commit already parsed; every other
//! message arrives as raw XLogData bytes and is decoded here. Layouts follow
//! "Logical Replication Message Formats" in the PostgreSQL documentation.

use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum PgOutputError {
    #[error(
        "pgoutput message '{tag}' is truncated (needed {needed} more bytes at offset {offset})"
    )]
    Truncated {
        tag: char,
        needed: usize,
        offset: usize,
    },
    #[error("pgoutput message '{tag}': string at offset {offset} is not NUL-terminated UTF-8")]
    BadString { tag: char, offset: usize },
    #[error("pgoutput message '{tag}': unexpected byte {byte:#04x} at offset {offset} ({what})")]
    Unexpected {
        tag: char,
        byte: u8,
        offset: usize,
        what: &'static str,
    },
    #[error("empty pgoutput message")]
    Empty,
}

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity key.
    pub is_key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// A TOASTed value the update did not change: PostgreSQL does not send it.
    UnchangedToast,
    Text(Bytes),
    Binary(Bytes),
}

/// Which old image an Update or Delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldImageKind {
    /// Replica identity key columns only ('K').
    Key,
    /// The whole old row ('O', replica identity FULL).
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    Begin {
        final_lsn: u64,
        commit_time_pg_us: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_time_pg_us: i64,
    },
    /// The transaction was replayed under replication origin `name`.
    Origin {
        origin_lsn: u64,
        name: String,
    },
    Relation {
        oid: u32,
        namespace: String,
        name: String,
        replica_identity: u8,
        columns: Vec<RelationColumn>,
    },
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Vec<TupleValue>,
    },
    Update {
        relation: u32,
        old: Option<(OldImageKind, Vec<TupleValue>)>,
        new: Vec<TupleValue>,
    },
    Delete {
        relation: u32,
        old: (OldImageKind, Vec<TupleValue>),
    },
    Truncate {
        cascade: bool,
        restart_identity: bool,
        relations: Vec<u32>,
    },
    Message {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Bytes,
    },
}

/// Microseconds between the PostgreSQL epoch (2000-01-01) and the Unix epoch.
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

struct Reader<'a> {
    tag: char,
    data: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn need(&self, n: usize) -> Result<(), PgOutputError> {
        if self.data.len() - self.pos < n {
            return Err(PgOutputError::Truncated {
                tag: self.tag,
                needed: n - (self.data.len() - self.pos),
                offset: self.pos,
            });
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, PgOutputError> {
        self.need(1)?;
        let b = self.data[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PgOutputError> {
        self.need(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.data[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, PgOutputError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, PgOutputError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, PgOutputError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, PgOutputError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, PgOutputError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, PgOutputError> {
        let start = self.pos;
        let rest = &self.data[start..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PgOutputError::BadString {
                tag: self.tag,
                offset: start,
            })?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| PgOutputError::BadString {
            tag: self.tag,
            offset: start,
        })?;
        self.pos = start + end + 1;
        Ok(s.to_string())
    }

    fn bytes(&mut self, n: usize) -> Result<Bytes, PgOutputError> {
        self.need(n)?;
        let out = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn tuple(&mut self) -> Result<Vec<TupleValue>, PgOutputError> {
        let n = self.i16()?;
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            let kind = self.u8()?;
            out.push(match kind {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' | b'b' => {
                    let len = self.i32()?;
                    let len = usize::try_from(len).map_err(|_| PgOutputError::Unexpected {
                        tag: self.tag,
                        byte: kind,
                        offset: self.pos,
                        what: "negative value length",
                    })?;
                    let bytes = self.bytes(len)?;
                    if kind == b't' {
                        TupleValue::Text(bytes)
                    } else {
                        TupleValue::Binary(bytes)
                    }
                }
                other => {
                    return Err(PgOutputError::Unexpected {
                        tag: self.tag,
                        byte: other,
                        offset: self.pos - 1,
                        what: "tuple column kind",
                    })
                }
            });
        }
        Ok(out)
    }

    fn old_image(&mut self, kind: u8) -> Result<(OldImageKind, Vec<TupleValue>), PgOutputError> {
        let k = match kind {
            b'K' => OldImageKind::Key,
            b'O' => OldImageKind::Full,
            other => {
                return Err(PgOutputError::Unexpected {
                    tag: self.tag,
                    byte: other,
                    offset: self.pos - 1,
                    what: "old tuple marker",
                })
            }
        };
        Ok((k, self.tuple()?))
    }
}

/// Decode one pgoutput message. `Ok(None)` for message kinds duplex does not use
/// (stream control of protocol v2+, two-phase commit), so a newer server cannot
/// break the reader by sending something it does not need.
pub fn decode(data: &Bytes) -> Result<Option<PgOutputMessage>, PgOutputError> {
    let tag = *data.first().ok_or(PgOutputError::Empty)?;
    let mut r = Reader {
        tag: tag as char,
        data,
        pos: 1,
    };
    let msg = match tag {
        b'B' => PgOutputMessage::Begin {
            final_lsn: r.u64()?,
            commit_time_pg_us: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            PgOutputMessage::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_time_pg_us: r.i64()?,
            }
        }
        b'O' => PgOutputMessage::Origin {
            origin_lsn: r.u64()?,
            name: r.string()?,
        },
        b'R' => {
            let oid = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(RelationColumn {
                    is_key: flags & 1 == 1,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            PgOutputMessage::Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            }
        }
        b'Y' => PgOutputMessage::Type {
            oid: r.u32()?,
            namespace: r.string()?,
            name: r.string()?,
        },
        b'I' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'N' => PgOutputMessage::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => {
                    return Err(PgOutputError::Unexpected {
                        tag: 'I',
                        byte: other,
                        offset: r.pos - 1,
                        what: "expected 'N'",
                    })
                }
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let mut kind = r.u8()?;
            let old = if kind == b'K' || kind == b'O' {
                let old = r.old_image(kind)?;
                kind = r.u8()?;
                Some(old)
            } else {
                None
            };
            if kind != b'N' {
                return Err(PgOutputError::Unexpected {
                    tag: 'U',
                    byte: kind,
                    offset: r.pos - 1,
                    what: "expected 'N'",
                });
            }
            PgOutputMessage::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let kind = r.u8()?;
            PgOutputMessage::Delete {
                relation,
                old: r.old_image(kind)?,
            }
        }
        b'T' => {
            let n = r.u32()?;
            let options = r.u8()?;
            let mut relations = Vec::with_capacity(n.min(65_536) as usize);
            for _ in 0..n {
                relations.push(r.u32()?);
            }
            PgOutputMessage::Truncate {
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
                relations,
            }
        }
        b'M' => {
            let flags = r.u8()?;
            let lsn = r.u64()?;
            let prefix = r.string()?;
            let len = r.u32()? as usize;
            PgOutputMessage::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.bytes(len)?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn decodes_relation_and_update_with_full_old_image() {
        let mut m = vec![b'R'];
        m.extend_from_slice(&16_385u32.to_be_bytes());
        cstr(&mut m, "public");
        cstr(&mut m, "t");
        m.push(b'f');
        m.extend_from_slice(&2i16.to_be_bytes());
        m.push(1);
        cstr(&mut m, "id");
        m.extend_from_slice(&23u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.push(0);
        cstr(&mut m, "body");
        m.extend_from_slice(&25u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        let rel = decode(&Bytes::from(m)).ok().flatten();
        let Some(PgOutputMessage::Relation {
            oid,
            columns,
            replica_identity,
            ..
        }) = rel
        else {
            panic!("not a relation: {rel:?}")
        };
        assert_eq!((oid, replica_identity), (16_385, b'f'));
        assert!(columns[0].is_key && !columns[1].is_key);
        assert_eq!(columns[1].type_oid, 25);

        let mut u = vec![b'U'];
        u.extend_from_slice(&16_385u32.to_be_bytes());
        u.push(b'O');
        u.extend_from_slice(&2i16.to_be_bytes());
        u.push(b't');
        u.extend_from_slice(&1i32.to_be_bytes());
        u.push(b'7');
        u.push(b'n');
        u.push(b'N');
        u.extend_from_slice(&2i16.to_be_bytes());
        u.push(b't');
        u.extend_from_slice(&1i32.to_be_bytes());
        u.push(b'7');
        u.push(b'u');
        let upd = decode(&Bytes::from(u)).ok().flatten();
        assert_eq!(
            upd,
            Some(PgOutputMessage::Update {
                relation: 16_385,
                old: Some((
                    OldImageKind::Full,
                    vec![TupleValue::Text(Bytes::from_static(b"7")), TupleValue::Null]
                )),
                new: vec![
                    TupleValue::Text(Bytes::from_static(b"7")),
                    TupleValue::UnchangedToast
                ],
            })
        );
    }

    #[test]
    fn truncated_and_unknown_messages() {
        assert!(matches!(
            decode(&Bytes::from_static(b"I\0\0")),
            Err(PgOutputError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&Bytes::from_static(b"O\0\0\0\0\0\0\0\x01abc")),
            Err(PgOutputError::BadString { .. })
        ));
        assert!(matches!(
            decode(&Bytes::from_static(b"S\0\0\0\x01")),
            Ok(None)
        ));
        let mut o = vec![b'O'];
        o.extend_from_slice(&5u64.to_be_bytes());
        cstr(&mut o, "duplex_l1_from_s2");
        assert_eq!(
            decode(&Bytes::from(o)).ok().flatten(),
            Some(PgOutputMessage::Origin {
                origin_lsn: 5,
                name: "duplex_l1_from_s2".into()
            })
        );
    }
}
