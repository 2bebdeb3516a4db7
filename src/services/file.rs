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
pub fn read(path: &Path) -> Result<Vec<Table>, FileError> {
    let shown = path.display().to_string();
    let (line, message) = match std::fs::read(path) {
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
        let reader = self;
        let mut tables: Vec<Table> = Vec::new();
        loop {
            reader.skip_blanks();
            let line = reader.line;
            match reader.peek() {
                None => return Ok(tables),
                Some(b'#' | b'\n' | b'\r') => {}
                Some(b'[') => {
                    let table = reader.header()?;
                    if let Some(first) = tables.iter().find(|first| first.name == table.name) {
                        let message = format!(
                            "duplicate service [{}] (first on line {})",
                            table.name, first.line
                        );
                        return Err(reader.error(line, message));
                    }
                    tables.push(table);
                }
                Some(_) => {
                    let Some(table) = tables.last_mut() else {
                        return Err(reader.error(line, "key outside a [service] table"));
                    };
                    let entry = reader.entry()?;
                    if let Some(first) = table.entries.iter().find(|first| first.key == entry.key) {
                        let message = format!(
                            "duplicate key '{}' in [{}] (first on line {})",
                            entry.key, table.name, first.line
                        );
                        return Err(reader.error(line, message));
                    }
                    table.entries.push(entry);
                }
            }
            reader.end_of_line()?;
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
            None | Some('\n' | '\r') => "the end of the line".to_string(),
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
                                   a \"…\" string"
                        .to_string();
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
                        "\\u takes 4 hexadecimal digits and \\U 8, of a Unicode scalar value"
                            .to_string();
                    return Err(self.error(line, message));
                };
                escaped
            }
            _ => {
                let message = "not one of TOML's escapes: \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \
                               \\UXXXXXXXX"
                    .to_string();
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
