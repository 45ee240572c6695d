//! How an error reads in logs, in `duplex.link_status` and in journal
//! records: the whole chain of its causes, each said once. Free of every
//! other module, so the lowest layers can use it.

/// An error with its sources, one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
