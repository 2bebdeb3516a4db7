//! A small JSON parser for the tests: enough for JSON Lines, strict about what it accepts.

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses one complete JSON text (surrounding whitespace allowed, nothing else).
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            at: 0,
        };
        let value = parser.value()?;
        parser.skip_whitespace();
        if parser.at != parser.chars.len() {
            return Err(format!("trailing characters at {}", parser.at));
        }
        Ok(value)
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Result<char, String> {
        let character = self.peek().ok_or("unexpected end")?;
        self.at += 1;
        Ok(character)
    }

    fn expect(&mut self, wanted: char) -> Result<(), String> {
        match self.next()? {
            found if found == wanted => Ok(()),
            found => Err(format!(
                "expected {wanted:?} at {}, found {found:?}",
                self.at - 1
            )),
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        for wanted in word.chars() {
            self.expect(wanted)?;
        }
        Ok(value)
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_whitespace();
        match self.peek().ok_or("unexpected end")? {
            '{' => self.object(),
            '[' => self.array(),
            '"' => self.string().map(Json::String),
            't' => self.literal("true", Json::Bool(true)),
            'f' => self.literal("false", Json::Bool(false)),
            'n' => self.literal("null", Json::Null),
            '-' | '0'..='9' => self.number(),
            other => Err(format!("unexpected {other:?} at {}", self.at)),
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.expect('{')?;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some('}') {
            self.at += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            let key = self.string()?;
            if members.iter().any(|(existing, _)| *existing == key) {
                return Err(format!("duplicate key {key:?}"));
            }
            self.skip_whitespace();
            self.expect(':')?;
            let value = self.value()?;
            members.push((key, value));
            self.skip_whitespace();
            match self.next()? {
                ',' => continue,
                '}' => return Ok(Json::Object(members)),
                other => return Err(format!("expected ',' or '}}', found {other:?}")),
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.expect('[')?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_whitespace();
            match self.next()? {
                ',' => continue,
                ']' => return Ok(Json::Array(items)),
                other => return Err(format!("expected ',' or ']', found {other:?}")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self.next()?.to_digit(16).ok_or("bad \\u escape")?;
            code = code * 16 + digit;
        }
        Ok(code)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut text = String::new();
        loop {
            match self.next()? {
                '"' => return Ok(text),
                '\\' => match self.next()? {
                    '"' => text.push('"'),
                    '\\' => text.push('\\'),
                    '/' => text.push('/'),
                    'b' => text.push('\u{8}'),
                    'f' => text.push('\u{c}'),
                    'n' => text.push('\n'),
                    'r' => text.push('\r'),
                    't' => text.push('\t'),
                    'u' => {
                        let mut code = self.hex4()?;
                        if (0xD800..0xDC00).contains(&code) {
                            self.expect('\\')?;
                            self.expect('u')?;
                            let low = self.hex4()?;
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err("unpaired surrogate".into());
                            }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                        }
                        text.push(char::from_u32(code).ok_or("bad code point")?);
                    }
                    other => return Err(format!("bad escape \\{other}")),
                },
                control if (control as u32) < 0x20 => {
                    return Err(format!("unescaped control character {control:?}"))
                }
                other => text.push(other),
            }
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        if self.peek() == Some('-') {
            self.at += 1;
        }
        match self.next()? {
            '0' => {}
            '1'..='9' => {
                while matches!(self.peek(), Some('0'..='9')) {
                    self.at += 1;
                }
            }
            other => return Err(format!("bad number at {other:?}")),
        }
        if self.peek() == Some('.') {
            self.at += 1;
            self.expect_digits()?;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.at += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.at += 1;
            }
            self.expect_digits()?;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        text.parse()
            .map(Json::Number)
            .map_err(|err| format!("{text}: {err}"))
    }

    fn expect_digits(&mut self) -> Result<(), String> {
        let start = self.at;
        while matches!(self.peek(), Some('0'..='9')) {
            self.at += 1;
        }
        if self.at == start {
            return Err("expected digits".into());
        }
        Ok(())
    }
}
