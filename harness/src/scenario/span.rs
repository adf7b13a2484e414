//! A small JSON parser that keeps byte offsets, so errors found after
//! decoding (semantic rules, and serde errors raised inside buffered tagged
//! ops, which carry no position) can be mapped back to a line and column.
//!
//! It is only run on text that serde_json has already accepted as JSON; on
//! anything unexpected it gives up (returns `None`) and the caller falls back
//! to a coarser position.

/// A JSON value with the byte range it spans in the source.
#[derive(Debug)]
pub(crate) struct Node {
    /// Offset of the first byte of the value.
    pub start: usize,
    /// Offset one past the last byte of the value.
    pub end: usize,
    pub value: Value,
}

#[derive(Debug)]
pub(crate) enum Value {
    Object(Vec<Member>),
    Array(Vec<Node>),
    String(String),
    /// Numbers, booleans, null: their text is not needed.
    Scalar,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub key: String,
    /// Offset of the key's opening quote.
    pub key_start: usize,
    pub node: Node,
}

impl Node {
    /// The member `key` of an object.
    pub fn member(&self, key: &str) -> Option<&Member> {
        match &self.value {
            Value::Object(members) => members.iter().find(|m| m.key == key),
            _ => None,
        }
    }

    /// Element `i` of an array.
    pub fn item(&self, i: usize) -> Option<&Node> {
        match &self.value {
            Value::Array(items) => items.get(i),
            _ => None,
        }
    }

    /// The offset a JSON pointer designates: the key of the last member
    /// named, or the start of the last array element named. Unknown tails
    /// resolve to the deepest node that exists.
    pub fn locate(&self, pointer: &str) -> usize {
        let mut node = self;
        let mut at = self.start;
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            match &node.value {
                Value::Object(_) => match node.member(&token) {
                    Some(m) => {
                        at = m.key_start;
                        node = &m.node;
                    }
                    None => break,
                },
                Value::Array(_) => match token.parse::<usize>().ok().and_then(|i| node.item(i)) {
                    Some(n) => {
                        at = n.start;
                        node = n;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        at
    }

    /// The innermost object whose span contains `offset`.
    pub fn innermost_object(&self, offset: usize) -> Option<&Node> {
        if offset < self.start || offset >= self.end {
            return None;
        }
        let inner = match &self.value {
            Value::Object(members) => members.iter().find_map(|m| m.node.innermost_object(offset)),
            Value::Array(items) => items.iter().find_map(|n| n.innermost_object(offset)),
            _ => None,
        };
        match (&self.value, inner) {
            (_, Some(n)) => Some(n),
            (Value::Object(_), None) => Some(self),
            _ => None,
        }
    }
}

/// Parse `text`; `None` if it is not JSON this parser understands.
pub(crate) fn parse(text: &str) -> Option<Node> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    p.ws();
    let node = p.value()?;
    p.ws();
    (p.pos == p.bytes.len()).then_some(node)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Byte offset of serde_json's (line, column) position: serde_json counts
/// the column in bytes consumed on the line, so the offending byte is the
/// one before.
pub(crate) fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    (start + column.saturating_sub(1)).min(text.len())
}

const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.bytes.get(self.pos) == Some(&b)).then(|| self.pos += 1)
    }

    fn value(&mut self) -> Option<Node> {
        let start = self.pos;
        let value = match *self.bytes.get(self.pos)? {
            b'{' => self.object()?,
            b'[' => self.array()?,
            b'"' => Value::String(self.string()?),
            b't' | b'f' | b'n' | b'-' | b'0'..=b'9' => {
                while let Some(c) = self.bytes.get(self.pos) {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Value::Scalar
            }
            _ => return None,
        };
        Some(Node {
            start,
            end: self.pos,
            value,
        })
    }

    fn object(&mut self) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        let mut members = Vec::new();
        self.ws();
        if self.eat(b'}').is_none() {
            loop {
                self.ws();
                let key_start = self.pos;
                let key = self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
                let node = self.value()?;
                members.push(Member {
                    key,
                    key_start,
                    node,
                });
                self.ws();
                if self.eat(b',').is_some() {
                    continue;
                }
                self.eat(b'}')?;
                break;
            }
        }
        self.depth -= 1;
        Some(Value::Object(members))
    }

    fn array(&mut self) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b']').is_none() {
            loop {
                self.ws();
                items.push(self.value()?);
                self.ws();
                if self.eat(b',').is_some() {
                    continue;
                }
                self.eat(b']')?;
                break;
            }
        }
        self.depth -= 1;
        Some(Value::Array(items))
    }

    /// A string token, decoded by serde_json (escapes included).
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        self.eat(b'"')?;
        loop {
            match *self.bytes.get(self.pos)? {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    break;
                }
                _ => self.pos += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.pos)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_pointers_and_positions() {
        let text = "{\n  \"a\": [1, {\"b\": \"x\\\"y\"}],\n  \"c\": true\n}";
        let root = parse(text).expect("parses");
        let at = root.locate("/a/1/b");
        assert_eq!(&text[at..at + 3], "\"b\"");
        assert_eq!(line_col(text, at), (2, 13));
        let at = root.locate("/c");
        assert_eq!(line_col(text, at), (3, 3));
        // A missing tail resolves to the deepest existing node.
        assert_eq!(root.locate("/a/7"), root.locate("/a"));
        let b = root.locate("/a/1/b");
        let obj = root.innermost_object(b).expect("object");
        assert!(obj.member("b").is_some());
        assert_eq!(offset_of(text, 2, 13), b);
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        assert!(parse("{").is_none());
        assert!(parse("[1,]").is_none());
        assert!(parse("1 2").is_none());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&deep).is_none());
    }
}
