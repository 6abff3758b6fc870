//! Reading RON configuration (scenarios, archetypes) with errors a person can act
//! on: every error names the file, line and column, the field at fault, and what
//! was expected.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Largest value accepted for a parameter with no natural bound (speeds,
/// radii, amounts, seconds): sums and products of such values stay finite in
/// `f32`.
pub const MAX_MAGNITUDE: f32 = 1.0e9;

/// A configuration file that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file (or a name for an in-memory source).
    pub file: PathBuf,
    /// 1-based line and column of the fault, when known.
    pub line: usize,
    pub column: usize,
    /// Path of the field at fault, e.g. `groups[1].tick_hz` (empty for the whole file).
    pub field: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Largest configuration file read, in bytes (16 MiB): the largest shipped
/// scenario is a few kilobytes, and a file is read whole into memory, so a
/// larger one is a mistake (or a device such as `/dev/zero`), refused before
/// it is read.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Longest piece of input (a name, a kind, a parser's message) quoted in an
/// error, in characters; longer ones are cut with `…`.
pub const MAX_QUOTED_CHARS: usize = 256;

/// Longest name (a scenario's `name`, a kind) accepted, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// `s` cut to at most `max` characters, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

fn file_error(path: &Path, message: String) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message,
    }
}

/// Reads a configuration file's text: a regular file (not a directory, FIFO,
/// device or socket, which could block or never end) of at most
/// [`MAX_FILE_BYTES`], in UTF-8. The type and size are checked before the file
/// is opened, and at most one byte more than the limit is read, in case the
/// file grows in between.
pub fn read_source(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let meta = std::fs::metadata(path)
        .map_err(|e| file_error(path, format!("cannot read the file: {e}")))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "a FIFO, device or socket"
        };
        return Err(file_error(
            path,
            format!("cannot read the file: not a regular file ({what})"),
        ));
    }
    let too_large = |size: u64| {
        file_error(
            path,
            format!(
                "cannot read the file: {size} bytes or more, larger than the limit of \
                 {MAX_FILE_BYTES} bytes (16 MiB)"
            ),
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| file_error(path, format!("cannot read the file: {e}")))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(path, format!("cannot read the file: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let source = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let (line, column) = line_col(&source, valid);
        ConfigError {
            line,
            column,
            ..file_error(path, "expected UTF-8 text".into())
        }
    })
}

/// Reads and parses a RON file (see [`read_source`] for the files accepted).
pub fn read_ron<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let source = read_source(path)?;
    let value = parse_ron(&source, path)?;
    Ok((value, source))
}

/// Parses RON text. `Option` fields may be written without `Some(..)`.
pub fn parse_ron<T: DeserializeOwned>(source: &str, file: &Path) -> Result<T, ConfigError> {
    parse_located(source).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: e.line,
        column: e.column,
        field: e.field,
        message: e.message,
    })
}

/// Why RON text could not be read into a value: where in the text (1-based),
/// the path of the field at fault (empty for the whole text) and what was
/// expected.
#[derive(Clone, Debug, PartialEq)]
pub struct LocatedError {
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

/// [`parse_ron`] without a file: the error's place is in `source` itself.
pub fn parse_located<T: DeserializeOwned>(source: &str) -> Result<T, LocatedError> {
    let options =
        ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let located = |e: ron::error::SpannedError, field: String| LocatedError {
        line: e.span.start.line,
        column: e.span.start.col,
        field,
        message: clip(&e.code.to_string(), MAX_QUOTED_CHARS),
    };
    let mut de = ron::Deserializer::from_str_with_options(source, &options)
        .map_err(|e| located(e, String::new()))?;
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_path_to_error writes `?` for a segment it could not name (e.g. in
        // the middle of a syntax error); the path up to there is still useful.
        let field = e.path().to_string().replace(".?", "").replace('?', "");
        let field = if field == "." {
            String::new()
        } else {
            clip(&field, MAX_QUOTED_CHARS)
        };
        located(de.span_error(e.into_inner()), field)
    })?;
    de.end()
        .map_err(|e| located(de.span_error(e), String::new()))?;
    Ok(value)
}

/// One step of a path into a RON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Field(&'static str),
    Index(usize),
}

/// Checks a parsed value and reports the first problem with the path of the
/// field at fault.
#[derive(Default)]
pub struct Validator {
    path: Vec<PathSeg>,
    error: Option<Fault>,
    behaviours: Option<std::sync::Arc<dyn BehaviourChecks>>,
}

/// What a [`Validator`] checks the behaviours that plugins bring with: the
/// archetype module's registry of them.
pub trait BehaviourChecks: Send + Sync {
    /// Checks the behaviour `name` with the parameters `params` (RON text),
    /// recording problems in `v`, whose current path is the behaviour's.
    fn check_behaviour(&self, name: &str, params: &str, v: &mut Validator);
}

/// The first problem a [`Validator`] found.
struct Fault {
    path: Vec<PathSeg>,
    message: String,
    /// A problem inside the text of the value at `path`: the rest of the
    /// field's path and where in that text (1-based line and column).
    inner: Option<(String, usize, usize)>,
}

impl Validator {
    /// A validator that checks the parameters of the behaviours plugins
    /// registered with `checks` (the archetype module's registry): a kind
    /// whose behaviour none registered is an error.
    pub fn with_behaviours(checks: std::sync::Arc<dyn BehaviourChecks>) -> Self {
        Self {
            behaviours: Some(checks),
            ..Self::default()
        }
    }

    /// The registered behaviours this validator checks against, if it was
    /// given them.
    pub fn behaviours(&self) -> Option<std::sync::Arc<dyn BehaviourChecks>> {
        self.behaviours.clone()
    }

    /// Runs `f` with `seg` appended to the current path.
    pub fn at<R>(&mut self, seg: PathSeg, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(seg);
        let r = f(self);
        self.path.pop();
        r
    }

    /// Runs `f` inside field `name`.
    pub fn field<R>(&mut self, name: &'static str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.at(PathSeg::Field(name), f)
    }

    /// Records `message` against field `name` of the current value unless `ok`.
    pub fn check(&mut self, ok: bool, name: &'static str, message: impl FnOnce() -> String) {
        if !ok && self.error.is_none() {
            let mut path = self.path.clone();
            if !name.is_empty() {
                path.push(PathSeg::Field(name));
            }
            self.error = Some(Fault {
                path,
                message: message(),
                inner: None,
            });
        }
    }

    /// Records a problem found while reading the text of the current value
    /// on its own (a plugin's parameters): `e` is placed relative to where
    /// the value starts in the file.
    pub fn fail_inside(&mut self, e: LocatedError) {
        if self.error.is_none() {
            self.error = Some(Fault {
                path: self.path.clone(),
                message: e.message,
                inner: Some((e.field, e.line, e.column)),
            });
        }
    }

    /// Whether a problem was found.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The first problem, located in `source`.
    pub fn finish(self, source: &str, file: &Path) -> Result<(), ConfigError> {
        let Some(fault) = self.error else {
            return Ok(());
        };
        let (mut line, mut column) = locate(source, &fault.path).unwrap_or((0, 0));
        let mut field = path_string(&fault.path);
        if let Some((rest, l, c)) = fault.inner {
            if line > 0 && l > 0 {
                if l == 1 {
                    column += c.saturating_sub(1);
                } else {
                    line += l - 1;
                    column = c;
                }
            }
            if !rest.is_empty() {
                field = format!("{field}.{rest}");
            }
        }
        Err(ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            field,
            message: fault.message,
        })
    }
}

/// Renders a path like `groups[1].tick_hz`.
pub fn path_string(path: &[PathSeg]) -> String {
    steps_string(&owned(path))
}

/// A validator's path as owned steps.
fn owned(path: &[PathSeg]) -> Vec<Step> {
    path.iter()
        .map(|seg| match seg {
            PathSeg::Field(name) => Step::Field((*name).to_owned()),
            PathSeg::Index(i) => Step::Index(*i),
        })
        .collect()
}

/// Finds the 1-based line and column where the value at `path` starts in RON
/// `source`. Fields that are absent resolve to the start of the enclosing value.
pub fn locate(source: &str, path: &[PathSeg]) -> Option<(usize, usize)> {
    locate_steps(source, &owned(path))
}

/// One step of a path into RON text, owned: a struct field, a map entry with a
/// string key (`{ "key": value }`), or a list (or tuple) element.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Field(String),
    Key(String),
    Index(usize),
}

/// [`locate`] for an owned path that may name map entries.
pub fn locate_steps(source: &str, path: &[Step]) -> Option<(usize, usize)> {
    let offset = match place(source, path) {
        Place::Value(range) => range.start,
        Place::Missing { reached, .. } => reached,
    };
    Some(line_col(source, offset))
}

/// Where the value at a path is in RON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The value's bytes.
    Value(std::ops::Range<usize>),
    /// The path ends early: `found` of its steps were found, and the next one
    /// was not. `reached` is where the last value found starts; `insert` is,
    /// when that value is a struct, where its body starts: a missing field can
    /// be written there, followed by a comma.
    Missing {
        found: usize,
        reached: usize,
        insert: Option<usize>,
    },
}

/// Finds the value at `path` in RON `source` (see [`Place`]).
pub fn place(source: &str, path: &[Step]) -> Place {
    let mut cur = Cursor {
        s: source.as_bytes(),
        i: 0,
    };
    cur.skip_trivia();
    cur.skip_attributes();
    for (found, step) in path.iter().enumerate() {
        let start = cur.i;
        let mut body = None;
        let ok = match step {
            Step::Field(name) => {
                if cur.open_struct() {
                    body = Some(cur.i);
                    cur.find_field(name)
                } else {
                    false
                }
            }
            Step::Key(key) => cur.enter_key(key),
            Step::Index(i) => cur.enter_index(*i),
        };
        if !ok {
            // A missing field can be written first in the struct's body.
            let insert = body;
            return Place::Missing {
                found,
                reached: start,
                insert,
            };
        }
    }
    let start = cur.i;
    cur.skip_value();
    Place::Value(start..cur.i)
}

/// Parses a field path such as `groups[0].count` or `world.size`: names
/// separated by dots, each followed by any number of `[index]`.
pub fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(format!(
                "expected a field path such as `groups[0].count`, got `{}`",
                clip(path, MAX_QUOTED_CHARS)
            ));
        }
        steps.push(Step::Field(name.to_owned()));
        while !rest.is_empty() {
            let index = rest
                .strip_prefix('[')
                .and_then(|r| r.split_once(']'))
                .and_then(|(i, r)| i.parse::<usize>().ok().map(|i| (i, r)));
            let Some((index, r)) = index else {
                return Err(format!(
                    "expected a field path such as `groups[0].count` (`[index]` or `.` after \
                     `{name}`), got `{}`",
                    clip(path, MAX_QUOTED_CHARS)
                ));
            };
            steps.push(Step::Index(index));
            rest = r;
        }
    }
    Ok(steps)
}

/// Renders an owned path like `groups[1].tick_hz` (map keys as `["key"]`).
pub fn steps_string(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Field(name) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(name);
            }
            Step::Key(key) => s.push_str(&format!("[{key:?}]")),
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The 1-based line and column of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_trivia(&mut self) {
        loop {
            match (self.peek(), self.s.get(self.i + 1).copied()) {
                (Some(c), _) if c.is_ascii_whitespace() => self.i += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    self.i += 2;
                    while self.i < self.s.len() && !self.s[self.i..].starts_with(b"*/") {
                        self.i += 1;
                    }
                    self.i = (self.i + 2).min(self.s.len());
                }
                _ => return,
            }
        }
    }

    /// Skips `#![enable(...)]` lines.
    fn skip_attributes(&mut self) {
        while self.s.get(self.i..).is_some_and(|s| s.starts_with(b"#!")) {
            while self.peek().is_some_and(|c| c != b']') {
                self.i += 1;
            }
            self.i = (self.i + 1).min(self.s.len());
            self.skip_trivia();
        }
    }

    fn ident(&mut self) -> &[u8] {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// Moves past an optional struct/variant name and one or more opening
    /// parentheses, into the innermost struct body.
    fn open_struct(&mut self) -> bool {
        self.ident();
        self.skip_trivia();
        if self.peek() != Some(b'(') {
            return false;
        }
        self.i += 1;
        self.skip_trivia();
        // A newtype variant wrapping a struct: `Explorer((momentum: 0.8))` or
        // `Explorer(ExplorerParams(..))`. Step in while the body does not start
        // with `name:`.
        let save = self.i;
        let _ = self.ident();
        self.skip_trivia();
        let named_field = self.peek() == Some(b':');
        self.i = save;
        if !named_field
            && self
                .peek()
                .is_some_and(|c| c == b'(' || c.is_ascii_alphabetic())
        {
            let inner = self.i;
            if self.open_struct() {
                return true;
            }
            self.i = inner;
        }
        true
    }

    /// Inside a struct body, moves into field `name`'s value; when the body
    /// has no such field, stops at its closing parenthesis and returns false.
    fn find_field(&mut self, name: &str) -> bool {
        loop {
            self.skip_trivia();
            match self.peek() {
                None | Some(b')') => return false,
                _ => {}
            }
            let key = self.ident().to_vec();
            self.skip_trivia();
            if self.peek() != Some(b':') {
                return false;
            }
            self.i += 1;
            self.skip_trivia();
            if key == name.as_bytes() {
                return true;
            }
            self.skip_value();
            self.skip_trivia();
            if self.peek() == Some(b',') {
                self.i += 1;
            }
        }
    }

    /// Moves into the value of entry `key` of a map with string keys.
    fn enter_key(&mut self, key: &str) -> bool {
        if self.peek() != Some(b'{') {
            return false;
        }
        self.i += 1;
        loop {
            self.skip_trivia();
            match self.peek() {
                Some(b'"') => {}
                _ => return false,
            }
            let start = self.i;
            self.skip_string();
            let matches = ron::from_str::<String>(
                std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default(),
            )
            .is_ok_and(|k| k == key);
            self.skip_trivia();
            if self.peek() != Some(b':') {
                return false;
            }
            self.i += 1;
            self.skip_trivia();
            if matches {
                return true;
            }
            self.skip_value();
            self.skip_trivia();
            if self.peek() == Some(b',') {
                self.i += 1;
            }
        }
    }

    fn enter_index(&mut self, index: usize) -> bool {
        if !matches!(self.peek(), Some(b'[') | Some(b'(')) {
            return false;
        }
        self.i += 1;
        for _ in 0..index {
            self.skip_trivia();
            if matches!(self.peek(), None | Some(b']') | Some(b')')) {
                return false;
            }
            self.skip_value();
            self.skip_trivia();
            if self.peek() == Some(b',') {
                self.i += 1;
            }
        }
        self.skip_trivia();
        !matches!(self.peek(), None | Some(b']') | Some(b')'))
    }

    fn skip_string(&mut self) {
        let quote = self.s[self.i];
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == b'\\' {
                self.i += 1;
            } else if c == quote {
                return;
            }
        }
    }

    fn skip_value(&mut self) {
        self.skip_trivia();
        match self.peek() {
            Some(b'"') | Some(b'\'') => self.skip_string(),
            Some(b'(') | Some(b'[') | Some(b'{') => self.skip_group(),
            _ => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c))
                {
                    self.i += 1;
                }
                let save = self.i;
                self.skip_trivia();
                if self.peek() == Some(b'(') {
                    self.skip_group();
                } else {
                    self.i = save;
                }
            }
        }
    }

    fn skip_group(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'"' | b'\'' => {
                    self.skip_string();
                    continue;
                }
                b'/' if matches!(self.s.get(self.i + 1), Some(b'/') | Some(b'*')) => {
                    self.skip_trivia();
                    continue;
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return;
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathSeg::*;

    const SRC: &str = r#"// a comment
Scenario(
    name: "demo", // trailing
    clock: (fixed_hz: 100),
    groups: [
        (kind: "explorer", count: 10),
        (kinds: ["a", "b"], count: 5, tick_hz: -1.0),
    ],
    behaviour: Explorer((momentum: 0.5)),
)"#;

    #[test]
    fn locates_nested_fields_and_indices() {
        assert_eq!(locate(SRC, &[Field("name")]), Some((3, 11)));
        assert_eq!(
            locate(SRC, &[Field("clock"), Field("fixed_hz")]),
            Some((4, 23))
        );
        assert_eq!(
            locate(SRC, &[Field("groups"), Index(1), Field("tick_hz")]),
            Some((7, 48))
        );
        assert_eq!(locate(SRC, &[Field("groups"), Index(1)]), Some((7, 9)));
        assert_eq!(
            locate(SRC, &[Field("behaviour"), Field("momentum")]),
            Some((9, 36))
        );
    }

    #[test]
    fn a_missing_field_points_at_its_parent() {
        assert_eq!(
            locate(SRC, &[Field("clock"), Field("speed")]),
            Some((4, 12))
        );
    }

    #[test]
    fn path_strings_read_like_rust() {
        assert_eq!(
            path_string(&[Field("groups"), Index(1), Field("tick_hz")]),
            "groups[1].tick_hz"
        );
    }
}
