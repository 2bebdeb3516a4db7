//! The services file: a strict subset of TOML, read by hand (see docs/design.md), refused at `FILE:LINE`.
//!
//! Accepted: `[name]` tables with bare names; `key = value` with bare keys, where a value is a basic
//! string `"…"` (TOML's escapes), a literal string `'…'`, a decimal integer, `true`/`false`, or an array
//! of strings, which may spread over lines with comments and a trailing comma; `#` comments; blank lines;
//! LF or CRLF line ends. Everything else TOML has (multi-line strings, inline tables, dotted or quoted keys,
//! floats, dates, arrays of tables…) is refused with its line, so every file accepted here is valid TOML
//! with the same values, and editors and linters read it as grace does.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// One `[name]` table, its entries in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    /// The line of its `[name]` header, from 1.
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// One `key = value` line (or lines, for an array spread over several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// The line of the key, from 1.
    pub line: usize,
    pub value: Value,
}

/// The values the subset has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
    /// An array, of strings only (possibly empty).
    Strings(Vec<String>),
}

impl Value {
    /// What this value is, to name it in a message: "a string", "an integer"…
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Boolean(_) => "a boolean",
            Value::Strings(_) => "an array",
        }
    }
}

/// Why a services file was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The file as the user named it.
    pub path: String,
    /// From 1; 0 when the message is about the whole file (it cannot be read, it declares no main…).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    /// `FILE:LINE: message`, or `FILE: message` for line 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.path, self.message),
            line => write!(f, "{}:{line}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// Reads and parses the file at `path`, shown in messages as `path.display()`.
// Called once, at start-up: not inlined into its caller, whose frame and unwind table would grow
// with it (3 KiB more in the static binary, measured).
#[inline(never)]
pub fn read(path: &Path) -> Result<Vec<Table>, FileError> {
    let shown = path.display().to_string();
    let (line, message) = match read_regular_file(path) {
        Err(err) => (0, format!("cannot read it: {err}")),
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) => return parse(&shown, text),
            Err(err) => {
                let lines = bytes
                    .iter()
                    .take(err.valid_up_to())
                    .filter(|byte| **byte == b'\n');
                let message = "not valid UTF-8 (a TOML file is UTF-8 text)".to_string();
                (lines.count() + 1, message)
            }
        },
    };
    Err(FileError {
        path: shown,
        line,
        message,
    })
}

/// The largest services file grace reads: far more than any real one, little enough that a wrong path
/// (/dev/zero, a log file) is refused at once rather than filling memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The file's bytes, if it is a regular file of at most [`MAX_FILE_BYTES`]: a FIFO would block grace before
/// anything starts, and a device could be endless.
fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that opening a FIFO does not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other(if metadata.is_dir() {
            "it is a directory"
        } else {
            "not a regular file"
        }));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(bytes)
}

/// Parses `text`, naming it `path_shown` in messages.
pub fn parse(path_shown: &str, text: &str) -> Result<Vec<Table>, FileError> {
    let mut reader = Reader {
        // TOML allows a byte order mark, which some editors write.
        text: text.strip_prefix('\u{feff}').unwrap_or(text),
        position: 0,
        line: 1,
    };
    reader.tables().map_err(|(line, message)| FileError {
        path: path_shown.to_string(),
        line,
        message: message.into_owned(),
    })
}

/// Why the text was refused: the line and the message.
type Refusal = (usize, Cow<'static, str>);

/// A cursor over the text that knows its line. It moves byte by byte: everything TOML gives a meaning to
/// is ASCII, and it stops only on ASCII bytes, so every piece it takes out is whole UTF-8.
struct Reader<'a> {
    text: &'a str,
    position: usize,
    line: usize,
}

impl Reader<'_> {
    /// The whole text.
    fn tables(&mut self) -> Result<Vec<Table>, Refusal> {
        let mut tables: Vec<Table> = Vec::new();
        loop {
            self.skip_blanks();
            let line = self.line;
            match self.peek() {
                None => return Ok(tables),
                Some(b'#' | b'\n' | b'\r') => {}
                Some(b'[') => {
                    let table = self.header()?;
                    if let Some(first) = tables.iter().find(|first| first.name == table.name) {
                        let message = format!(
                            "duplicate service [{}] (first on line {})",
                            table.name, first.line
                        );
                        return Err(self.error(line, message));
                    }
                    tables.push(table);
                }
                Some(_) => {
                    let Some(table) = tables.last_mut() else {
                        return Err(self.error(line, "key outside a [service] table"));
                    };
                    let entry = self.entry()?;
                    if let Some(first) = table.entries.iter().find(|first| first.key == entry.key) {
                        let message = format!(
                            "duplicate key '{}' in [{}] (first on line {})",
                            entry.key, table.name, first.line
                        );
                        return Err(self.error(line, message));
                    }
                    table.entries.push(entry);
                }
            }
            self.end_of_line()?;
        }
    }

    fn error(&self, line: usize, message: impl Into<Cow<'static, str>>) -> Refusal {
        (line, message.into())
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn at(&self, bytes: &[u8]) -> bool {
        let rest = self.text.as_bytes().get(self.position..);
        rest.is_some_and(|rest| rest.starts_with(bytes))
    }

    /// What is at the cursor, to name it in a message.
    fn found(&self) -> String {
        match self
            .text
            .get(self.position..)
            .and_then(|rest| rest.chars().next())
        {
            None | Some('\n') => "the end of the line".to_string(),
            Some('\r') if self.at(b"\r\n") => "the end of the line".to_string(),
            Some(next) if next.is_control() => "a control character".to_string(),
            Some(next) => format!("'{next}'"),
        }
    }

    /// Spaces and tabs, TOML's only whitespace.
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
    }

    /// A `#` comment, up to its line end; TOML refuses control characters in it.
    fn skip_comment(&mut self) -> Result<(), Refusal> {
        if self.peek() != Some(b'#') {
            return Ok(());
        }
        while let Some(byte) = self.peek() {
            if byte == b'\n' || self.at(b"\r\n") {
                break;
            }
            if is_control(byte) {
                let message = "a control character in a comment";
                return Err(self.error(self.line, message));
            }
            self.position += 1;
        }
        Ok(())
    }

    /// Takes a line end, `\n` or `\r\n`, if there is one.
    fn line_end(&mut self) -> bool {
        let length = match self.peek() {
            Some(b'\n') => 1,
            Some(b'\r') if self.at(b"\r\n") => 2,
            _ => return false,
        };
        self.position += length;
        self.line += 1;
        true
    }

    /// What may end a line: blanks, a comment, then a line end or the end of the file.
    fn end_of_line(&mut self) -> Result<(), Refusal> {
        self.skip_blanks();
        self.skip_comment()?;
        if self.peek().is_none() || self.line_end() {
            return Ok(());
        }
        let message = format!(
            "{} where the line should end (a comment starts with #)",
            self.found()
        );
        Err(self.error(self.line, message))
    }

    /// Letters, digits, `-` and `_`: a TOML bare key.
    fn bare_key(&mut self) -> String {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            self.position += 1;
        }
        self.text
            .get(start..self.position)
            .unwrap_or_default()
            .to_string()
    }

    /// `[name]`, the cursor at its `[`.
    fn header(&mut self) -> Result<Table, Refusal> {
        let line = self.line;
        self.position += 1;
        self.skip_blanks();
        let name = self.bare_key();
        self.skip_blanks();
        let message = match self.peek() {
            Some(b']') if !name.is_empty() => {
                self.position += 1;
                return Ok(Table {
                    name,
                    line,
                    entries: Vec::new(),
                });
            }
            Some(b'[') => "arrays of tables ([[name]]) are not supported: a service is one [name]",
            Some(b'"' | b'\'') => "quoted service names are not supported",
            Some(b'.') => "dotted table names are not supported: a service is one [name]",
            _ => "a service is a [name] of letters, digits, - and _",
        };
        Err(self.error(line, message))
    }

    /// `key = value`, the cursor at the key.
    fn entry(&mut self) -> Result<Entry, Refusal> {
        let line = self.line;
        let key = self.bare_key();
        self.skip_blanks();
        if key.is_empty() || self.peek() != Some(b'=') {
            let message = match self.peek() {
                Some(b'.') => "dotted keys are not supported".to_string(),
                Some(b'"' | b'\'') if key.is_empty() => "quoted keys are not supported".to_string(),
                _ if key.is_empty() => {
                    format!(
                        "expected a [service] or a key = value, found {}",
                        self.found()
                    )
                }
                _ => format!("expected '=' after the key '{key}', found {}", self.found()),
            };
            return Err(self.error(line, message));
        }
        self.position += 1;
        self.skip_blanks();
        let value = match self.peek() {
            Some(b'[') => Value::Strings(self.array()?),
            _ => self.scalar()?,
        };
        Ok(Entry { key, line, value })
    }

    /// A value other than an array.
    fn scalar(&mut self) -> Result<Value, Refusal> {
        match self.peek() {
            Some(quote @ (b'"' | b'\'')) => return self.string(quote).map(Value::String),
            Some(b'{') => {
                let message = "inline tables ({…}) are not supported";
                return Err(self.error(self.line, message));
            }
            _ => {}
        }
        let start = self.position;
        while self
            .peek()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || b"_+-.:".contains(&byte))
        {
            self.position += 1;
        }
        let value = match self.text.get(start..self.position).unwrap_or_default() {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            "" => Err(format!(
                "expected a value (a \"string\", an integer, true, false or an array of strings), \
                 found {}",
                self.found()
            )),
            token => integer(token).map(Value::Integer),
        };
        value.map_err(|message| self.error(self.line, message))
    }

    /// A basic (`"`) or literal (`'`) string, the cursor at its opening `quote`.
    fn string(&mut self, quote: u8) -> Result<String, Refusal> {
        let line = self.line;
        if self.at(&[quote; 3]) {
            let message = "multi-line strings are not supported: write it on one line";
            return Err(self.error(line, message));
        }
        self.position += 1;
        let mut bytes = Vec::new();
        while let Some(byte) = self.peek() {
            self.position += 1;
            match byte {
                b'\n' | b'\r' => break,
                _ if byte == quote => {
                    // Whole UTF-8: the text is, and the string ends on an ASCII quote.
                    let text = String::from_utf8(bytes);
                    return text.map_err(|_| self.error(line, "not valid UTF-8"));
                }
                b'\\' if quote == b'"' => self.escape(line, &mut bytes)?,
                _ if is_control(byte) => {
                    let message = "a control character in a string: write it as an escape in \
                                   a \"…\" string";
                    return Err(self.error(line, message));
                }
                _ => bytes.push(byte),
            }
        }
        let message = format!(
            "a string without its closing {} on its line",
            char::from(quote)
        );
        Err(self.error(line, message))
    }

    /// What follows a backslash in a basic string: TOML's escapes and no others.
    fn escape(&mut self, line: usize, bytes: &mut Vec<u8>) -> Result<(), Refusal> {
        let letter = self.peek();
        self.position += 1;
        let escaped = match letter {
            Some(b'b') => '\u{8}',
            Some(b't') => '\t',
            Some(b'n') => '\n',
            Some(b'f') => '\u{c}',
            Some(b'r') => '\r',
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(letter @ (b'u' | b'U')) => {
                let digits = if letter == b'u' { 4 } else { 8 };
                let mut code: u32 = 0;
                for _ in 0..digits {
                    let digit = self.peek().and_then(|byte| char::from(byte).to_digit(16));
                    let Some(digit) = digit else {
                        code = u32::MAX; // not a character
                        break;
                    };
                    self.position += 1;
                    code = code << 4 | digit;
                }
                let Some(escaped) = char::from_u32(code) else {
                    let message =
                        "\\u takes 4 hexadecimal digits and \\U 8, of a Unicode scalar value";
                    return Err(self.error(line, message));
                };
                escaped
            }
            _ => {
                let message = "not one of TOML's escapes: \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \
                               \\UXXXXXXXX";
                return Err(self.error(line, message));
            }
        };
        bytes.extend_from_slice(escaped.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }

    /// An array of strings, the cursor at its `[`: over lines, with comments and a trailing comma.
    fn array(&mut self) -> Result<Vec<String>, Refusal> {
        let opened = self.line;
        self.position += 1;
        let mut strings = Vec::new();
        loop {
            self.skip_array_space()?;
            let problem = match self.peek() {
                None => break,
                Some(b']') => {
                    self.position += 1;
                    return Ok(strings);
                }
                Some(quote @ (b'"' | b'\'')) => {
                    strings.push(self.string(quote)?);
                    self.skip_array_space()?;
                    match self.peek() {
                        None => break,
                        Some(b',') => {
                            self.position += 1;
                            continue;
                        }
                        Some(b']') => continue,
                        Some(_) => format!("expected ',' or ']', found {}", self.found()),
                    }
                }
                Some(b'[') => "nested arrays are not supported".to_string(),
                Some(_) => match self.scalar() {
                    Ok(value) => format!("an array holds strings only, not {}", value.kind()),
                    Err((_, message)) => message.into_owned(),
                },
            };
            let message = match self.line == opened {
                true => problem,
                false => format!("{problem} (in the array opened on line {opened})"),
            };
            return Err(self.error(self.line, message));
        }
        Err(self.error(opened, "an array without its closing ]"))
    }

    /// Blanks, line ends and comments between an array's items.
    fn skip_array_space(&mut self) -> Result<(), Refusal> {
        loop {
            self.skip_blanks();
            self.skip_comment()?;
            if !self.line_end() {
                return Ok(());
            }
        }
    }
}

/// A control character, which TOML allows (but for tab) neither in strings nor in comments.
fn is_control(byte: u8) -> bool {
    (byte < b' ' && byte != b'\t') || byte == 0x7f
}

/// A decimal integer as TOML writes it: an optional sign, `_` only between digits, no leading zero.
fn integer(token: &str) -> Result<i64, String> {
    let negative = token.starts_with('-');
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    let mut value: i64 = 0;
    let mut previous = b'_'; // so that a leading `_` is refused as a doubled one is
    for byte in unsigned.bytes() {
        let digit = i64::from(byte.wrapping_sub(b'0'));
        value = match byte {
            // Towards the sign, so that i64::MIN fits.
            b'0'..=b'9' if negative => value
                .checked_mul(10)
                .and_then(|value| value.checked_sub(digit)),
            b'0'..=b'9' => value
                .checked_mul(10)
                .and_then(|value| value.checked_add(digit)),
            b'_' if previous != b'_' => Some(value),
            _ => return Err(not_an_integer(token, unsigned)),
        }
        .ok_or("an integer out of range")?;
        previous = byte;
    }
    if previous == b'_' {
        return Err(not_an_integer(token, unsigned));
    }
    if unsigned.len() > 1 && unsigned.starts_with('0') {
        return Err("an integer with a leading zero".into());
    }
    Ok(value)
}

/// Why `token` is not a decimal integer, in the words of what it looks like.
fn not_an_integer(token: &str, unsigned: &str) -> String {
    let floats = "floats are not supported (a duration is a string such as \"500ms\")";
    let message = if matches!(unsigned, "inf" | "nan") {
        floats
    } else if !unsigned.starts_with(|first: char| first.is_ascii_digit()) {
        return format!("'{token}' is not a value: a string needs quotes");
    } else if ["0x", "0o", "0b"]
        .iter()
        .any(|base| unsigned.starts_with(base))
    {
        "write integers in decimal"
    } else if unsigned.contains(':') {
        "dates and times are not supported"
    } else if unsigned.contains(['.', 'e', 'E']) {
        floats
    } else if unsigned.contains('-') {
        "dates and times are not supported"
    } else {
        return format!("'{token}' is not an integer");
    };
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Value {
        Value::String(text.to_string())
    }

    fn strings(words: &[&str]) -> Value {
        Value::Strings(words.iter().map(|word| word.to_string()).collect())
    }

    fn entry(key: &str, line: usize, value: Value) -> Entry {
        Entry {
            key: key.to_string(),
            line,
            value,
        }
    }

    fn table(name: &str, line: usize, entries: Vec<Entry>) -> Table {
        Table {
            name: name.to_string(),
            line,
            entries,
        }
    }

    #[test]
    fn reads_the_example_of_the_documentation() {
        let text = r#"[migrate]
command = ["/app/manage.py", "migrate", "--noinput"]
once = true                          # runs to completion (status 0) before the next service starts

[logs]
command = ["/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.conf"]

[db-proxy]
command = ["/cloud-sql-proxy", "--port", "5432", "proj:region:inst"]
ready = "tcp:127.0.0.1:5432"         # the next service starts once this port accepts

[app]
main = true                          # no command: the image's CMD runs here in the order
ready = ["/app/healthcheck"]

[nginx]                              # declared after the app: it stops before it
command = ["nginx", "-g", "daemon off;"]
stop-signal = "QUIT"
"#;
        let expected = vec![
            table(
                "migrate",
                1,
                vec![
                    entry(
                        "command",
                        2,
                        strings(&["/app/manage.py", "migrate", "--noinput"]),
                    ),
                    entry("once", 3, Value::Boolean(true)),
                ],
            ),
            table(
                "logs",
                5,
                vec![entry(
                    "command",
                    6,
                    strings(&[
                        "/fluent-bit/bin/fluent-bit",
                        "-c",
                        "/fluent-bit/etc/fluent-bit.conf",
                    ]),
                )],
            ),
            table(
                "db-proxy",
                8,
                vec![
                    entry(
                        "command",
                        9,
                        strings(&["/cloud-sql-proxy", "--port", "5432", "proj:region:inst"]),
                    ),
                    entry("ready", 10, string("tcp:127.0.0.1:5432")),
                ],
            ),
            table(
                "app",
                12,
                vec![
                    entry("main", 13, Value::Boolean(true)),
                    entry("ready", 14, strings(&["/app/healthcheck"])),
                ],
            ),
            table(
                "nginx",
                16,
                vec![
                    entry("command", 17, strings(&["nginx", "-g", "daemon off;"])),
                    entry("stop-signal", 18, string("QUIT")),
                ],
            ),
        ];
        assert_eq!(parse("services.toml", text), Ok(expected));
    }

    /// Every form the subset has, each in a table `[t]` on line 1 with its one key `k` on line 2.
    #[test]
    fn accepts_every_form_of_the_subset() {
        let cases: &[(&str, Value)] = &[
            ("k = \"plain\"", string("plain")),
            ("k = \"\"", string("")),
            (
                r#"k = "\b\t\n\f\r\"\\ \u00e9\U0001F600""#,
                string("\u{8}\t\n\u{c}\r\"\\ é😀"),
            ),
            ("k = \"tab\tinside, and ünïcödé\"", string("tab\tinside, and ünïcödé")),
            (r#"k = 'C:\no\escapes "here"'"#, string(r#"C:\no\escapes "here""#)),
            ("k = ''", string("")),
            ("k = \"# not a comment\" # a comment", string("# not a comment")),
            ("k = 0", Value::Integer(0)),
            ("k = +0", Value::Integer(0)),
            ("k = -0", Value::Integer(0)),
            ("k = 42", Value::Integer(42)),
            ("k = +17", Value::Integer(17)),
            ("k = -17", Value::Integer(-17)),
            ("k = 1_000_000", Value::Integer(1_000_000)),
            ("k = 9223372036854775807", Value::Integer(i64::MAX)),
            ("k = -9223372036854775808", Value::Integer(i64::MIN)),
            ("k = true", Value::Boolean(true)),
            ("k = false # off", Value::Boolean(false)),
            ("k = []", strings(&[])),
            ("k = [ ]", strings(&[])),
            ("k = [\"a\"]", strings(&["a"])),
            ("k = [\"a\", 'b',]", strings(&["a", "b"])),
            ("k=[\"a\",\"b\"]", strings(&["a", "b"])),
            ("\t k \t=\t \"spaced\" \t", string("spaced")),
            (
                "k = [ # the program\n  \"/bin/app\", # then its arguments\n\n  '--flag',\n  \"x\" ,\n]",
                strings(&["/bin/app", "--flag", "x"]),
            ),
            ("k = [\n]", strings(&[])),
            ("k = [\n  \"a\"\n  , \"b\"\n]", strings(&["a", "b"])),
        ];
        for (line, value) in cases {
            let text = format!("[t]\n{line}\n");
            let expected = vec![table("t", 1, vec![entry("k", 2, value.clone())])];
            assert_eq!(parse("f", &text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn accepts_layouts_editors_write() {
        let one = |name: &str, line| vec![table(name, line, vec![])];
        let cases: &[(&str, Vec<Table>)] = &[
            ("", vec![]),
            ("\n\n", vec![]),
            ("# only a comment", vec![]),
            ("  # indented comment\n\t\n", vec![]),
            ("[a]", one("a", 1)),
            ("[a] # trailing comment", one("a", 1)),
            ("[ a ]", one("a", 1)),
            ("  [A_b-9]", one("A_b-9", 1)),
            ("\n\n[a]\n", one("a", 3)),
            ("\u{feff}[a]\n", one("a", 1)),
            ("# comment: ünïcödé and \t tab\n[a]", one("a", 2)),
            (
                "[a]\r\nk = [\r\n  \"x\", # c\r\n]\r\n[b]\r\n",
                vec![
                    table("a", 1, vec![entry("k", 2, strings(&["x"]))]),
                    table("b", 5, vec![]),
                ],
            ),
            (
                "[a]\nk = 1\n[b]\nk = 2",
                vec![
                    table("a", 1, vec![entry("k", 2, Value::Integer(1))]),
                    table("b", 3, vec![entry("k", 4, Value::Integer(2))]),
                ],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse("f", text).as_ref(), Ok(expected), "{text:?}");
        }
    }

    /// Each refusal, with the line it names and its message.
    #[test]
    fn refuses_what_is_not_in_the_subset_with_its_line() {
        let floats = "floats are not supported (a duration is a string such as \"500ms\")";
        let dates = "dates and times are not supported";
        let name = "a service is a [name] of letters, digits, - and _";
        let control = "a control character in a string: write it as an escape in a \"…\" string";
        let escape = r#"not one of TOML's escapes: \b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX"#;
        let unicode = r"\u takes 4 hexadecimal digits and \U 8, of a Unicode scalar value";
        let value =
            "expected a value (a \"string\", an integer, true, false or an array of strings)";
        let not_strings = "an array holds strings only, not";
        let cases: &[(&str, usize, &str)] = &[
            // Tables.
            (
                "[[a]]",
                1,
                "arrays of tables ([[name]]) are not supported: a service is one [name]",
            ),
            ("[\"a\"]", 1, "quoted service names are not supported"),
            ("['a']", 1, "quoted service names are not supported"),
            (
                "[a.b]",
                1,
                "dotted table names are not supported: a service is one [name]",
            ),
            (
                "[a . b]",
                1,
                "dotted table names are not supported: a service is one [name]",
            ),
            ("[]", 1, name),
            ("[a", 1, name),
            ("[a\n]", 1, name),
            ("[a b]", 1, name),
            ("[é]", 1, name),
            (
                "[a]]",
                1,
                "']' where the line should end (a comment starts with #)",
            ),
            (
                "[a] b = 1",
                1,
                "'b' where the line should end (a comment starts with #)",
            ),
            ("[a]\n\n[a]", 3, "duplicate service [a] (first on line 1)"),
            // Keys.
            ("k = 1", 1, "key outside a [service] table"),
            ("# c\n\nk = 1\n[a]", 3, "key outside a [service] table"),
            ("[a]\nk.x = 1", 2, "dotted keys are not supported"),
            ("[a]\nk . x = 1", 2, "dotted keys are not supported"),
            ("[a]\n\"k\" = 1", 2, "quoted keys are not supported"),
            ("[a]\n'k' = 1", 2, "quoted keys are not supported"),
            ("[a]\nk 1", 2, "expected '=' after the key 'k', found '1'"),
            (
                "[a]\nk",
                2,
                "expected '=' after the key 'k', found the end of the line",
            ),
            (
                "[a]\nké = 1",
                2,
                "expected '=' after the key 'k', found 'é'",
            ),
            (
                "[a]\n= 1",
                2,
                "expected a [service] or a key = value, found '='",
            ),
            (
                "[a]\n\u{1}",
                2,
                "expected a [service] or a key = value, found a control character",
            ),
            (
                "[a]\nk = 1\nk = 2",
                3,
                "duplicate key 'k' in [a] (first on line 2)",
            ),
            // Values.
            (
                "[a]\nk =",
                2,
                &format!("{value}, found the end of the line"),
            ),
            ("[a]\nk = # c", 2, &format!("{value}, found '#'")),
            ("[a]\nk = =", 2, &format!("{value}, found '='")),
            (
                "[a]\nk = {x = 1}",
                2,
                "inline tables ({…}) are not supported",
            ),
            (
                "[a]\nk = \"\"\"x\"\"\"",
                2,
                "multi-line strings are not supported: write it on one line",
            ),
            (
                "[a]\nk = '''x'''",
                2,
                "multi-line strings are not supported: write it on one line",
            ),
            (
                "[a]\nk = \"x",
                2,
                "a string without its closing \" on its line",
            ),
            (
                "[a]\nk = \"x\n\"",
                2,
                "a string without its closing \" on its line",
            ),
            (
                "[a]\nk = 'x",
                2,
                "a string without its closing ' on its line",
            ),
            (
                "[a]\nk = \"x\\\"",
                2,
                "a string without its closing \" on its line",
            ),
            ("[a]\nk = \"\\q\"", 2, escape),
            ("[a]\nk = \"\\e\"", 2, escape),
            ("[a]\nk = \"\\x41\"", 2, escape),
            ("[a]\nk = \"\\ \"", 2, escape),
            ("[a]\nk = \"x\\\ny\"", 2, escape),
            ("[a]\nk = \"\\u12\"", 2, unicode),
            ("[a]\nk = \"\\u12G4\"", 2, unicode),
            ("[a]\nk = \"\\uD800\"", 2, unicode),
            ("[a]\nk = \"\\U00110000\"", 2, unicode),
            ("[a]\nk = \"\\UFFFFFFFF\"", 2, unicode),
            ("[a]\nk = \"a\u{1}b\"", 2, control),
            ("[a]\nk = \"a\u{7f}b\"", 2, control),
            (
                "[a]\nk = \"a\rb\"",
                2,
                "a string without its closing \" on its line",
            ),
            ("[a]\nk = 'a\u{0}b'", 2, control),
            (
                "[a]\nk = \"a\" \"b\"",
                2,
                "'\"' where the line should end (a comment starts with #)",
            ),
            (
                "[a]\nk = 1 2",
                2,
                "'2' where the line should end (a comment starts with #)",
            ),
            (
                "[a]\nk = true false",
                2,
                "'f' where the line should end (a comment starts with #)",
            ),
            (
                "[a]\nk = always",
                2,
                "'always' is not a value: a string needs quotes",
            ),
            (
                "[a]\nk = True",
                2,
                "'True' is not a value: a string needs quotes",
            ),
            (
                "[a]\nk = truex",
                2,
                "'truex' is not a value: a string needs quotes",
            ),
            ("[a]\nk = 1.5", 2, floats),
            ("[a]\nk = -0.5", 2, floats),
            ("[a]\nk = 1e3", 2, floats),
            ("[a]\nk = 6.02E+23", 2, floats),
            ("[a]\nk = inf", 2, floats),
            ("[a]\nk = -nan", 2, floats),
            ("[a]\nk = +inf", 2, floats),
            ("[a]\nk = 0x1F", 2, "write integers in decimal"),
            ("[a]\nk = 0o17", 2, "write integers in decimal"),
            ("[a]\nk = 0b101", 2, "write integers in decimal"),
            ("[a]\nk = 1979-05-27", 2, dates),
            ("[a]\nk = 07:32:00", 2, dates),
            ("[a]\nk = 1979-05-27T07:32:00Z", 2, dates),
            ("[a]\nk = 1979-05-27 07:32:00", 2, dates),
            ("[a]\nk = 1979-05-27T00:32:00.999999-07:00", 2, dates),
            ("[a]\nk = 007", 2, "an integer with a leading zero"),
            ("[a]\nk = +01", 2, "an integer with a leading zero"),
            ("[a]\nk = 0_1", 2, "an integer with a leading zero"),
            ("[a]\nk = 1__000", 2, "'1__000' is not an integer"),
            ("[a]\nk = 1000_", 2, "'1000_' is not an integer"),
            (
                "[a]\nk = _1",
                2,
                "'_1' is not a value: a string needs quotes",
            ),
            (
                "[a]\nk = +_1",
                2,
                "'+_1' is not a value: a string needs quotes",
            ),
            ("[a]\nk = +", 2, "'+' is not a value: a string needs quotes"),
            ("[a]\nk = 12abc", 2, "'12abc' is not an integer"),
            ("[a]\nk = 1+2", 2, "'1+2' is not an integer"),
            ("[a]\nk = 9223372036854775808", 2, "an integer out of range"),
            (
                "[a]\nk = -9223372036854775809",
                2,
                "an integer out of range",
            ),
            // Arrays.
            ("[a]\nk = [1]", 2, &format!("{not_strings} an integer")),
            (
                "[a]\nk = [\"x\", true]",
                2,
                &format!("{not_strings} a boolean"),
            ),
            ("[a]\nk = [[\"x\"]]", 2, "nested arrays are not supported"),
            (
                "[a]\nk = [{x = 1}]",
                2,
                "inline tables ({…}) are not supported",
            ),
            ("[a]\nk = [1.5]", 2, floats),
            ("[a]\nk = [,]", 2, &format!("{value}, found ','")),
            ("[a]\nk = [\"x\",,]", 2, &format!("{value}, found ','")),
            (
                "[a]\nk = [\"x\" \"y\"]",
                2,
                "expected ',' or ']', found '\"'",
            ),
            (
                "[a]\nk = [\"x\"] y",
                2,
                "'y' where the line should end (a comment starts with #)",
            ),
            (
                "[a]\nk = [\"\"\"x\"\"\"]",
                2,
                "multi-line strings are not supported: write it on one line",
            ),
            (
                "[a]\nk = [\n\"x\",\n\"y",
                4,
                "a string without its closing \" on its line",
            ),
            (
                "[a]\nk = [\n  \"x\",\n",
                2,
                "an array without its closing ]",
            ),
            ("[a]\nk = [", 2, "an array without its closing ]"),
            ("[a]\nk = [\"x\"", 2, "an array without its closing ]"),
            (
                "[a]\nk = [\"x\",\n[b]\nk = 1",
                3,
                "nested arrays are not supported (in the array opened on line 2)",
            ),
            (
                "[a]\nk = [\"x\"\nj = 1",
                3,
                "expected ',' or ']', found 'j' (in the array opened on line 2)",
            ),
            (
                "[a]\nk = [\n  \"x\"\n  \"y\",\n]",
                4,
                "expected ',' or ']', found '\"' (in the array opened on line 2)",
            ),
            (
                "[a]\nk = [\n  1,\n]",
                3,
                &format!("{not_strings} an integer (in the array opened on line 2)"),
            ),
            // Comments and line ends.
            ("# a\u{1}b", 1, "a control character in a comment"),
            ("[a] # \u{7f}", 1, "a control character in a comment"),
            (
                "[a]\nk = [ # \u{0}\n]",
                2,
                "a control character in a comment",
            ),
            (
                "# \r\n[a]\r# c",
                2,
                "a control character where the line should end (a comment starts with #)",
            ),
            (
                "[a]\r\nk\r\n",
                2,
                "expected '=' after the key 'k', found the end of the line",
            ),
            (
                "[a]\r[b]",
                1,
                "a control character where the line should end (a comment starts with #)",
            ),
            (
                "[a]\nk = 1\r",
                2,
                "a control character where the line should end (a comment starts with #)",
            ),
            (
                "\r",
                1,
                "a control character where the line should end (a comment starts with #)",
            ),
        ];
        for (text, line, message) in cases {
            let refused = parse("dir/services.toml", text);
            let expected = FileError {
                path: "dir/services.toml".to_string(),
                line: *line,
                message: message.to_string(),
            };
            assert_eq!(refused, Err(expected), "{text:?}");
        }
    }

    #[test]
    fn an_error_shows_the_file_and_the_line() {
        let at_line = FileError {
            path: "/etc/grace/services.toml".to_string(),
            line: 7,
            message: "key outside a [service] table".to_string(),
        };
        assert_eq!(
            at_line.to_string(),
            "/etc/grace/services.toml:7: key outside a [service] table"
        );
        let whole_file = FileError { line: 0, ..at_line };
        assert_eq!(
            whole_file.to_string(),
            "/etc/grace/services.toml: key outside a [service] table"
        );
    }

    #[test]
    fn reads_a_file_and_refuses_one_it_cannot_read_or_that_is_not_utf8() {
        let directory = std::env::temp_dir().join(format!("grace-services-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let good = directory.join("good.toml");
        std::fs::write(&good, "[app]\nmain = true\n").unwrap();
        let expected = vec![table(
            "app",
            1,
            vec![entry("main", 2, Value::Boolean(true))],
        )];
        assert_eq!(read(&good), Ok(expected));

        let latin1 = directory.join("latin1.toml");
        std::fs::write(&latin1, b"[app]\n# caf\xe9\ncommand = [\"x\"]\n").unwrap();
        let err = read(&latin1).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: not valid UTF-8 (a TOML file is UTF-8 text)",
                latin1.display()
            )
        );

        let missing = directory.join("missing.toml");
        assert_eq!(
            read(&missing).unwrap_err().to_string(),
            format!(
                "{}: cannot read it: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let err = read(&directory).unwrap_err();
        assert_eq!(
            (err.line, err.message.starts_with("cannot read it: ")),
            (0, true)
        );
        std::fs::remove_dir_all(&directory).unwrap();
    }
}

/// Properties: no input makes the reader panic, and every file it accepts is valid TOML with the same
/// values (checked against the `toml` crate, a dev-dependency only), over files built from the pieces
/// people write, over those files with a piece of something else put in, and over arbitrary text.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// What the `toml` crate makes of the tables, to compare with it.
    fn as_toml(tables: &[Table]) -> toml::Table {
        let value = |value: &Value| match value {
            Value::String(text) => toml::Value::String(text.clone()),
            Value::Integer(number) => toml::Value::Integer(*number),
            Value::Boolean(truth) => toml::Value::Boolean(*truth),
            Value::Strings(words) => {
                toml::Value::Array(words.iter().cloned().map(toml::Value::String).collect())
            }
        };
        let entries = |table: &Table| {
            let entries = table.entries.iter();
            entries
                .map(|entry| (entry.key.clone(), value(&entry.value)))
                .collect()
        };
        let tables = tables.iter();
        tables
            .map(|table| (table.name.clone(), toml::Value::Table(entries(table))))
            .collect()
    }

    /// Accepted text must be TOML, and mean the same.
    fn check_accepted_is_toml(text: &str) -> Result<(), TestCaseError> {
        if let Ok(tables) = parse("f", text) {
            let theirs = text.parse::<toml::Table>();
            prop_assert!(
                theirs.is_ok(),
                "accepted, but not TOML: {text:?}: {theirs:?}"
            );
            prop_assert_eq!(theirs.ok(), Some(as_toml(&tables)), "{:?}", text);
        }
        Ok(())
    }

    /// A basic string as written, and its value: plain characters, every escape, \u and \U of any
    /// character.
    fn basic_string() -> impl Strategy<Value = (String, String)> {
        let escapes = [
            ("\\b", "\u{8}"),
            ("\\t", "\t"),
            ("\\n", "\n"),
            ("\\f", "\u{c}"),
            ("\\r", "\r"),
            ("\\\"", "\""),
            ("\\\\", "\\"),
        ];
        let piece = prop_oneof![
            "[a-zA-Z0-9 /:.,=\\[\\]{}#'é😀\t-]".prop_map(|plain: String| (plain.clone(), plain)),
            prop::sample::select(escapes.to_vec())
                .prop_map(|(written, value)| (written.to_string(), value.to_string())),
            (any::<char>(), any::<bool>()).prop_map(|(character, lower)| {
                let code = u32::from(character);
                let written = match code {
                    0..=0xffff => format!("\\u{code:04X}"),
                    _ => format!("\\U{code:08X}"),
                };
                let written = if lower {
                    written
                        .to_lowercase()
                        .replacen("\\u", "\\U", usize::from(code > 0xffff))
                } else {
                    written
                };
                (written, character.to_string())
            }),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|pieces| {
            let (written, values): (Vec<String>, Vec<String>) = pieces.into_iter().unzip();
            (format!("\"{}\"", written.concat()), values.concat())
        })
    }

    fn literal_string() -> impl Strategy<Value = (String, String)> {
        "[a-zA-Z0-9 /:.,=\\[\\]{}#\"\\\\é😀\t-]{0,10}"
            .prop_map(|text: String| (format!("'{text}'"), text))
    }

    /// An integer as TOML writes it: a sign or not, underscores between digits.
    fn integer() -> impl Strategy<Value = (String, i64)> {
        let number = prop_oneof![any::<i64>(), -1000i64..1000];
        (number, any::<u32>(), any::<bool>()).prop_map(|(number, underscores, plus)| {
            let mut written = match (number < 0, plus) {
                (true, _) => "-".to_string(),
                (false, true) => "+".to_string(),
                (false, false) => String::new(),
            };
            for (index, digit) in number.unsigned_abs().to_string().chars().enumerate() {
                if index > 0 && underscores & (1 << (index % 32)) != 0 {
                    written.push('_');
                }
                written.push(digit);
            }
            (written, number)
        })
    }

    /// What may come between an array's brackets and items: blanks, comments, line ends.
    fn gap() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "",
            " ",
            "\t",
            "\n  ",
            " # note\n",
            "\r\n",
            " # c, ] \"\r\n\t",
            "\n\n",
        ])
    }

    fn array() -> impl Strategy<Value = (String, toml::Value)> {
        let item = (prop_oneof![basic_string(), literal_string()], gap(), gap());
        (prop::collection::vec(item, 0..4), any::<bool>(), gap()).prop_map(
            |(items, trailing_comma, closing)| {
                let mut written = "[".to_string();
                let mut values = Vec::new();
                for (index, ((item, value), before, after)) in items.iter().enumerate() {
                    written.push_str(&format!("{before}{item}{after}"));
                    if index + 1 < items.len() || trailing_comma {
                        written.push(',');
                    }
                    values.push(toml::Value::String(value.clone()));
                }
                written.push_str(closing);
                written.push(']');
                (written, toml::Value::Array(values))
            },
        )
    }

    fn value() -> impl Strategy<Value = (String, toml::Value)> {
        prop_oneof![
            basic_string().prop_map(|(written, value)| (written, toml::Value::String(value))),
            literal_string().prop_map(|(written, value)| (written, toml::Value::String(value))),
            integer().prop_map(|(written, value)| (written, toml::Value::Integer(value))),
            any::<bool>().prop_map(|truth| (truth.to_string(), toml::Value::Boolean(truth))),
            array(),
        ]
    }

    fn blanks() -> impl Strategy<Value = String> {
        "[ \t]{0,2}"
    }

    fn comment() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "#[a-zA-Z0-9 \t#\"'\\[\\]=,é😀-]{0,12}"]
    }

    fn line_end() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["\n", "\r\n"])
    }

    /// Lines of nothing: blank, or a comment.
    fn filler() -> impl Strategy<Value = String> {
        prop::collection::vec((blanks(), comment(), line_end()), 0..2).prop_map(|lines| {
            let lines = lines.into_iter();
            lines
                .map(|(blanks, comment, end)| format!("{blanks}{comment}{end}"))
                .collect()
        })
    }

    fn entry() -> impl Strategy<Value = (String, String, toml::Value)> {
        let key = "[A-Za-z0-9_-]{1,13}";
        let spacing = (
            blanks(),
            blanks(),
            blanks(),
            blanks(),
            comment(),
            line_end(),
        );
        (key, value(), spacing, filler()).prop_map(
            |(key, (written, value), (indent, before, after, trailing, comment, end), filler)| {
                let line = format!(
                    "{indent}{key}{before}={after}{written}{trailing}{comment}{end}{filler}"
                );
                (key, line, value)
            },
        )
    }

    fn table() -> impl Strategy<Value = (String, String, Vec<(String, String, toml::Value)>)> {
        let name = "[A-Za-z0-9_-]{1,10}";
        let spacing = (
            blanks(),
            blanks(),
            blanks(),
            blanks(),
            comment(),
            line_end(),
        );
        let entries = prop::collection::vec(entry(), 0..5);
        (name, spacing, filler(), entries).prop_map(
            |(name, (indent, before, after, trailing, comment, end), filler, entries)| {
                let header =
                    format!("{indent}[{before}{name}{after}]{trailing}{comment}{end}{filler}");
                (name, header, entries)
            },
        )
    }

    /// A file as people write it, and the values it holds.
    fn file() -> impl Strategy<Value = (String, toml::Table)> {
        let bom = prop_oneof![9 => Just(""), 1 => Just("\u{feff}")];
        (
            bom,
            filler(),
            prop::collection::vec(table(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(bom, filler, tables, last_line_end)| {
                let mut text = format!("{bom}{filler}");
                let mut expected = toml::Table::new();
                for (index, (name, header, entries)) in tables.into_iter().enumerate() {
                    // Names and keys made unique, which the reader requires as TOML does.
                    let unique_name = format!("{name}-{index}");
                    text.push_str(&header.replacen(&name, &unique_name, 1));
                    let mut values = toml::Table::new();
                    for (number, (key, line, value)) in entries.into_iter().enumerate() {
                        let unique_key = format!("{key}-{number}");
                        text.push_str(&line.replacen(&key, &unique_key, 1));
                        values.insert(unique_key, value);
                    }
                    expected.insert(unique_name, toml::Value::Table(values));
                }
                if !last_line_end {
                    text = text.trim_end_matches(['\n', '\r']).to_string();
                }
                (text, expected)
            })
    }

    /// Pieces of TOML the subset refuses, and of text that is not TOML at all.
    const FOREIGN: &[&str] = &[
        "1.5",
        "\"\"\"",
        "'''",
        "{",
        "}",
        ".",
        "[[",
        "]]",
        "\\q",
        "\\e",
        "\\x41",
        "\u{1}",
        "\r",
        "\u{7f}",
        "0x1F",
        "1979-05-27",
        "07:32:00",
        "a.b = 1\n",
        "=",
        ",",
        "]",
        "[",
        "\"",
        "'",
        "#",
        "\n",
        " ",
        "x = 1\n",
        "_",
        "nan",
        "\\",
        "\\u00",
        "\\uD800",
        "[t]\n",
        "\t",
        "true",
        "-",
        "+",
        "0",
        "é",
    ];

    /// A table of lines made of TOML's tokens: `kN = ` and a few tokens, or tokens alone.
    fn soup() -> impl Strategy<Value = String> {
        let tokens = vec![
            "\"", "'", "\\", "u", "U", "0", "1", "7", "_", "+", "-", ".", "e", "x", "[", "]", ",",
            "#", " ", "\t", "\n", "\r", "true", "a", "é", "{", "}", ":", "T", "Z", "=", "\u{1}",
            "b", "n", "\"\"", "''", "nan", "inf",
        ];
        let values = vec![
            "\"a\"",
            "'b'",
            "\"\\u00e9\\t\"",
            "12",
            "-3",
            "1_0",
            "true",
            "false",
            "[]",
            "[\"a\"]",
            "['a', \"b\",]",
            "[\n\"a\"\n]",
            " # c",
        ];
        let token = prop_oneof![
            2 => prop::sample::select(tokens),
            3 => prop::sample::select(values),
        ];
        let tokens = prop::collection::vec(token, 1..4);
        let line = (any::<bool>(), tokens).prop_map(|(entry, tokens)| (entry, tokens.concat()));
        prop::collection::vec(line, 1..4).prop_map(|lines| {
            let mut text = "[t]\n".to_string();
            for (number, (entry, tokens)) in lines.into_iter().enumerate() {
                match entry {
                    true => text.push_str(&format!("k{number} = {tokens}\n")),
                    false => text.push_str(&format!("{tokens}\n")),
                }
            }
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_file_as_people_write_it_is_read_as_toml_reads_it((text, expected) in file()) {
            let tables = parse("f", &text);
            prop_assert!(tables.is_ok(), "refused {:?}: {:?}", text, tables);
            prop_assert_eq!(tables.map(|tables| as_toml(&tables)).ok(), Some(expected.clone()));
            prop_assert_eq!(text.parse::<toml::Table>().ok(), Some(expected));
        }

        #[test]
        fn a_file_with_something_foreign_put_in_is_refused_or_read_as_toml_reads_it(
            (text, _) in file(),
            foreign in prop::sample::select(FOREIGN.to_vec()),
            at in any::<prop::sample::Index>(),
            replace in any::<bool>(),
        ) {
            let boundaries: Vec<usize> = text.char_indices().map(|(index, _)| index).chain([text.len()]).collect();
            let start = boundaries[at.index(boundaries.len())];
            let end = match replace {
                true => boundaries.iter().copied().find(|index| *index > start).unwrap_or(start),
                false => start,
            };
            let (head, tail) = (text.split_at(start).0, text.split_at(end).1);
            let changed = format!("{head}{foreign}{tail}");
            check_accepted_is_toml(&changed)?;
        }

        #[test]
        fn lines_of_toml_syntax_are_refused_or_read_as_toml_reads_them(text in soup()) {
            check_accepted_is_toml(&text)?;
        }

        #[test]
        fn any_text_is_refused_or_read_as_toml_reads_it(text in any::<String>()) {
            check_accepted_is_toml(&text)?;
        }
    }
}
