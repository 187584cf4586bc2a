//! C expressions for `print`, `ptype` and `x`: a hand-written lexer,
//! a precedence-climbing parser and an evaluator over DWARF values.
//!
//! No crate parses C expressions against debugging information. C is not
//! context-free: `(foo) x` is a cast only when `foo` names a type, which
//! here only DWARF knows, and names resolve in the scope of a frame. So the
//! parser asks the DWARF index whether a name is a type. The grammar is the
//! part of gdb's that reads a crashed program's state:
//! names (`x`, `ns::x`, `'file.c'::x`, `func::static_local`), a
//! parameter's value at its function's entry (`x@entry`), registers
//! (`$rip`), integer and character literals, `* & - ! ~ sizeof`, casts,
//! `. -> []`, gdb's artificial arrays (`*p@3`), and binary arithmetic,
//! shifts, comparisons and logic.
//! Nothing assigns or calls functions: a snapshot cannot run code.

use super::dwarf::DieId;
use super::softfloat::wide_operation;
use super::float::{compare_floats, convert_float, float_to_integer, integer_to_float, negate_float, FloatKind};
use super::types::{Builtin, Type, TypeRef};
use super::value::{le_signed, le_unsigned, Contents, Hole, Value};
use super::Inspector;

/// Errors from parsing or evaluating an expression, worded as gdb words them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// The text is not an expression.
    #[error("invalid expression at offset {offset}: {message}")]
    Syntax {
        /// Byte offset in the expression.
        offset: usize,
        /// The expected input.
        message: String,
    },
    /// A name is not visible at the frame.
    #[error("No symbol \"{0}\" in current context.")]
    UnknownSymbol(String),
    /// A type name is unknown.
    #[error("No type named {0}.")]
    UnknownType(String),
    /// A register name is unknown.
    #[error("unknown register ${0}")]
    UnknownRegister(String),
    /// An operation does not apply to the operand's type.
    #[error("{0}")]
    Invalid(String),
    /// An operand's bytes are not available.
    #[error("value not available: {0}")]
    Unavailable(String),
}

type Result<T> = std::result::Result<T, ExprError>;

/// A lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// A quoted file name, as in `'worker.c'::x`.
    Quoted(String),
    Int { value: u128, unsigned: bool, long: bool },
    /// A decimal floating-point literal, as the bits of an `f64`, and
    /// whether it has the `f` suffix.
    Float { bits: u64, single: bool },
    Char(u8),
    Register(String),
    /// `@entry` not followed by a letter, digit or `_`, which gdb's lexer
    /// reads as one token: `x@entry` is the value of parameter `x` at its
    /// function's entry, where `x@ entry` and `x@entryway` are artificial
    /// arrays.
    Entry,
    Punct(&'static str),
}

const PUNCTUATION: [&str; 31] = [
    "->", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "::", "+", "-", "*", "/", "%", "<", ">", "&", "|", "^",
    "!", "~", "(", ")", "[", "]", ".", ",", "=", "?", "@",
];

/// Reads a decimal floating-point literal at `start` (`2.5`, `1e-3`,
/// `0.5f`) and returns where it ends; `None` when the number there is an
/// integer.
fn float_literal(text: &str, start: usize) -> Result<Option<(usize, Token)>> {
    let bytes = text.as_bytes();
    let digits_from = |mut index: usize| {
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        index
    };
    if text[start..].starts_with("0x") || text[start..].starts_with("0X") {
        return Ok(None);
    }

    let mut end = digits_from(start);
    let mut is_float = false;
    if bytes.get(end) == Some(&b'.') {
        end = digits_from(end + 1);
        is_float = true;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        if bytes.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
            end = digits_from(end + 1 + sign);
            is_float = true;
        }
    }
    if !is_float {
        return Ok(None);
    }

    let value: f64 = text[start..end]
        .parse()
        .map_err(|_| ExprError::Syntax { offset: start, message: format!("invalid number {:?}", &text[start..end]) })?;
    let single = matches!(bytes.get(end), Some(b'f' | b'F'));
    if matches!(bytes.get(end), Some(b'l' | b'L')) {
        return Err(ExprError::Syntax { offset: start, message: "long double literals are not supported".into() });
    }
    let end = end + usize::from(single);
    Ok(Some((end, Token::Float { bits: value.to_bits(), single })))
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let start = index;
        let byte = bytes[index];
        if byte.is_ascii_whitespace() {
            index += 1;
            continue;
        }
        if byte.is_ascii_alphabetic() || byte == b'_' || byte == b'$' {
            index += 1;
            while index < bytes.len() && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_') {
                index += 1;
            }
            let word = &text[start..index];
            let token = match word.strip_prefix('$') {
                Some(register) if !register.is_empty() => Token::Register(register.to_owned()),
                Some(_) => return Err(ExprError::Syntax { offset: start, message: "a register name after $".into() }),
                None => Token::Ident(word.to_owned()),
            };
            tokens.push((start, token));
            continue;
        }
        if byte.is_ascii_digit() {
            if let Some((end, token)) = float_literal(text, start)? {
                tokens.push((start, token));
                index = end;
                continue;
            }
            while index < bytes.len() && (bytes[index].is_ascii_alphanumeric()) {
                index += 1;
            }
            let literal = &text[start..index];
            let digits_end = literal.trim_end_matches(['u', 'U', 'l', 'L']).len();
            let suffix = &literal[digits_end..].to_ascii_lowercase();
            let digits = &literal[..digits_end];
            let (radix, digits) = if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
                (16, hex)
            } else if let Some(binary) = digits.strip_prefix("0b") {
                (2, binary)
            } else if digits.len() > 1 && digits.starts_with('0') {
                (8, &digits[1..])
            } else {
                (10, digits)
            };
            let value = u128::from_str_radix(digits, radix).map_err(|_| ExprError::Syntax {
                offset: start,
                message: format!("invalid number {literal:?}"),
            })?;
            tokens.push((start, Token::Int { value, unsigned: suffix.contains('u'), long: suffix.contains('l') }));
            continue;
        }
        if byte == b'\'' {
            // A character literal, or a quoted file name before `::`.
            let end = text[start + 1..].find('\'').map(|offset| start + 1 + offset).ok_or(ExprError::Syntax {
                offset: start,
                message: "unterminated quote".into(),
            })?;
            let inner = &text[start + 1..end];
            index = end + 1;
            let token = match inner.as_bytes() {
                [single] => Token::Char(*single),
                [b'\\', rest @ ..] => Token::Char(unescape(rest).ok_or(ExprError::Syntax {
                    offset: start,
                    message: format!("invalid character escape '\\{}'", String::from_utf8_lossy(rest)),
                })?),
                _ => Token::Quoted(inner.to_owned()),
            };
            tokens.push((start, token));
            continue;
        }
        if let Some(after) = text[start..].strip_prefix("@entry") {
            if !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                index += "@entry".len();
                tokens.push((start, Token::Entry));
                continue;
            }
        }
        let punct = PUNCTUATION.iter().find(|punct| text[start..].starts_with(*punct));
        match punct {
            Some(punct) => {
                index += punct.len();
                tokens.push((start, Token::Punct(punct)));
            }
            None => {
                return Err(ExprError::Syntax { offset: start, message: format!("unexpected character {:?}", byte as char) })
            }
        }
    }
    Ok(tokens)
}

fn unescape(rest: &[u8]) -> Option<u8> {
    Some(match rest {
        b"n" => b'\n',
        b"t" => b'\t',
        b"r" => b'\r',
        b"0" => 0,
        b"\\" => b'\\',
        b"'" => b'\'',
        b"a" => 0x07,
        b"b" => 0x08,
        b"f" => 0x0c,
        b"v" => 0x0b,
        digits if digits.iter().all(|digit| (b'0'..=b'7').contains(digit)) => {
            u8::try_from(u32::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()?).ok()?
        }
        _ => return None,
    })
}

/// A type as written in a cast or `sizeof`: a base name and declarators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeName {
    /// The type's name (`struct point`, `unsigned long`, `Color`).
    pub base: String,
    /// Number of `*` after it.
    pub pointers: usize,
    /// A function declarator, `(*)(int, char)`: the base and its pointers
    /// are then the return type.
    pub function: Option<FunctionDeclarator>,
    /// Array dimensions, outermost first: `int[2][3]` has `[2, 3]`.
    pub dimensions: Vec<u64>,
}

/// The `(*)(params)` part of a function pointer type name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionDeclarator {
    /// Number of `*` inside the parentheses.
    pub pointers: usize,
    /// Parameter types; empty for `(void)`.
    pub params: Vec<TypeName>,
    /// Whether the parameter list is written, as `(void)` or `(int)`:
    /// `()` is an unprototyped function in C.
    pub prototyped: bool,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A name, maybe qualified by a file (`'worker.c'::x`) or scope (`ns::x`).
    Name {
        /// The file qualifier.
        file: Option<String>,
        /// The name's parts, outermost scope first.
        path: Vec<String>,
    },
    /// An integer literal.
    Int {
        /// The value.
        value: u128,
        /// Whether it has a `u` suffix.
        unsigned: bool,
        /// Whether it has an `l` suffix.
        long: bool,
    },
    /// A floating-point literal: the bits of its `f64` value, and whether
    /// it is a `float` (`0.5f`).
    Float {
        /// `f64::to_bits` of the value.
        bits: u64,
        /// Whether it has the `f` suffix.
        single: bool,
    },
    /// A character literal.
    Char(u8),
    /// A register, `$rip`.
    Register(String),
    /// `x@entry`: the value parameter `x` of the selected frame had when
    /// its function was entered.
    EntryValue(String),
    /// A unary operator.
    Unary(&'static str, Box<Expr>),
    /// A binary operator.
    Binary(&'static str, Box<Expr>, Box<Expr>),
    /// `a.b`.
    Member(Box<Expr>, String),
    /// `a->b`.
    Arrow(Box<Expr>, String),
    /// `a[i]`.
    Index(Box<Expr>, Box<Expr>),
    /// `(type) a`.
    Cast(TypeName, Box<Expr>),
    /// `sizeof(type)`.
    SizeofType(TypeName),
    /// `sizeof a`.
    SizeofExpr(Box<Expr>),
}

const TYPE_KEYWORDS: [&str; 16] = [
    "struct", "union", "enum", "class", "const", "volatile", "unsigned", "signed", "int", "char", "long", "short",
    "float", "double", "void", "_Bool",
];

struct Parser<'p> {
    tokens: Vec<(usize, Token)>,
    position: usize,
    text_len: usize,
    is_type_name: &'p dyn Fn(&str) -> bool,
}

/// Binary operators by precedence, lowest first. `@` is gdb's: `x@n` is
/// the array of `n` objects starting at `x`.
const BINARY_LEVELS: [&[&str]; 11] = [
    &["@"],
    &["||"],
    &["&&"],
    &["|"],
    &["^"],
    &["&"],
    &["==", "!="],
    &["<", ">", "<=", ">="],
    &["<<", ">>"],
    &["+", "-"],
    &["*", "/", "%"],
];

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|(_, token)| token)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.position + ahead).map(|(_, token)| token)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.position).map_or(self.text_len, |(offset, _)| *offset)
    }

    fn error<T>(&self, message: &str) -> Result<T> {
        Err(ExprError::Syntax { offset: self.offset(), message: message.to_owned() })
    }

    fn eat(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(p)) if *p == punct) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Result<()> {
        if self.eat(punct) {
            Ok(())
        } else {
            self.error(&format!("expected `{punct}`"))
        }
    }

    fn parse_binary(&mut self, level: usize) -> Result<Expr> {
        if level == BINARY_LEVELS.len() {
            return self.parse_unary();
        }
        let mut left = self.parse_binary(level + 1)?;
        loop {
            let operator = match self.peek() {
                Some(Token::Punct(p)) if BINARY_LEVELS[level].contains(p) => *p,
                _ => return Ok(left),
            };
            self.position += 1;
            let right = self.parse_binary(level + 1)?;
            left = Expr::Binary(operator, Box::new(left), Box::new(right));
        }
    }

    fn starts_type(&self, ahead: usize) -> bool {
        let Some(Token::Ident(first)) = self.peek_at(ahead) else {
            return false;
        };
        if TYPE_KEYWORDS.contains(&first.as_str()) {
            return true;
        }
        // A type name may be qualified: `ns::Type`.
        let mut name = first.clone();
        let mut next = ahead + 1;
        while let (Some(Token::Punct("::")), Some(Token::Ident(part))) = (self.peek_at(next), self.peek_at(next + 1)) {
            name.push_str("::");
            name.push_str(part);
            next += 2;
        }
        let declarator_follows = match self.peek_at(next) {
            Some(Token::Punct(")" | "*" | "[")) => true,
            Some(Token::Punct("(")) => matches!(self.peek_at(next + 1), Some(Token::Punct("*"))),
            _ => false,
        };
        (self.is_type_name)(&name) && declarator_follows
    }

    fn parse_type_name(&mut self) -> Result<TypeName> {
        let mut words: Vec<String> = Vec::new();
        // Whether a tag name or typedef name was taken; after it only
        // qualifiers may follow.
        let mut has_name = false;
        while let Some(Token::Ident(word)) = self.peek() {
            let word = word.clone();
            let is_qualifier = matches!(word.as_str(), "const" | "volatile");
            let is_keyword = TYPE_KEYWORDS.contains(&word.as_str());
            let after_tag = words.last().is_some_and(|last| matches!(last.as_str(), "struct" | "union" | "enum" | "class"));
            let only_qualifiers = words.iter().all(|w| matches!(w.as_str(), "const" | "volatile"));
            if has_name && !is_qualifier {
                break;
            }
            if !is_keyword && !after_tag && !only_qualifiers {
                break;
            }
            self.position += 1;
            words.push(word);
            if !is_keyword {
                has_name = true;
                while self.eat("::") {
                    match self.peek() {
                        Some(Token::Ident(next)) => {
                            let next = next.clone();
                            self.position += 1;
                            let last = words.last_mut().expect("pushed above");
                            last.push_str("::");
                            last.push_str(&next);
                        }
                        _ => return self.error("expected a name after `::`"),
                    }
                }
            }
        }
        if words.is_empty() {
            return self.error("expected a type name");
        }
        let words: Vec<&str> = words.iter().map(String::as_str).filter(|word| !matches!(*word, "const" | "volatile")).collect();
        let pointers = self.pointer_declarators();
        let mut function = None;
        if matches!(self.peek(), Some(Token::Punct("("))) && matches!(self.peek_at(1), Some(Token::Punct("*"))) {
            self.position += 1;
            let function_pointers = self.pointer_declarators();
            self.expect(")")?;
            self.expect("(")?;
            let (params, prototyped) = self.parameter_list()?;
            function = Some(FunctionDeclarator { pointers: function_pointers, params, prototyped });
        }
        let mut dimensions = Vec::new();
        while self.eat("[") {
            match self.peek() {
                Some(Token::Int { value, .. }) => {
                    let count = u64::try_from(*value).or_else(|_| self.error("array dimension too large"))?;
                    self.position += 1;
                    dimensions.push(count);
                }
                _ => return self.error("expected an array dimension"),
            }
            self.expect("]")?;
        }
        Ok(TypeName { base: normalize_base_type(&words), pointers, function, dimensions })
    }

    /// Counts `*` declarators, skipping the qualifiers after each.
    fn pointer_declarators(&mut self) -> usize {
        let mut pointers = 0;
        while self.eat("*") {
            pointers += 1;
            while matches!(self.peek(), Some(Token::Ident(word)) if word == "const" || word == "volatile") {
                self.position += 1;
            }
        }
        pointers
    }

    /// Parses a function's parameter types up to and including `)`, and
    /// returns them with whether the list was written (`(void)`, `(int)`).
    fn parameter_list(&mut self) -> Result<(Vec<TypeName>, bool)> {
        if self.eat(")") {
            return Ok((Vec::new(), false));
        }
        if matches!(self.peek(), Some(Token::Ident(word)) if word == "void") && matches!(self.peek_at(1), Some(Token::Punct(")"))) {
            self.position += 2;
            return Ok((Vec::new(), true));
        }
        let mut params = Vec::new();
        loop {
            params.push(self.parse_type_name()?);
            if self.eat(")") {
                return Ok((params, true));
            }
            self.expect(",")?;
        }
    }

    fn parse_unary(&mut self) -> Result<Expr> {
        if let Some(Token::Punct(p)) = self.peek() {
            let operator = *p;
            if ["-", "+", "!", "~", "*", "&"].contains(&operator) {
                self.position += 1;
                let operand = self.parse_unary()?;
                return Ok(Expr::Unary(operator, Box::new(operand)));
            }
            if operator == "(" && self.starts_type(1) {
                self.position += 1;
                let ty = self.parse_type_name()?;
                self.expect(")")?;
                let operand = self.parse_unary()?;
                return Ok(Expr::Cast(ty, Box::new(operand)));
            }
        }
        if matches!(self.peek(), Some(Token::Ident(word)) if word == "sizeof") {
            self.position += 1;
            if matches!(self.peek(), Some(Token::Punct("("))) && self.starts_type(1) {
                self.position += 1;
                let ty = self.parse_type_name()?;
                self.expect(")")?;
                return Ok(Expr::SizeofType(ty));
            }
            let operand = self.parse_unary()?;
            return Ok(Expr::SizeofExpr(Box::new(operand)));
        }
        self.parse_postfix()
    }

    fn parse_postfix(&mut self) -> Result<Expr> {
        let mut expr = self.parse_primary()?;
        loop {
            if self.eat(".") {
                expr = Expr::Member(Box::new(expr), self.member_name()?);
            } else if self.eat("->") {
                expr = Expr::Arrow(Box::new(expr), self.member_name()?);
            } else if self.eat("[") {
                let index = self.parse_binary(0)?;
                self.expect("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else {
                return Ok(expr);
            }
        }
    }

    fn member_name(&mut self) -> Result<String> {
        match self.peek() {
            Some(Token::Ident(name)) => {
                let name = name.clone();
                self.position += 1;
                Ok(name)
            }
            _ => self.error("expected a member name"),
        }
    }

    fn parse_primary(&mut self) -> Result<Expr> {
        let Some(token) = self.peek().cloned() else {
            return self.error("expected an expression");
        };
        self.position += 1;
        match token {
            Token::Int { value, unsigned, long } => Ok(Expr::Int { value, unsigned, long }),
            Token::Float { bits, single } => Ok(Expr::Float { bits, single }),
            Token::Char(byte) => Ok(Expr::Char(byte)),
            Token::Register(name) => Ok(Expr::Register(name)),
            Token::Punct("(") => {
                let inner = self.parse_binary(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Punct("::") => {
                let mut path = Vec::new();
                self.name_path(&mut path)?;
                Ok(Expr::Name { file: None, path })
            }
            Token::Quoted(file) => {
                self.expect("::")?;
                let mut path = Vec::new();
                self.name_path(&mut path)?;
                Ok(Expr::Name { file: Some(file), path })
            }
            Token::Ident(first) => {
                // gdb takes `@entry` only after an unqualified name.
                if matches!(self.peek(), Some(Token::Entry)) {
                    self.position += 1;
                    return Ok(Expr::EntryValue(first));
                }
                let mut path = vec![first];
                if self.eat("::") {
                    self.name_path(&mut path)?;
                }
                Ok(Expr::Name { file: None, path })
            }
            Token::Entry => {
                self.position -= 1;
                self.error("`@entry` after something other than a parameter name")
            }
            Token::Punct(p) => {
                self.position -= 1;
                self.error(&format!("unexpected `{p}`"))
            }
        }
    }

    fn name_path(&mut self, path: &mut Vec<String>) -> Result<()> {
        loop {
            match self.peek() {
                Some(Token::Ident(name)) => {
                    path.push(name.clone());
                    self.position += 1;
                }
                _ => return self.error("expected a name"),
            }
            if !self.eat("::") {
                return Ok(());
            }
        }
    }
}

/// Writes a base type as DWARF names it: `unsigned` alone is
/// `unsigned int`, `long int` is `long`, `long unsigned int` is `unsigned long`.
fn normalize_base_type(words: &[&str]) -> String {
    if matches!(words.first(), Some(&("struct" | "union" | "enum" | "class"))) {
        return words.join(" ");
    }
    let is_builtin = words.iter().all(|word| ["unsigned", "signed", "int", "char", "long", "short", "float", "double", "void", "_Bool"].contains(word));
    if !is_builtin {
        return words.join(" ");
    }
    let unsigned = words.contains(&"unsigned");
    let longs = words.iter().filter(|&&word| word == "long").count();
    let core = if words.contains(&"char") {
        "char"
    } else if words.contains(&"short") {
        "short"
    } else if longs == 2 {
        "long long"
    } else if longs == 1 && words.contains(&"double") {
        "long double"
    } else if longs == 1 {
        "long"
    } else if let Some(other) = words.iter().find(|word| ["float", "double", "void", "_Bool"].contains(word)) {
        other
    } else {
        "int"
    };
    if unsigned {
        format!("unsigned {core}")
    } else if words.contains(&"signed") && core == "char" {
        "signed char".to_owned()
    } else {
        core.to_owned()
    }
}

/// Parses `text`; `is_type_name` returns whether an identifier names a type.
pub fn parse(text: &str, is_type_name: &dyn Fn(&str) -> bool) -> Result<Expr> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, position: 0, text_len: text.len(), is_type_name };
    let expr = parser.parse_binary(0)?;
    if parser.position != parser.tokens.len() {
        return parser.error("unexpected text after the expression");
    }
    Ok(expr)
}

/// An integer operand, with the C type of its result.
#[derive(Debug, Clone, Copy)]
struct Integer {
    value: i128,
    size: u64,
    unsigned: bool,
}

impl Integer {
    fn builtin(self) -> Builtin {
        match (self.size, self.unsigned) {
            (8, true) => Builtin::UnsignedLong,
            (8, false) => Builtin::Long,
            (_, true) => Builtin::UnsignedInt,
            (_, false) => Builtin::Int,
        }
    }

    /// Wraps the value to the result type's width and sign.
    fn wrapped(self) -> Integer {
        let bits = self.size.clamp(1, 16) * 8;
        let mask = if bits >= 128 { u128::MAX } else { (1u128 << bits) - 1 };
        let raw = (self.value as u128) & mask;
        let value = if !self.unsigned && bits < 128 && raw >> (bits - 1) & 1 == 1 {
            raw as i128 - (1i128 << bits)
        } else {
            raw as i128
        };
        Integer { value, ..self }
    }

    fn to_value(self) -> Value {
        let wrapped = self.wrapped();
        let bytes = (wrapped.value as u128).to_le_bytes()[..self.size.clamp(1, 16) as usize].to_vec();
        Value::from_bytes(TypeRef::Builtin(self.builtin()), bytes)
    }
}

/// Evaluates expressions in one frame.
pub struct Evaluator<'i, 'a> {
    /// The inspector that names resolve against.
    pub inspector: &'i Inspector<'a>,
    /// The selected source frame, as `bt` numbers it.
    pub frame: Option<usize>,
}

/// Returns the result of a comparison or logical operator: `int` in C,
/// `bool` in C++.
fn truth_value(result: bool, cplusplus: bool) -> Value {
    if cplusplus {
        Value::from_bytes(TypeRef::Builtin(Builtin::Bool), vec![u8::from(result)])
    } else {
        Integer { value: i128::from(result), size: 4, unsigned: false }.to_value()
    }
}

impl Evaluator<'_, '_> {
    /// Evaluates `expr` to a value.
    pub fn evaluate(&self, expr: &Expr) -> Result<Value> {
        match expr {
            Expr::Name { file, path } => self.name(file.as_deref(), path),
            Expr::Float { bits, single: false } => Ok(Value::from_bytes(TypeRef::Builtin(Builtin::Double), bits.to_le_bytes().to_vec())),
            Expr::Float { bits, single: true } => {
                let value = f64::from_bits(*bits) as f32;
                Ok(Value::from_bytes(TypeRef::Builtin(Builtin::Float), value.to_le_bytes().to_vec()))
            }
            Expr::Int { value, unsigned, long } => {
                let fits_int = *value <= i32::MAX as u128 || (*unsigned && *value <= u32::MAX as u128);
                let size = if fits_int && !long { 4 } else { 8 };
                let unsigned = *unsigned || (size == 8 && *value > i64::MAX as u128);
                Ok(Integer { value: *value as i128, size, unsigned }.to_value())
            }
            Expr::Char(byte) => Ok(Value::from_bytes(TypeRef::Builtin(Builtin::Char), vec![*byte])),
            Expr::Register(name) => self.register(name),
            Expr::EntryValue(name) => self.entry_value(name),
            Expr::Unary(operator, operand) => self.unary(operator, operand),
            Expr::Binary(operator, left, right) => {
                let left = self.evaluate(left)?;
                // `&&` and `||` evaluate their right side only when needed.
                if *operator == "&&" || *operator == "||" {
                    let cplusplus = self.inspector.is_cplusplus(self.frame);
                    let left_true = self.truth(&left)?;
                    if (*operator == "&&") != left_true {
                        return Ok(truth_value(left_true, cplusplus));
                    }
                    let right = self.evaluate(right)?;
                    let right_true = self.truth(&right)?;
                    return Ok(truth_value(right_true, cplusplus));
                }
                let right = self.evaluate(right)?;
                if *operator == "@" {
                    return self.repeat(&left, &right);
                }
                self.binary(operator, &left, &right)
            }
            Expr::Member(base, name) => {
                let base = self.evaluate(base)?;
                self.member(&base, name)
            }
            Expr::Arrow(base, name) => {
                let base = self.evaluate(base)?;
                let target = self.dereference(&base)?;
                self.member(&target, name)
            }
            Expr::Index(base, index) => {
                let base = self.evaluate(base)?;
                let index = self.evaluate(index)?;
                let index = self.integer(&index)?.value;
                if let Some(element) = self.implicit_target(&base, index) {
                    return Ok(element);
                }
                self.index(&base, index)
            }
            Expr::Cast(type_name, operand) => {
                let ty = self.type_named(type_name)?;
                let operand = self.evaluate(operand)?;
                self.cast(&operand, ty)
            }
            Expr::SizeofType(type_name) => {
                let ty = self.type_named(type_name)?;
                let size = self.types().size_of(&ty).ok_or_else(|| ExprError::Invalid("the type has no size".into()))?;
                Ok(Integer { value: i128::from(size), size: 8, unsigned: true }.to_value())
            }
            Expr::SizeofExpr(operand) => {
                let value = self.evaluate(operand)?;
                let size = self.types().size_of(&value.ty).ok_or_else(|| ExprError::Invalid("the type has no size".into()))?;
                Ok(Integer { value: i128::from(size), size: 8, unsigned: true }.to_value())
            }
        }
    }

    /// Returns the type of `expr` without reading more memory than needed.
    pub fn type_of(&self, text: &str) -> Result<TypeRef> {
        let is_type = |name: &str| !self.inspector.info.types_named(name).is_empty();
        // `ptype struct point` and `ptype int` name a type, not a value.
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, position: 0, text_len: text.len(), is_type_name: &is_type };
        if matches!(parser.peek(), Some(Token::Ident(_))) {
            if let Ok(type_name) = parser.parse_type_name() {
                let first_word = type_name.base.split(' ').next().unwrap_or("");
                let known = TYPE_KEYWORDS.contains(&first_word) || is_type(&type_name.base);
                if known && parser.position == parser.tokens.len() {
                    return self.type_named(&type_name);
                }
            }
        }
        let expr = parse(text, &is_type)?;
        Ok(self.evaluate(&expr)?.ty)
    }

    fn types(&self) -> super::types::TypeTable<'_> {
        self.inspector.types()
    }

    fn type_named(&self, name: &TypeName) -> Result<TypeRef> {
        let mut ty = match name.base.as_str() {
            "void" => TypeRef::Void,
            base => {
                let found = self.inspector.info.types_named(base);
                match found.first() {
                    Some(&die) => TypeRef::Die(die),
                    None => match base {
                        "int" => TypeRef::Builtin(Builtin::Int),
                        "unsigned int" => TypeRef::Builtin(Builtin::UnsignedInt),
                        "long" => TypeRef::Builtin(Builtin::Long),
                        "unsigned long" => TypeRef::Builtin(Builtin::UnsignedLong),
                        "char" => TypeRef::Builtin(Builtin::Char),
                        "double" => TypeRef::Builtin(Builtin::Double),
                        _ => return Err(ExprError::UnknownType(base.to_owned())),
                    },
                }
            }
        };
        for _ in 0..name.pointers {
            ty = TypeRef::PointerTo(Box::new(ty));
        }
        if let Some(function) = &name.function {
            let params = function.params.iter().map(|param| self.type_named(param)).collect::<Result<Vec<_>>>()?;
            ty = TypeRef::Function { return_type: Box::new(ty), params, prototyped: function.prototyped };
            for _ in 0..function.pointers {
                ty = TypeRef::PointerTo(Box::new(ty));
            }
        }
        // `int[2][3]` is two arrays of three ints: the last dimension binds first.
        for &count in name.dimensions.iter().rev() {
            ty = TypeRef::ArrayOf(Box::new(ty), count);
        }
        Ok(ty)
    }

    fn name(&self, file: Option<&str>, path: &[String]) -> Result<Value> {
        let full = path.join("::");
        let unavailable = || ExprError::UnknownSymbol(full.clone());
        if let Some(file) = file {
            let name = path.last().ok_or_else(unavailable)?;
            let info = self.inspector.info;
            for unit in info.units_for_file(file) {
                if let Some(die) = super::scope::file_static(info, unit, name) {
                    return Ok(self.inspector.global_value(die));
                }
            }
            return Err(unavailable());
        }
        if path.len() == 1 {
            if let Some(value) = self.inspector.lookup_local(self.frame, &path[0]) {
                return Ok(value);
            }
        }
        if path.len() >= 2 {
            // `function::static_local`.
            let function_name = path[..path.len() - 1].join("::");
            let info = self.inspector.info;
            for function in info.functions_named(&function_name) {
                if let Some(die) = super::scope::find_static_local(info, function, &path[path.len() - 1]) {
                    return Ok(self.inspector.global_value(die));
                }
            }
        }
        self.inspector.lookup_global(self.frame, &full).ok_or_else(unavailable)
    }

    /// Returns the value parameter `name` of the selected frame had at its
    /// function's entry, `<optimized out>` when the caller's call site does
    /// not give it. gdb rejects `@entry` on anything but a parameter with
    /// the same message.
    fn entry_value(&self, name: &str) -> Result<Value> {
        let not_a_parameter = || ExprError::Invalid(format!("@entry can be used only for function parameters, not for \"{name}\""));
        let frame = self.frame.ok_or_else(not_a_parameter)?;
        let parameter = self.inspector.parameter_named(frame, name).ok_or_else(not_a_parameter)?;
        Ok(self
            .inspector
            .entry_value(frame, parameter)
            .unwrap_or_else(|| Value::missing(self.types().type_of(parameter), Hole::OptimizedOut)))
    }

    fn register(&self, name: &str) -> Result<Value> {
        let (value, ty) = self.inspector.register(self.frame, name).ok_or_else(|| ExprError::UnknownRegister(name.into()))?;
        let ty = TypeRef::Builtin(ty);
        match value {
            Some(value) => Ok(Value::from_bytes(ty, value.to_le_bytes().to_vec())),
            None => Ok(Value::missing(ty, Hole::NotSaved { register: name.to_owned() })),
        }
    }

    fn read_all(&self, value: &Value) -> Result<Vec<u8>> {
        let size = self.types().size_of(&value.ty).ok_or_else(|| ExprError::Invalid("the value has no size".into()))?;
        value.read(self.inspector.memory, 0, size).map_err(|hole| ExprError::Unavailable(hole.marker()))
    }

    /// Returns an integer operand: integers, enums, pointers, characters.
    fn integer(&self, value: &Value) -> Result<Integer> {
        match self.types().resolve_stripped(&value.ty) {
            Type::Base { encoding, size, .. } if encoding != gimli::constants::DW_ATE_float => {
                let bytes = self.read_all(value)?;
                let unsigned = !matches!(encoding, gimli::constants::DW_ATE_signed | gimli::constants::DW_ATE_signed_char);
                let raw = if unsigned { i128::from(le_unsigned(&bytes)) } else { i128::from(le_signed(&bytes)) };
                // C promotes everything narrower than int to int.
                let (size, unsigned) = if size < 4 { (4, false) } else { (size, unsigned) };
                Ok(Integer { value: raw, size, unsigned })
            }
            Type::Enum { size, signed, .. } => {
                let bytes = self.read_all(value)?;
                let raw = if signed { i128::from(le_signed(&bytes)) } else { i128::from(le_unsigned(&bytes)) };
                Ok(Integer { value: raw, size: size.max(4), unsigned: !signed && size >= 4 })
            }
            Type::Pointer { .. } => {
                let bytes = self.read_all(value)?;
                Ok(Integer { value: i128::from(le_unsigned(&bytes)), size: 8, unsigned: true })
            }
            Type::Array { .. } | Type::Function(_) => {
                let address = value.address().ok_or_else(|| ExprError::Invalid("the array is not in memory".into()))?;
                Ok(Integer { value: i128::from(address), size: 8, unsigned: true })
            }
            _ => Err(ExprError::Invalid(format!("a value of type {} is not an integer", self.types().name(&value.ty)))),
        }
    }

    fn truth(&self, value: &Value) -> Result<bool> {
        Ok(self.integer(value)?.value != 0)
    }

    /// Returns a pointer's target type and address; arrays decay to pointers.
    fn pointer(&self, value: &Value) -> Result<Option<(TypeRef, u64)>> {
        match self.types().resolve_stripped(&value.ty) {
            Type::Pointer { target, .. } => {
                let bytes = self.read_all(value)?;
                Ok(Some((target, le_unsigned(&bytes))))
            }
            Type::Array { element, .. } => {
                let address = value.address().ok_or_else(|| ExprError::Invalid("the array is not in memory".into()))?;
                Ok(Some((element, address)))
            }
            _ => Ok(None),
        }
    }

    /// Returns what an implicit pointer (`DW_OP_implicit_pointer`) points
    /// to: the bytes at its offset in the variable it names, evaluated in
    /// the selected frame, as gdb's `*p` shows them.
    /// `index` selects an element after the one pointed to, as `p[index]`.
    fn implicit_target(&self, value: &Value, index: i128) -> Option<Value> {
        let Some(Hole::SyntheticPointer { target, byte_offset }) = value.first_hole() else { return None };
        let Type::Pointer { target: pointee, .. } = self.types().resolve_stripped(&value.ty) else { return None };
        let variable = match self.frame {
            Some(frame) => self.inspector.frame_value(frame, *target),
            None => self.inspector.global_value(*target),
        };
        let size = self.types().size_of(&pointee)?;
        let offset = i128::from(*byte_offset).checked_add(index.checked_mul(i128::from(size))?)?;
        Some(variable.slice(u64::try_from(offset).ok()?, size, pointee))
    }

    fn dereference(&self, value: &Value) -> Result<Value> {
        if let Some(target) = self.implicit_target(value, 0) {
            return Ok(target);
        }
        if let Type::Reference { target, .. } = self.types().resolve_stripped(&value.ty) {
            let bytes = self.read_all(value)?;
            return Ok(Value::in_memory(target, le_unsigned(&bytes)));
        }
        match self.pointer(value)? {
            Some((target, address)) => {
                if matches!(self.types().resolve_stripped(&target), Type::Void) {
                    return Err(ExprError::Invalid("Attempt to take contents of a non-pointer value.".into()));
                }
                Ok(Value::in_memory(target, address))
            }
            None => {
                // C++ references print through, and `*func` is the function.
                match self.types().resolve_stripped(&value.ty) {
                    Type::Function(_) => Ok(value.clone()),
                    _ => Err(ExprError::Invalid("Attempt to take contents of a non-pointer value.".into())),
                }
            }
        }
    }

    fn unary(&self, operator: &str, operand: &Expr) -> Result<Value> {
        let value = self.evaluate(operand)?;
        match operator {
            "*" => self.dereference(&value),
            "&" => {
                let value = self.through_reference(value)?;
                let address = value
                    .address()
                    .ok_or_else(|| ExprError::Invalid("Attempt to take address of value not located in memory.".into()))?;
                Ok(Value::from_bytes(TypeRef::PointerTo(Box::new(value.ty.clone())), address.to_le_bytes().to_vec()))
            }
            "-" => {
                if let Some((kind, _)) = self.float_operand(&value)? {
                    // gdb 13 negates a float as 0 - x, in each part of a
                    // complex number: -(0.0) is 0, and a NaN keeps its sign.
                    let mut bytes = self.read_all(&value)?;
                    let part_size = match self.types().resolve_stripped(&value.ty) {
                        Type::Base { encoding: gimli::constants::DW_ATE_complex_float, size, .. } => size / 2,
                        _ => bytes.len() as u64,
                    };
                    for part in bytes.chunks_mut(usize::try_from(part_size).unwrap_or(usize::MAX).max(1)) {
                        negate_float(kind, part).ok_or_else(|| ExprError::Invalid("the float value is too short".into()))?;
                    }
                    return Ok(Value::from_bytes(value.ty.clone(), bytes));
                }
                let integer = self.integer(&value)?;
                Ok(Integer { value: integer.value.wrapping_neg(), ..integer }.to_value())
            }
            "+" if self.float_operand(&value)?.is_some() => Ok(value),
            "+" => Ok(self.integer(&value)?.to_value()),
            "~" => {
                let integer = self.integer(&value)?;
                Ok(Integer { value: !integer.value, ..integer }.to_value())
            }
            "!" => {
                let truth = self.truth(&value)?;
                Ok(truth_value(!truth, self.inspector.is_cplusplus(self.frame)))
            }
            _ => Err(ExprError::Invalid(format!("unsupported operator {operator}"))),
        }
    }

    fn through_reference(&self, value: Value) -> Result<Value> {
        match self.types().resolve_stripped(&value.ty) {
            Type::Reference { .. } => self.dereference(&value),
            _ => Ok(value),
        }
    }

    fn binary(&self, operator: &str, left: &Value, right: &Value) -> Result<Value> {
        let left = self.through_reference(left.clone())?;
        let right = self.through_reference(right.clone())?;
        let left_pointer = self.pointer(&left)?;
        let right_pointer = self.pointer(&right)?;
        match (operator, &left_pointer, &right_pointer) {
            ("+" | "-", Some((target, address)), None) => {
                let step = self.types().size_of(target).unwrap_or(1).max(1);
                let count = self.integer(&right)?.value;
                let delta = count.checked_mul(i128::from(step)).ok_or_else(|| ExprError::Invalid("pointer arithmetic overflows".into()))?;
                let result = if operator == "+" { i128::from(*address) + delta } else { i128::from(*address) - delta };
                let bytes = (result as u64).to_le_bytes().to_vec();
                return Ok(Value::from_bytes(TypeRef::PointerTo(Box::new(target.clone())), bytes));
            }
            ("+", None, Some(_)) => return self.binary("+", &right, &left),
            ("-", Some((target, left_address)), Some((_, right_address))) => {
                let step = self.types().size_of(target).unwrap_or(1).max(1);
                let difference = (i128::from(*left_address) - i128::from(*right_address)) / i128::from(step);
                return Ok(Integer { value: difference, size: 8, unsigned: false }.to_value());
            }
            _ => {}
        }
        if let Some(result) = self.float_binary(operator, &left, &right)? {
            return Ok(result);
        }
        let a = self.integer(&left)?;
        let b = self.integer(&right)?;
        // The usual arithmetic conversions, for the sizes C has on x86_64.
        let size = a.size.max(b.size);
        let unsigned = (a.unsigned && a.size == size) || (b.unsigned && b.size == size);
        let (x, y) = if unsigned {
            (Integer { size, unsigned, ..a }.wrapped().value, Integer { size, unsigned, ..b }.wrapped().value)
        } else {
            (a.value, b.value)
        };
        let cplusplus = self.inspector.is_cplusplus(self.frame);
        let comparison = |result: bool| Ok(truth_value(result, cplusplus));
        let value = match operator {
            "+" => x.wrapping_add(y),
            "-" => x.wrapping_sub(y),
            "*" => x.wrapping_mul(y),
            "/" | "%" => {
                if y == 0 {
                    return Err(ExprError::Invalid("Division by zero".into()));
                }
                if operator == "/" { x.wrapping_div(y) } else { x.wrapping_rem(y) }
            }
            "<<" => {
                let shift = u32::try_from(y).ok().filter(|&s| s < 64).ok_or_else(|| ExprError::Invalid("shift count out of range".into()))?;
                return Ok(Integer { value: x << shift, size: a.size, unsigned: a.unsigned }.to_value());
            }
            ">>" => {
                let shift = u32::try_from(y).ok().filter(|&s| s < 64).ok_or_else(|| ExprError::Invalid("shift count out of range".into()))?;
                return Ok(Integer { value: a.wrapped().value >> shift, size: a.size, unsigned: a.unsigned }.to_value());
            }
            "&" => x & y,
            "|" => x | y,
            "^" => x ^ y,
            "==" => return comparison(x == y),
            "!=" => return comparison(x != y),
            "<" => return comparison(x < y),
            ">" => return comparison(x > y),
            "<=" => return comparison(x <= y),
            ">=" => return comparison(x >= y),
            _ => return Err(ExprError::Invalid(format!("unsupported operator {operator}"))),
        };
        Ok(Integer { value, size, unsigned }.to_value())
    }

    /// Evaluates `left operator right` when either operand is a real float,
    /// in the wider operand's format as C's usual arithmetic conversions do.
    /// Returns `None` when neither is a float. `long double` and `_Float128`
    /// are computed by [`super::softfloat`], because the host has no such type.
    fn float_binary(&self, operator: &str, left: &Value, right: &Value) -> Result<Option<Value>> {
        let is_complex = |value: &Value| {
            matches!(
                self.types().resolve_stripped(&value.ty),
                Type::Base { encoding: gimli::constants::DW_ATE_complex_float, .. }
            )
        };
        let (left_float, right_float) = (self.float_operand(left)?, self.float_operand(right)?);
        if left_float.is_none() && right_float.is_none() {
            return Ok(None);
        }
        if is_complex(left) || is_complex(right) {
            return Err(ExprError::Invalid("arithmetic on complex numbers is not supported".into()));
        }
        let rank = |kind: &FloatKind| match kind {
            FloatKind::Single => 0,
            FloatKind::Double => 1,
            FloatKind::Wide(_) => 2,
        };
        let (kind, result_type) = match (&left_float, &right_float) {
            (Some((a, _)), Some((b, _))) if rank(b) > rank(a) => (*b, self.types().strip(&right.ty)),
            (Some((a, _)), _) => (*a, self.types().strip(&left.ty)),
            (None, Some((b, _))) => (*b, self.types().strip(&right.ty)),
            (None, None) => return Ok(None),
        };
        let size_bytes = self.types().size_of(&result_type).and_then(|size| usize::try_from(size).ok()).unwrap_or(8);
        // Both operands in the result's format.
        let operand = |value: &Value, float: &Option<(FloatKind, Vec<u8>)>| -> Result<Vec<u8>> {
            match float {
                Some((from, bytes)) => convert_float(*from, bytes, kind, size_bytes)
                    .ok_or_else(|| ExprError::Invalid("the float value is too short".into())),
                None => Ok(integer_to_float(kind, self.integer(value)?.value, size_bytes)),
            }
        };
        let (a, b) = (operand(left, &left_float)?, operand(right, &right_float)?);

        let cplusplus = self.inspector.is_cplusplus(self.frame);
        if let Some(ordering) = matches!(operator, "==" | "!=" | "<" | ">" | "<=" | ">=")
            .then(|| compare_floats(kind, &a, &b))
        {
            let result = match operator {
                "==" => ordering == Some(std::cmp::Ordering::Equal),
                "!=" => ordering != Some(std::cmp::Ordering::Equal),
                "<" => ordering == Some(std::cmp::Ordering::Less),
                ">" => ordering == Some(std::cmp::Ordering::Greater),
                "<=" => matches!(ordering, Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
                _ => matches!(ordering, Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
            };
            return Ok(Some(truth_value(result, cplusplus)));
        }

        let bytes = match kind {
            FloatKind::Single => {
                let (x, y) = (f32::from_le_bytes(a[..4].try_into().unwrap_or_default()), f32::from_le_bytes(b[..4].try_into().unwrap_or_default()));
                float_operation(operator, x, y)?.to_le_bytes().to_vec()
            }
            FloatKind::Double => {
                let (x, y) = (f64::from_le_bytes(a[..8].try_into().unwrap_or_default()), f64::from_le_bytes(b[..8].try_into().unwrap_or_default()));
                float_operation(operator, x, y)?.to_le_bytes().to_vec()
            }
            FloatKind::Wide(wide) => {
                let mut bytes = wide_operation(wide, operator, &a, &b)
                    .ok_or_else(|| ExprError::Invalid(format!("operator {operator} does not apply to floats")))?;
                bytes.resize(size_bytes, 0);
                bytes
            }
        };
        Ok(Some(Value::from_bytes(result_type, bytes)))
    }

    /// Finds member `name` in an aggregate, through base classes and
    /// anonymous members, and returns it.
    fn member(&self, base: &Value, name: &str) -> Result<Value> {
        let base = self.through_reference(base.clone())?;
        self.find_member(&base, name, 0)?.ok_or_else(|| {
            ExprError::Invalid(format!("There is no member named {name}."))
        })
    }

    fn find_member(&self, base: &Value, name: &str, depth: usize) -> Result<Option<Value>> {
        if depth > 32 {
            return Ok(None);
        }
        let types = self.types();
        let Type::Aggregate { members, .. } = types.resolve_stripped(&base.ty) else {
            return Err(ExprError::Invalid(format!(
                "Attempt to extract a component of a value that is not a structure (type {}).",
                types.name(&base.ty)
            )));
        };
        for member in &members {
            if member.name.as_deref() == Some(name) && !member.is_base {
                if let Some((bit_offset, bit_size)) = member.bitfield {
                    return Ok(Some(self.bitfield_value(base, member.ty.clone(), bit_offset, bit_size)?));
                }
                let size = types.size_of(&member.ty).unwrap_or(0);
                return Ok(Some(base.slice(member.offset_bytes, size, member.ty.clone())));
            }
        }
        for member in &members {
            if member.is_base || member.name.is_none() {
                let size = types.size_of(&member.ty).unwrap_or(0);
                let inner = base.slice(member.offset_bytes, size, member.ty.clone());
                if let Some(found) = self.find_member(&inner, name, depth + 1)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    fn bitfield_value(&self, base: &Value, ty: TypeRef, bit_offset: u64, bit_size: u64) -> Result<Value> {
        if bit_size == 0 || bit_size > 64 {
            return Err(ExprError::Invalid(format!("unsupported bitfield of {bit_size} bits")));
        }
        let size = self.types().size_of(&ty).unwrap_or(4).clamp(1, 8);
        let first_byte = bit_offset / 8;
        let shift = bit_offset % 8;
        let len = (shift + bit_size).div_ceil(8);
        let bytes = base.read(self.inspector.memory, first_byte, len).map_err(|hole| ExprError::Unavailable(hole.marker()))?;
        let mut wide = [0u8; 16];
        wide[..bytes.len()].copy_from_slice(&bytes);
        let raw = (u128::from_le_bytes(wide) >> shift) & ((1u128 << bit_size.min(64)) - 1);
        let signed = matches!(
            self.types().resolve_stripped(&ty),
            Type::Base { encoding: gimli::constants::DW_ATE_signed | gimli::constants::DW_ATE_signed_char, .. }
        );
        let value = if signed && raw >> (bit_size - 1) & 1 == 1 { raw as i128 - (1i128 << bit_size) } else { raw as i128 };
        Ok(Value::from_bytes(ty, (value as u128).to_le_bytes()[..size as usize].to_vec()))
    }

    /// Returns gdb's `left@right`: `right` objects like `left`, starting at
    /// its address.
    fn repeat(&self, left: &Value, right: &Value) -> Result<Value> {
        let address = left
            .address()
            .ok_or_else(|| ExprError::Invalid("Only values in memory can be extended with '@'.".into()))?;
        let count = self.integer(right)?.value;
        if count <= 0 {
            return Err(ExprError::Invalid(format!("Non-positive repeat count {count}.")));
        }
        let count = u64::try_from(count).map_err(|_| ExprError::Invalid("repeat count too large".into()))?;
        Ok(Value::in_memory(TypeRef::ArrayOf(Box::new(left.ty.clone()), count), address))
    }

    fn index(&self, base: &Value, index: i128) -> Result<Value> {
        let base = self.through_reference(base.clone())?;
        if let Type::Array { element, .. } = self.types().resolve_stripped(&base.ty) {
            if base.address().is_none() {
                let size = self.types().size_of(&element).unwrap_or(0);
                let offset = u64::try_from(index).map_err(|_| ExprError::Invalid("negative index into a value not in memory".into()))?;
                return Ok(base.slice(offset * size, size, element));
            }
        }
        let (target, address) = self
            .pointer(&base)?
            .ok_or_else(|| ExprError::Invalid("cannot subscript something of this type".into()))?;
        let size = self.types().size_of(&target).unwrap_or(1);
        let offset = index
            .checked_mul(i128::from(size))
            .ok_or_else(|| ExprError::Invalid(format!("index {index} overflows the address space")))?;
        let address = i128::from(address) + offset;
        Ok(Value::in_memory(target, address as u64))
    }

    /// Returns the float format and bytes of `value` when it is a float.
    /// For a complex number it returns those of the real part, which is
    /// what a C cast to a real type takes.
    fn float_operand(&self, value: &Value) -> Result<Option<(FloatKind, Vec<u8>)>> {
        let Type::Base { name, encoding, size } = self.types().resolve_stripped(&value.ty) else {
            return Ok(None);
        };
        let (part_name, part_size) = match encoding {
            gimli::constants::DW_ATE_float => (name.as_str(), size),
            gimli::constants::DW_ATE_complex_float => (name.trim_start_matches("complex "), size / 2),
            _ => return Ok(None),
        };
        let Some(kind) = usize::try_from(part_size).ok().and_then(|size| FloatKind::for_type(part_name, size)) else {
            return Err(ExprError::Invalid(format!("unsupported float type {name} of {size} bytes")));
        };
        let mut bytes = self.read_all(value)?;
        bytes.truncate(usize::try_from(part_size).unwrap_or(0));
        Ok(Some((kind, bytes)))
    }

    fn cast(&self, value: &Value, ty: TypeRef) -> Result<Value> {
        let types = self.types();
        let size = types.size_of(&ty).ok_or_else(|| ExprError::Invalid("cannot cast to a type without a size".into()))?;
        let size_bytes = usize::try_from(size.min(16)).unwrap_or(16);
        let float = self.float_operand(value)?;
        match types.resolve_stripped(&ty) {
            Type::Base { name, encoding: gimli::constants::DW_ATE_float, .. } => {
                let kind = FloatKind::for_type(&name, size_bytes)
                    .ok_or_else(|| ExprError::Invalid(format!("unsupported float type {name} of {size} bytes")))?;
                let bytes = match float {
                    Some((from, bytes)) => convert_float(from, &bytes, kind, size_bytes)
                        .ok_or_else(|| ExprError::Invalid("the float value is too short".into()))?,
                    None => integer_to_float(kind, self.integer(value)?.value, size_bytes),
                };
                Ok(Value::from_bytes(ty, bytes))
            }
            Type::Base { .. } | Type::Enum { .. } | Type::Pointer { .. } => {
                let integer = match float {
                    Some((kind, bytes)) => float_to_integer(kind, &bytes).ok_or_else(|| {
                        ExprError::Invalid("the float value is not a number or out of the integer's range".into())
                    })?,
                    None => self.integer(value)?.value,
                };
                let bytes = (integer as u128).to_le_bytes()[..size_bytes].to_vec();
                Ok(Value::from_bytes(ty, bytes))
            }
            // A cast to an aggregate reinterprets the object's bytes, as gdb does.
            _ => Ok(Value { ty, contents: value.contents.clone() }),
        }
    }
}

/// Applies an arithmetic operator to two host floats, as IEEE 754 does.
fn float_operation<F>(operator: &str, x: F, y: F) -> Result<F>
where
    F: std::ops::Add<Output = F> + std::ops::Sub<Output = F> + std::ops::Mul<Output = F> + std::ops::Div<Output = F>,
{
    Ok(match operator {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        _ => return Err(ExprError::Invalid(format!("operator {operator} does not apply to floats"))),
    })
}

/// Returns whether `value`'s bytes are all known, without reading memory.
pub fn is_known(value: &Value) -> bool {
    !matches!(value.contents, Contents::Missing(_))
}

/// Returns the static local named `name` declared in `function`.
pub fn static_local(info: &super::dwarf::DebugInfo, function: DieId, name: &str) -> Option<DieId> {
    super::scope::find_static_local(info, function, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_types(_: &str) -> bool {
        false
    }

    fn parsed(text: &str) -> Expr {
        parse(text, &no_types).unwrap()
    }

    fn name(text: &str) -> Box<Expr> {
        Box::new(Expr::Name { file: None, path: vec![text.to_owned()] })
    }

    #[test]
    fn precedence() {
        let expr = parsed("a + b * 2");
        let Expr::Binary("+", left, right) = expr else { panic!("{expr:?}") };
        assert_eq!(left, name("a"));
        assert!(matches!(*right, Expr::Binary("*", _, _)));
    }

    #[test]
    fn entry_value_of_name() {
        assert_eq!(parsed("limit@entry"), Expr::EntryValue("limit".into()));
        assert_eq!(parsed("limit @entry"), Expr::EntryValue("limit".into()));
        assert_eq!(parsed("*n@entry"), Expr::Unary("*", Box::new(Expr::EntryValue("n".into()))));
        assert_eq!(parsed("n@entry->next"), Expr::Arrow(Box::new(Expr::EntryValue("n".into())), "next".into()));
    }

    #[test]
    fn artificial_array_beside_entry() {
        assert_eq!(parsed("*p@3"), Expr::Binary("@", Box::new(Expr::Unary("*", name("p"))), Box::new(Expr::Int { value: 3, unsigned: false, long: false })));
        // Only `@entry` in one piece, not followed by more of a name, is
        // gdb's entry-value token.
        assert_eq!(parsed("x@ entry"), Expr::Binary("@", name("x"), name("entry")));
        assert_eq!(parsed("x@entryway"), Expr::Binary("@", name("x"), name("entryway")));
    }

    #[test]
    fn entry_after_other_than_name() {
        for text in ["1@entry", "(x)@entry", "ns::x@entry", "@entry"] {
            assert!(matches!(parse(text, &no_types), Err(ExprError::Syntax { .. })), "{text}");
        }
    }

    #[test]
    fn postfix_chain() {
        let expr = parsed("request->origin.x");
        assert_eq!(expr, Expr::Member(Box::new(Expr::Arrow(name("request"), "origin".into())), "x".into()));
        let expr = parsed("values[i + 1]");
        assert!(matches!(expr, Expr::Index(_, _)));
    }

    #[test]
    fn unary_and_address() {
        assert_eq!(parsed("*p"), Expr::Unary("*", name("p")));
        assert_eq!(parsed("&x"), Expr::Unary("&", name("x")));
        assert_eq!(parsed("-1"), Expr::Unary("-", Box::new(Expr::Int { value: 1, unsigned: false, long: false })));
    }

    #[test]
    fn casts_and_sizeof() {
        let expr = parsed("(struct point *) where");
        assert_eq!(expr, Expr::Cast(TypeName { base: "struct point".into(), pointers: 1, ..TypeName::default() }, name("where")));
        let expr = parsed("(unsigned long) x");
        assert_eq!(expr, Expr::Cast(TypeName { base: "unsigned long".into(), ..TypeName::default() }, name("x")));
        let expr = parsed("(long unsigned int) x");
        assert_eq!(expr, Expr::Cast(TypeName { base: "unsigned long".into(), ..TypeName::default() }, name("x")));
        assert_eq!(parsed("sizeof(int)"), Expr::SizeofType(TypeName { base: "int".into(), ..TypeName::default() }));
        assert_eq!(parsed("sizeof x"), Expr::SizeofExpr(name("x")));
        let typedefs = |word: &str| word == "size_t";
        assert_eq!(
            parse("(size_t) x", &typedefs).unwrap(),
            Expr::Cast(TypeName { base: "size_t".into(), ..TypeName::default() }, name("x"))
        );
        // Without the typedef, `(x) y` is a syntax error, not a cast.
        assert!(parse("(size_t) x", &no_types).is_err());
    }

    #[test]
    fn array_and_function_type_names() {
        let array = TypeName { base: "int".into(), dimensions: vec![2, 3], ..TypeName::default() };
        assert_eq!(parsed("sizeof(int[2][3])"), Expr::SizeofType(array));
        let function = TypeName {
            base: "void".into(),
            function: Some(FunctionDeclarator {
                pointers: 1,
                params: vec![TypeName { base: "int".into(), ..TypeName::default() }],
                prototyped: true,
            }),
            ..TypeName::default()
        };
        assert_eq!(parsed("(void (*)(int)) f"), Expr::Cast(function, name("f")));
        let Expr::Cast(no_params, _) = parsed("(int (*)(void)) f") else { panic!("not a cast") };
        assert_eq!(no_params.function, Some(FunctionDeclarator { pointers: 1, params: Vec::new(), prototyped: true }));
        let typedefs = |word: &str| word == "point_t";
        let Expr::SizeofType(typedef_array) = parse("sizeof(point_t[3])", &typedefs).unwrap() else { panic!("not sizeof") };
        assert_eq!(typedef_array.dimensions, vec![3]);
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            parsed("'worker.c'::counter"),
            Expr::Name { file: Some("worker.c".into()), path: vec!["counter".into()] }
        );
        assert_eq!(parsed("ns::inner::x"), Expr::Name { file: None, path: vec!["ns".into(), "inner".into(), "x".into()] });
        assert_eq!(parsed("$rip"), Expr::Register("rip".into()));
    }

    #[test]
    fn literals() {
        assert_eq!(parsed("0x10"), Expr::Int { value: 16, unsigned: false, long: false });
        assert_eq!(parsed("2.5"), Expr::Float { bits: 2.5f64.to_bits(), single: false });
        assert_eq!(parsed("1e-3"), Expr::Float { bits: 1e-3f64.to_bits(), single: false });
        assert_eq!(parsed("0.5f"), Expr::Float { bits: 0.5f64.to_bits(), single: true });
        assert_eq!(parsed("3"), Expr::Int { value: 3, unsigned: false, long: false });
        assert!(parse("1.5L", &no_types).is_err());
        assert_eq!(parsed("010"), Expr::Int { value: 8, unsigned: false, long: false });
        assert_eq!(parsed("5ul"), Expr::Int { value: 5, unsigned: true, long: true });
        assert_eq!(parsed("'A'"), Expr::Char(b'A'));
        assert_eq!(parsed("'\\n'"), Expr::Char(b'\n'));
        assert_eq!(parsed("'\\0'"), Expr::Char(0));
    }

    #[test]
    fn syntax_errors_name_offset() {
        assert_eq!(
            parse("a +", &no_types),
            Err(ExprError::Syntax { offset: 3, message: "expected an expression".into() })
        );
        assert!(matches!(parse("a # b", &no_types), Err(ExprError::Syntax { offset: 2, .. })));
        assert!(matches!(parse("(a", &no_types), Err(ExprError::Syntax { .. })));
    }

    #[test]
    fn integer_wrapping() {
        let integer = Integer { value: -1, size: 4, unsigned: true }.wrapped();
        assert_eq!(integer.value, 0xffff_ffff);
        let integer = Integer { value: 0x8000_0000, size: 4, unsigned: false }.wrapped();
        assert_eq!(integer.value, -0x8000_0000);
    }
}
