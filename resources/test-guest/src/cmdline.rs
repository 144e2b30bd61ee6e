//! The kernel command line: space-separated words, `key=value` or bare flags. Unknown words
//! are ignored (they show up in the report's `cmdline:` line).

/// The value of the first `key=value` word, if any.
pub fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Whether the bare word `word` is present.
pub fn has_word(cmdline: &str, word: &str) -> bool {
    cmdline.split_ascii_whitespace().any(|w| w == word)
}

/// A numeric `key=N` value; None when absent or not a number.
pub fn number(cmdline: &str, key: &str) -> Option<u64> {
    value(cmdline, key)?.parse().ok()
}

/// The check names of `test=a,b,c`, in order, empty names skipped.
pub fn tests(cmdline: &str) -> impl Iterator<Item = &str> {
    value(cmdline, "test")
        .unwrap_or("")
        .split(',')
        .filter(|n| !n.is_empty())
}

/// The longest valid UTF-8 prefix of `bytes` up to the first NUL: a command line with
/// garbage in it still yields its readable start.
pub fn from_bytes(bytes: &[u8]) -> &str {
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let bytes = bytes.get(..len).unwrap_or(&[]);
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_flags_and_numbers() {
        let line = "end=exit  test=serial,,cpus quiet cpus=4 pio.count=x testing=1";
        assert_eq!(value(line, "end"), Some("exit"));
        assert_eq!(value(line, "test"), Some("serial,,cpus"));
        assert_eq!(value(line, "tes"), None);
        assert_eq!(value(line, "missing"), None);
        assert!(has_word(line, "quiet"));
        assert!(!has_word(line, "end"));
        assert_eq!(number(line, "cpus"), Some(4));
        assert_eq!(number(line, "pio.count"), None);
        assert_eq!(tests(line).collect::<Vec<_>>(), ["serial", "cpus"]);
        assert_eq!(tests("").count(), 0);
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(value("end=exit end=idle", "end"), Some("exit"));
    }

    #[test]
    fn bytes_stop_at_nul_and_bad_utf8() {
        assert_eq!(from_bytes(b"end=exit\0junk"), "end=exit");
        assert_eq!(from_bytes(b"abc\xffdef"), "abc");
        assert_eq!(from_bytes(b"no nul"), "no nul");
        assert_eq!(from_bytes(b""), "");
    }
}
