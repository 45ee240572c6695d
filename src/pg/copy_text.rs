//! `COPY ... FROM STDIN` in text format: rows of input texts written as the
//! server reads them (fields split by tabs, rows by newlines, `\N` for NULL,
//! backslash escapes for the characters that would split them).
//!
//! Each field is the same text a parameter would carry (`text_encode`), so
//! a row copied is the row an `INSERT` would have written.

use bytes::{BufMut, BytesMut};

/// A COPY text stream being written.
#[derive(Default)]
pub struct CopyText {
    buf: BytesMut,
    /// No field yet on the current row.
    row_start: bool,
}

impl CopyText {
    pub fn with_capacity(bytes: usize) -> CopyText {
        CopyText {
            buf: BytesMut::with_capacity(bytes),
            row_start: true,
        }
    }

    /// The next field of the current row: its input text, or NULL.
    pub fn field(&mut self, text: Option<&str>) {
        if !self.row_start {
            self.buf.put_u8(b'\t');
        }
        self.row_start = false;
        let Some(text) = text else {
            self.buf.put_slice(b"\\N");
            return;
        };
        let bytes = text.as_bytes();
        let mut plain = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escaped: &[u8] = match b {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                _ => continue,
            };
            self.buf.put_slice(&bytes[plain..i]);
            self.buf.put_slice(escaped);
            plain = i + 1;
        }
        self.buf.put_slice(&bytes[plain..]);
    }

    /// End the current row.
    pub fn end_row(&mut self) {
        self.buf.put_u8(b'\n');
        self.row_start = true;
    }

    pub fn finish(self) -> bytes::Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped_and_nulls_marked() {
        let mut c = CopyText::with_capacity(64);
        c.field(Some("plain"));
        c.field(None);
        c.field(Some("a\tb\nc\rd\\e"));
        c.field(Some(""));
        c.end_row();
        c.field(Some("\\N"));
        c.end_row();
        assert_eq!(
            &c.finish()[..],
            b"plain\t\\N\ta\\tb\\nc\\rd\\\\e\t\n\\\\N\n".as_slice()
        );
    }
}
