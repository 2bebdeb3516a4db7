//! The services file: a strict subset of TOML, read by hand (see docs/design.md), refused at `FILE:LINE`.
//!
//! Accepted: `[name]` tables with bare names; `key = value` with bare keys, where a value is a basic
//! string `"…"` (TOML's escapes), a literal string `'…'`, a decimal integer, `true`/`false`, or an array
//! of strings, which may spread over lines with comments and a trailing comma; `#` comments; blank lines;
//! LF or CRLF line ends. Everything else TOML has (multi-line strings, inline tables, dotted or quoted keys,
//! floats, dates, arrays of tables…) is refused with its line, so every file accepted here is valid TOML
//! with the same values, and editors and linters read it as grace does.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::Chars;

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

/// A services file is a screenful; anything much larger is the wrong file (or /dev/zero).
const LARGEST_FILE: u64 = 1 << 20;

/// Reads and parses the file at `path`, shown in messages as `path.display()`.
pub fn read(path: &Path) -> Result<Vec<Table>, FileError> {
    let shown = path.display().to_string();
    let refuse = |line, message: String| FileError {
        path: shown.clone(),
        line,
        message,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(LARGEST_FILE + 1).read_to_end(&mut bytes))
        .map_err(|err| refuse(0, format!("cannot read it: {err}")))?;
    if bytes.len() as u64 > LARGEST_FILE {
        return Err(refuse(
            0,
            "too large for a services file (over 1 MiB)".into(),
        ));
    }
    match String::from_utf8(bytes) {
        Ok(text) => parse(&shown, &text),
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let newlines = err
                .as_bytes()
                .iter()
                .take(valid)
                .filter(|byte| **byte == b'\n');
            Err(refuse(
                newlines.count() + 1,
                "not valid UTF-8 (a TOML file is UTF-8 text)".into(),
            ))
        }
    }
}

/// Parses `text`, naming it `path_shown` in messages.
pub fn parse(path_shown: &str, text: &str) -> Result<Vec<Table>, FileError> {
    let mut reader = Reader {
        path: path_shown,
        // TOML allows a byte order mark, which some editors write.
        rest: text.strip_prefix('\u{feff}').unwrap_or(text).chars(),
        line: 1,
    };
    let mut tables: Vec<Table> = Vec::new();
    loop {
        reader.skip_blanks();
        let after = match reader.peek() {
            None => return Ok(tables),
            Some('#' | '\n' | '\r') => "",
            Some('[') => {
                let table = reader.header()?;
                if let Some(first) = tables.iter().find(|first| first.name == table.name) {
                    let message = format!(
                        "duplicate service [{}] (first on line {})",
                        table.name, first.line
                    );
                    return Err(reader.error(table.line, message));
                }
                tables.push(table);
                "after the table's name"
            }
            Some(_) => {
                let line = reader.line;
                let Some(table) = tables.last_mut() else {
                    return Err(reader.error(line, "key outside a [service] table".into()));
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
                "after the value"
            }
        };
        reader.end_of_line(after)?;
    }
}

/// A cursor over the text that knows its line.
struct Reader<'a> {
    path: &'a str,
    rest: Chars<'a>,
    line: usize,
}

impl Reader<'_> {
    fn error(&self, line: usize, message: String) -> FileError {
        FileError {
            path: self.path.to_string(),
            line,
            message,
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest.clone().next()
    }

    fn bump(&mut self) -> Option<char> {
        let next = self.rest.next();
        if next == Some('\n') {
            self.line += 1;
        }
        next
    }

    fn starts_with(&self, text: &str) -> bool {
        self.rest.as_str().starts_with(text)
    }

    /// Spaces and tabs, TOML's only whitespace.
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// What may end a line: blanks, a comment, then a line end or the end of the file.
    fn end_of_line(&mut self, after: &str) -> Result<(), FileError> {
        self.skip_blanks();
        self.skip_comment()?;
        match self.peek() {
            None => Ok(()),
            Some('\n' | '\r') => self.newline(),
            Some(found) => {
                let message = format!(
                    "unexpected '{}' {after}: one item per line, and a comment starts with #",
                    found.escape_debug()
                );
                Err(self.error(self.line, message))
            }
        }
    }

    /// A `#` comment up to (not including) the line end; TOML refuses control characters in it.
    fn skip_comment(&mut self) -> Result<(), FileError> {
        if self.peek() != Some('#') {
            return Ok(());
        }
        while let Some(next) = self.peek() {
            match next {
                '\n' | '\r' => break,
                '\t' => {}
                control if control.is_ascii_control() => {
                    let message = format!(
                        "a control character ({}) in a comment",
                        control.escape_debug()
                    );
                    return Err(self.error(self.line, message));
                }
                _ => {}
            }
            self.bump();
        }
        Ok(())
    }

    /// `\n` or `\r\n`.
    fn newline(&mut self) -> Result<(), FileError> {
        if self.peek() == Some('\r') {
            self.bump();
            if self.peek() != Some('\n') {
                let message = "a carriage return not followed by a line feed".to_string();
                return Err(self.error(self.line, message));
            }
        }
        self.bump();
        Ok(())
    }

    /// Letters, digits, `-` and `_`: a TOML bare key.
    fn bare_key(&mut self) -> String {
        let mut key = String::new();
        while let Some(next) = self.peek() {
            if !(next.is_ascii_alphanumeric() || next == '-' || next == '_') {
                break;
            }
            key.push(next);
            self.bump();
        }
        key
    }

    /// `[name]`, the reader at its `[`.
    fn header(&mut self) -> Result<Table, FileError> {
        let line = self.line;
        self.bump();
        if self.peek() == Some('[') {
            let message = "arrays of tables ([[name]]) are not supported: a service is one [name]";
            return Err(self.error(line, message.into()));
        }
        self.skip_blanks();
        let name = self.bare_key();
        self.skip_blanks();
        let problem = match self.peek() {
            Some(']') if !name.is_empty() => None,
            Some(']') => Some("an empty service name".to_string()),
            Some('"' | '\'') => Some("quoted service names are not supported".to_string()),
            Some('.') => {
                Some("dotted table names are not supported: a service is one [name]".into())
            }
            None | Some('\n' | '\r' | '#') => Some("a table header without its ]".to_string()),
            Some(found) => Some(format!(
                "'{}' in a service name: a name has letters, digits, - and _",
                found.escape_debug()
            )),
        };
        if let Some(message) = problem {
            return Err(self.error(line, message));
        }
        self.bump();
        Ok(Table {
            name,
            line,
            entries: Vec::new(),
        })
    }

    /// `key = value`, the reader at the key.
    fn entry(&mut self) -> Result<Entry, FileError> {
        let line = self.line;
        let key = self.bare_key();
        self.skip_blanks();
        let problem = match self.peek() {
            Some('=') if !key.is_empty() => None,
            Some('=') => Some("a value without its key".to_string()),
            Some('"' | '\'') if key.is_empty() => Some("quoted keys are not supported".to_string()),
            Some('.') => Some("dotted keys are not supported".to_string()),
            _ if key.is_empty() => Some(match self.peek() {
                Some(found) => format!(
                    "expected a [service] or a key = value, not '{}'",
                    found.escape_debug()
                ),
                None => "expected a [service] or a key = value".to_string(),
            }),
            _ => Some(format!("expected '=' after the key '{key}'")),
        };
        if let Some(message) = problem {
            return Err(self.error(line, message));
        }
        self.bump();
        self.skip_blanks();
        let value = match self.peek() {
            Some('[') => Value::Strings(self.array()?),
            None | Some('\n' | '\r' | '#') => {
                return Err(self.error(line, format!("'{key} =' without a value")))
            }
            Some(_) => self.scalar()?,
        };
        Ok(Entry { key, line, value })
    }

    /// A value other than an array.
    fn scalar(&mut self) -> Result<Value, FileError> {
        match self.peek() {
            Some('"' | '\'') => return self.string().map(Value::String),
            Some('{') => {
                let message = "inline tables ({…}) are not supported".to_string();
                return Err(self.error(self.line, message));
            }
            _ => {}
        }
        let mut token = String::new();
        while let Some(next) = self.peek() {
            if !(next.is_ascii_alphanumeric() || "_+-.:".contains(next)) {
                break;
            }
            token.push(next);
            self.bump();
        }
        match token.as_str() {
            "true" => return Ok(Value::Boolean(true)),
            "false" => return Ok(Value::Boolean(false)),
            _ => {}
        }
        integer(&token)
            .map(Value::Integer)
            .map_err(|message| self.error(self.line, message))
    }

    /// A basic or literal string, the reader at its opening quote.
    fn string(&mut self) -> Result<String, FileError> {
        let line = self.line;
        let Some(quote) = self.bump() else {
            return Err(self.error(line, "expected a string".into()));
        };
        if self.starts_with(if quote == '"' { "\"\"" } else { "''" }) {
            let message = format!("multi-line strings ({quote}{quote}{quote}) are not supported");
            return Err(self.error(line, message));
        }
        let unterminated = || format!("a string without its closing {quote} on its line");
        let mut text = String::new();
        loop {
            match self.bump() {
                None | Some('\n' | '\r') => return Err(self.error(line, unterminated())),
                Some(end) if end == quote => return Ok(text),
                Some('\\') if quote == '"' => text.push(self.escape(line)?),
                Some('\t') => text.push('\t'),
                Some(control) if control.is_ascii_control() => {
                    let message = format!(
                        "a control character ({}) in a string: write it as an escape in a \"…\" string",
                        control.escape_debug()
                    );
                    return Err(self.error(line, message));
                }
                Some(other) => text.push(other),
            }
        }
    }

    /// What follows a backslash in a basic string: TOML's escapes and no others.
    fn escape(&mut self, line: usize) -> Result<char, FileError> {
        let digits = match self.bump() {
            Some('b') => return Ok('\u{8}'),
            Some('t') => return Ok('\t'),
            Some('n') => return Ok('\n'),
            Some('f') => return Ok('\u{c}'),
            Some('r') => return Ok('\r'),
            Some('"') => return Ok('"'),
            Some('\\') => return Ok('\\'),
            Some('u') => 4,
            Some('U') => 8,
            None | Some('\n' | '\r') => {
                let message = "a string without its closing \" on its line".to_string();
                return Err(self.error(line, message));
            }
            Some(other) => {
                let message = format!(
                    "'\\{}' is not an escape (TOML's are \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX)",
                    other.escape_debug()
                );
                return Err(self.error(line, message));
            }
        };
        let mut code: u32 = 0;
        for _ in 0..digits {
            let digit = self.peek().and_then(|next| next.to_digit(16));
            let Some(digit) = digit else {
                let letter = if digits == 4 { 'u' } else { 'U' };
                let message = format!("a \\{letter} escape needs {digits} hexadecimal digits");
                return Err(self.error(line, message));
            };
            self.bump();
            code = code.saturating_mul(16).saturating_add(digit);
        }
        char::from_u32(code)
            .ok_or_else(|| self.error(line, format!("\\u{code:X} is not a Unicode scalar value")))
    }

    /// An array of strings, the reader at its `[`: over lines, with comments, and a trailing comma.
    fn array(&mut self) -> Result<Vec<String>, FileError> {
        let opened = self.line;
        self.bump();
        let mut strings = Vec::new();
        loop {
            self.skip_array_space()?;
            if self.peek() == Some(']') {
                self.bump();
                return Ok(strings);
            }
            strings.push(self.array_item(opened)?);
            self.skip_array_space()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {
                    self.bump();
                    return Ok(strings);
                }
                None => return Err(self.unterminated_array(opened)),
                Some(found) => {
                    let message = format!("expected ',' or ']', not '{}'", found.escape_debug());
                    return Err(self.array_error(opened, message));
                }
            }
        }
    }

    fn array_item(&mut self, opened: usize) -> Result<String, FileError> {
        let problem = match self.peek() {
            None => return Err(self.unterminated_array(opened)),
            Some('"' | '\'') => return self.string(),
            Some('[') => "nested arrays are not supported".to_string(),
            Some('{') => "inline tables ({…}) are not supported".to_string(),
            Some(_) => match self.scalar() {
                Ok(value) => format!("an array holds strings only, not {}", value.kind()),
                Err(err) => err.message,
            },
        };
        Err(self.array_error(opened, problem))
    }

    /// Blanks, line ends and comments between an array's items.
    fn skip_array_space(&mut self) -> Result<(), FileError> {
        loop {
            self.skip_blanks();
            self.skip_comment()?;
            match self.peek() {
                Some('\n' | '\r') => self.newline()?,
                _ => return Ok(()),
            }
        }
    }

    /// A message about an array, which says where it began when that was on another line.
    fn array_error(&self, opened: usize, message: String) -> FileError {
        if self.line == opened {
            return self.error(self.line, message);
        }
        self.error(
            self.line,
            format!("{message} (in the array opened on line {opened})"),
        )
    }

    fn unterminated_array(&self, opened: usize) -> FileError {
        self.error(opened, "an array without its closing ]".into())
    }
}

/// A decimal integer as TOML writes it: an optional sign, `_` only between digits, no leading zero.
fn integer(token: &str) -> Result<i64, String> {
    let negative = token.starts_with('-');
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    if matches!(unsigned, "inf" | "nan") {
        return Err(format!("floats are not supported ({token})"));
    }
    if !unsigned.starts_with(|first: char| first.is_ascii_digit()) {
        return Err(if token.is_empty() {
            "expected a value: a \"string\", an integer, true, false or an array of strings".into()
        } else {
            format!("'{token}' is not a value: a string needs quotes")
        });
    }
    if ["0x", "0o", "0b"]
        .iter()
        .any(|prefix| unsigned.starts_with(prefix))
    {
        return Err(format!("write {token} in decimal"));
    }
    if unsigned.contains([':', '-']) {
        return Err(format!("dates and times are not supported ({token})"));
    }
    if unsigned.contains(['.', 'e', 'E']) {
        return Err(format!(
            "floats are not supported ({token}); a duration is a string such as \"500ms\""
        ));
    }
    let invalid = || format!("'{token}' is not an integer");
    if unsigned.len() > 1 && unsigned.starts_with('0') {
        return Err(format!("leading zeros are not allowed ({token})"));
    }
    if unsigned.ends_with('_') || unsigned.contains("__") {
        return Err(invalid());
    }
    let mut value: i64 = 0;
    for character in unsigned.chars().filter(|character| *character != '_') {
        let digit = character.to_digit(10).ok_or_else(invalid)?;
        // Accumulate towards the sign, so that i64::MIN fits.
        value = value
            .checked_mul(10)
            .and_then(|value| match negative {
                true => value.checked_sub(i64::from(digit)),
                false => value.checked_add(i64::from(digit)),
            })
            .ok_or_else(|| format!("{token} is out of range for an integer"))?;
    }
    Ok(value)
}
