//! PostgreSQL's array text syntax, both ways: parsing `{...}` output into
//! [`Value::Array`] and writing an array as input text.

use crate::canonical::value::Value;
use crate::pg::text_decode::{decode_text, excerpt, PgDecodeError};
use crate::pg::text_encode::{write_scalar, PgEncodeError};
use crate::pg::type_class::PgTypeClass;

/// Whitespace as PostgreSQL's array parser sees it (`scanner_isspace`).
fn is_array_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

enum Node {
    List(Vec<Node>),
    /// An element's text; None for an unquoted NULL.
    Item(Option<String>),
}

struct ArrayParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_array_space) {
            self.i += 1;
        }
    }

    fn list(&mut self, depth: usize) -> Result<Node, &'static str> {
        if depth > 6 {
            return Err("more than 6 dimensions");
        }
        if self.peek() != Some(b'{') {
            return Err("expected '{'");
        }
        self.i += 1;
        self.skip_space();
        let mut items = Vec::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Node::List(items));
        }
        loop {
            self.skip_space();
            let node = if self.peek() == Some(b'{') {
                self.list(depth + 1)?
            } else {
                self.item()?
            };
            items.push(node);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Node::List(items));
                }
                None => return Err("unexpected end of input"),
                Some(_) => return Err("expected ',' or '}'"),
            }
        }
    }

    fn item(&mut self) -> Result<Node, &'static str> {
        let mut buf = Vec::new();
        if self.peek() == Some(b'"') {
            self.i += 1;
            loop {
                match self.peek() {
                    None => return Err("unterminated quoted element"),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = *self.b.get(self.i + 1).ok_or("unexpected end of input")?;
                        buf.push(c);
                        self.i += 2;
                    }
                    Some(c) => {
                        buf.push(c);
                        self.i += 1;
                    }
                }
            }
            return String::from_utf8(buf)
                .map(|s| Node::Item(Some(s)))
                .map_err(|_| "invalid UTF-8");
        }
        // Unquoted: up to ',' or '}', trailing unescaped whitespace dropped.
        let mut keep = 0;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err("unexpected end of input"),
                Some(b',' | b'}') => break,
                Some(b'{' | b'"') => return Err("unexpected '{' or '\"' in an unquoted element"),
                Some(b'\\') => {
                    let c = *self.b.get(self.i + 1).ok_or("unexpected end of input")?;
                    buf.push(c);
                    keep = buf.len();
                    escaped = true;
                    self.i += 2;
                }
                Some(c) => {
                    buf.push(c);
                    if !is_array_space(c) {
                        keep = buf.len();
                    }
                    self.i += 1;
                }
            }
        }
        buf.truncate(keep);
        if buf.is_empty() && !escaped {
            return Err("empty unquoted element");
        }
        if !escaped && buf.eq_ignore_ascii_case(b"NULL") {
            return Ok(Node::Item(None));
        }
        String::from_utf8(buf)
            .map(|s| Node::Item(Some(s)))
            .map_err(|_| "invalid UTF-8")
    }
}

/// The dimensions of a list, checking that it is rectangular (PostgreSQL arrays are).
/// Only the outermost list may be empty.
fn node_shape(items: &[Node]) -> Result<Vec<usize>, &'static str> {
    let lists: Vec<&Vec<Node>> = items
        .iter()
        .filter_map(|n| match n {
            Node::List(l) => Some(l),
            Node::Item(_) => None,
        })
        .collect();
    if lists.is_empty() {
        return Ok(vec![items.len()]);
    }
    if lists.len() != items.len() {
        return Err("elements and sub-arrays mixed at one level");
    }
    let mut sub: Option<Vec<usize>> = None;
    for l in lists {
        if l.is_empty() {
            return Err("empty sub-array");
        }
        let s = node_shape(l)?;
        match &sub {
            None => sub = Some(s),
            Some(prev) if *prev != s => return Err("sub-arrays with different dimensions"),
            Some(_) => {}
        }
    }
    let mut shape = vec![items.len()];
    shape.extend(sub.unwrap_or_default());
    Ok(shape)
}

fn node_value(elem: &PgTypeClass, node: Node) -> Result<Value, PgDecodeError> {
    match node {
        Node::List(items) => items
            .into_iter()
            .map(|n| node_value(elem, n))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Item(None) => Ok(Value::Null),
        Node::Item(Some(s)) => decode_text(elem, &s),
    }
}

pub(super) fn decode_array(elem: &PgTypeClass, text: &str) -> Result<Value, PgDecodeError> {
    let malformed = |reason| PgDecodeError::MalformedArray {
        text: excerpt(text),
        reason,
    };
    let mut p = ArrayParser {
        b: text.as_bytes(),
        i: 0,
    };
    p.skip_space();
    if p.peek() == Some(b'[') {
        return Err(PgDecodeError::ArrayBounds {
            text: excerpt(text),
        });
    }
    let root = p.list(1).map_err(malformed)?;
    p.skip_space();
    if p.i != p.b.len() {
        return Err(malformed("unexpected text after the closing '}'"));
    }
    if let Node::List(items) = &root {
        node_shape(items).map_err(malformed)?;
    }
    node_value(elem, root)
}

/// Check that an array is one PostgreSQL can hold: rectangular, at most 6
/// dimensions, no empty sub-arrays.
pub(super) fn array_shape(items: &[Value], depth: usize) -> Result<Vec<usize>, PgEncodeError> {
    if depth > 6 {
        return Err(PgEncodeError::Array {
            reason: "more than 6 dimensions",
        });
    }
    let nested = items
        .iter()
        .filter(|v| matches!(v, Value::Array(_)))
        .count();
    if nested == 0 {
        return Ok(vec![items.len()]);
    }
    if nested != items.len() {
        return Err(PgEncodeError::Array {
            reason: "elements and sub-arrays mixed at one level",
        });
    }
    let mut sub: Option<Vec<usize>> = None;
    for v in items {
        if let Value::Array(inner) = v {
            if inner.is_empty() {
                return Err(PgEncodeError::Array {
                    reason: "empty sub-array",
                });
            }
            let s = array_shape(inner, depth + 1)?;
            match &sub {
                None => sub = Some(s),
                Some(prev) if *prev != s => {
                    return Err(PgEncodeError::Array {
                        reason: "sub-arrays with different dimensions",
                    })
                }
                Some(_) => {}
            }
        }
    }
    let mut shape = vec![items.len()];
    shape.extend(sub.unwrap_or_default());
    Ok(shape)
}

/// Whether an element must be double-quoted in an array literal (as `array_out`
/// decides, plus any Unicode whitespace, which costs nothing).
fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace())
}

pub(super) fn write_array(out: &mut String, items: &[Value]) -> Result<(), PgEncodeError> {
    out.push('{');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => write_array(out, inner)?,
            _ => {
                let mut elem = String::new();
                write_scalar(&mut elem, v)?;
                if needs_quotes(&elem) {
                    out.push('"');
                    for c in elem.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str(&elem);
                }
            }
        }
    }
    out.push('}');
    Ok(())
}
