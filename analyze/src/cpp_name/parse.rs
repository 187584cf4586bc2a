//! Reads C++ names with the grammar of gdb's name parser
//! (gdb/cp-name-parser.y), for the subset that demangled names and gcc's
//! DWARF names use.

/// Punctuation that gdb's lexer reads as one token, longest first.
const SYMBOLS: [&str; 41] = [
    "<<=", ">>=", "...", "::", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "++", "--", "->", "+=", "-=", "*=",
    "/=", "%=", "|=", "&=", "^=", "<", ">", "(", ")", ",", "*", "&", "[", "]", "~", "!", "+", "-", "/", "%", "^",
    "|", "=",
];

/// The operators gdb's grammar accepts after `operator`, as libiberty
/// prints them. `()`, `[]`, `->*`, `new[]` and `delete[]` are two tokens.
const OPERATOR_SYMBOLS: [&str; 36] = [
    "+", "-", "*", "/", "%", "^", "&", "|", "~", "!", "=", "<", ">", "+=", "-=", "*=", "/=", "%=", "^=", "&=", "|=",
    "<<=", ">>=", "<<", ">>", "==", "!=", "<=", ">=", "&&", "||", "++", "--", ",", "->", "->*",
];

/// Words gdb's lexer reads as keywords, which cannot be names.
const KEYWORDS: [&str; 28] = [
    "reinterpret_cast", "dynamic_cast", "static_cast", "operator", "restrict", "unsigned", "template", "volatile",
    "wchar_t", "delete", "struct", "signed", "sizeof", "double", "false", "class", "union", "float", "short", "const",
    "void", "bool", "char", "enum", "long", "true", "new", "int",
];

/// Maximum number of tokens in a name that is parsed, so that a name from
/// a damaged file cannot exhaust the stack. gdb's parser has no limit. The
/// longest demangled name in gcc 12's libstdc++.so.6 has about 150 tokens.
const MAX_TOKENS: usize = 4096;

/// Maximum depth of nested brackets in a name that is parsed.
const MAX_NESTING: usize = 64;

/// One token of a C++ name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// An identifier or keyword.
    Word(&'a str),
    /// `(anonymous namespace)`, which gdb's lexer reads as one name.
    AnonymousNamespace,
    /// An integer literal as written, with its sign and suffix.
    Number(&'a str),
    /// Punctuation or an operator.
    Symbol(&'static str),
}

/// `const`, `volatile` and `restrict`, on a type or a member function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Qualifiers {
    pub(super) is_const: bool,
    pub(super) is_volatile: bool,
    pub(super) is_restrict: bool,
}

/// One `::`-separated part of a name.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Component {
    Identifier(String),
    /// `operator+=`: the symbol or word after `operator`.
    Operator(&'static str),
    /// `operator bool`.
    Conversion(Box<Type>),
    Destructor(String),
    Template(Box<Component>, Vec<TemplateArgument>),
}

/// A possibly qualified name.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Name(pub(super) Vec<Component>);

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Type {
    Builtin(&'static str),
    Named(Name),
    Qualified(Box<Type>, Qualifiers),
    Pointer(Box<Type>),
    Reference(Box<Type>),
    RvalueReference(Box<Type>),
    /// An array, with its length as written.
    Array(Box<Type>, Option<String>),
    /// A function type, which gdb accepts only under a pointer or reference.
    Function(Box<Type>, Parameters),
}

/// A parameter list with the qualifiers that follow it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Parameters {
    pub(super) types: Vec<Type>,
    pub(super) variadic: bool,
    pub(super) qualifiers: Qualifiers,
}

/// `*` (with the qualifiers of the pointer), `&` or `&&` in a declarator.
#[derive(Debug, Clone, Copy)]
enum PointerOperator {
    Pointer(Qualifiers),
    Reference,
    RvalueReference,
}

impl PointerOperator {
    fn apply(self, target: Type) -> Type {
        match self {
            PointerOperator::Pointer(qualifiers) => qualify(Type::Pointer(Box::new(target)), qualifiers),
            PointerOperator::Reference => Type::Reference(Box::new(target)),
            PointerOperator::RvalueReference => Type::RvalueReference(Box::new(target)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TemplateArgument {
    Type(Type),
    Expression(Expression),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expression {
    /// An integer literal of a builtin type, or of the type of a cast.
    Literal { ty: Type, negative: bool, digits: String },
    /// `-x`, `!x`, `~x` on an operand that is not a literal.
    Unary(&'static str, Box<Expression>),
    AddressOf(Name),
}

/// A whole name: a function with its parameters, or a type or plain name.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Start {
    /// `name(parameters)`, or with `local`, a name declared inside that
    /// function (`f()::x`).
    Function { name: Name, parameters: Parameters, local: Option<Box<Start>> },
    Type(Type),
}

/// Splits `text` into tokens. Returns `None` at a character that gdb's
/// grammar never accepts in a name, such as `{`, `#` or a lone `:`.
fn tokenize(text: &str) -> Option<Vec<Token<'_>>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let rest = &text[position..];
        let byte = bytes[position];
        if byte.is_ascii_whitespace() {
            position += 1;
            continue;
        }
        if rest.starts_with("(anonymous namespace)") {
            tokens.push(Token::AnonymousNamespace);
            position += "(anonymous namespace)".len();
            continue;
        }
        let starts_number =
            byte.is_ascii_digit() || (byte == b'-' && bytes.get(position + 1).is_some_and(u8::is_ascii_digit));
        if starts_number {
            let len = 1 + rest[1..].find(|c: char| !c.is_ascii_alphanumeric() && c != '.').unwrap_or(rest.len() - 1);
            tokens.push(Token::Number(&rest[..len]));
            position += len;
            continue;
        }
        if byte.is_ascii_alphabetic() || byte == b'_' || byte == b'$' {
            let len = rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '$').unwrap_or(rest.len());
            tokens.push(Token::Word(&rest[..len]));
            position += len;
            continue;
        }
        let symbol = SYMBOLS.iter().find(|symbol| rest.starts_with(**symbol))?;
        tokens.push(Token::Symbol(symbol));
        position += symbol.len();
    }
    Some(tokens)
}

/// A recursive-descent parser over the tokens of one name. A method returns
/// `None` when the input does not match. The position is then left where
/// the match failed, and a caller that tries another rule restores it.
struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.position).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<Token<'a>> {
        self.tokens.get(self.position + offset).copied()
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(found)) if found == symbol) {
            self.position += 1;
            return true;
        }
        false
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.peek() == Some(Token::Word(word)) {
            self.position += 1;
            return true;
        }
        false
    }

    fn at_end(&self) -> bool {
        self.position == self.tokens.len()
    }

    /// Parses a whole name: a function with parameters, or else a type.
    fn start(&mut self) -> Option<Start> {
        let saved = self.position;
        if let Some(function) = self.function() {
            return Some(function);
        }
        self.position = saved;
        self.type_name().map(Start::Type)
    }

    fn function(&mut self) -> Option<Start> {
        // gdb drops a leading `::`.
        self.eat_symbol("::");
        let name = self.name(true)?;
        let parameters = self.parameters()?;
        let local = if self.eat_symbol("::") { Some(Box::new(self.start()?)) } else { None };
        Some(Start::Function { name, parameters, local })
    }

    /// Parses `a::b<c>::d`. With `allow_special`, the last component may
    /// be an operator, a conversion or a destructor, as in a function name.
    fn name(&mut self, allow_special: bool) -> Option<Name> {
        let mut components = Vec::new();
        loop {
            let component = self.component(allow_special)?;
            let special = !matches!(component, Component::Identifier(_))
                && !matches!(&component, Component::Template(base, _) if matches!(**base, Component::Identifier(_)));
            components.push(component);
            let continues = matches!(
                self.peek_at(1),
                Some(Token::Word(_) | Token::AnonymousNamespace | Token::Symbol("~"))
            );
            if special || self.peek() != Some(Token::Symbol("::")) || !continues {
                break;
            }
            self.position += 1;
        }
        Some(Name(components))
    }

    fn component(&mut self, allow_special: bool) -> Option<Component> {
        match self.peek()? {
            Token::AnonymousNamespace => {
                self.position += 1;
                Some(Component::Identifier("(anonymous namespace)".to_owned()))
            }
            Token::Word("operator") if allow_special => {
                self.position += 1;
                self.operator()
            }
            Token::Symbol("~") if allow_special => match self.peek_at(1)? {
                Token::Word(word) if !KEYWORDS.contains(&word) => {
                    self.position += 2;
                    Some(Component::Destructor(word.to_owned()))
                }
                _ => None,
            },
            Token::Word(word) if !KEYWORDS.contains(&word) => {
                self.position += 1;
                let identifier = Component::Identifier(word.to_owned());
                if self.peek() == Some(Token::Symbol("<")) {
                    let arguments = self.template_arguments()?;
                    return Some(Component::Template(Box::new(identifier), arguments));
                }
                Some(identifier)
            }
            _ => None,
        }
    }

    /// Parses what follows `operator`, and template arguments after it.
    fn operator(&mut self) -> Option<Component> {
        let operator = match self.peek()? {
            Token::Word(word @ ("new" | "delete")) => {
                self.position += 1;
                let array = self.peek() == Some(Token::Symbol("[")) && self.peek_at(1) == Some(Token::Symbol("]"));
                if array {
                    self.position += 2;
                }
                Component::Operator(match (word, array) {
                    ("new", false) => "new",
                    ("new", true) => "new[]",
                    (_, false) => "delete",
                    (_, true) => "delete[]",
                })
            }
            Token::Symbol("(") if self.peek_at(1) == Some(Token::Symbol(")")) => {
                self.position += 2;
                Component::Operator("()")
            }
            Token::Symbol("[") if self.peek_at(1) == Some(Token::Symbol("]")) => {
                self.position += 2;
                Component::Operator("[]")
            }
            Token::Symbol("->") if self.peek_at(1) == Some(Token::Symbol("*")) => {
                self.position += 2;
                Component::Operator("->*")
            }
            Token::Symbol(symbol) => {
                let symbol = OPERATOR_SYMBOLS.iter().find(|s| **s == symbol)?;
                self.position += 1;
                Component::Operator(symbol)
            }
            _ => {
                // A conversion operator names a type, with pointer and
                // reference operators but no parameter list of its own.
                let mut ty = self.type_specifier()?;
                while let Some(operator) = self.pointer_operator() {
                    ty = operator.apply(ty);
                }
                return Some(Component::Conversion(Box::new(ty)));
            }
        };
        if self.peek() == Some(Token::Symbol("<")) {
            let arguments = self.template_arguments()?;
            return Some(Component::Template(Box::new(operator), arguments));
        }
        Some(operator)
    }

    /// Parses `<arg, arg>`; gdb's grammar needs at least one argument.
    fn template_arguments(&mut self) -> Option<Vec<TemplateArgument>> {
        if !self.eat_symbol("<") {
            return None;
        }
        let mut arguments = vec![self.template_argument()?];
        while self.eat_symbol(",") {
            arguments.push(self.template_argument()?);
        }
        self.eat_symbol(">").then_some(arguments)
    }

    fn template_argument(&mut self) -> Option<TemplateArgument> {
        match self.peek()? {
            Token::Number(_) | Token::Symbol("(" | "-" | "!" | "~" | "&") | Token::Word("true" | "false") => {
                self.expression().map(TemplateArgument::Expression)
            }
            _ => self.type_name().map(TemplateArgument::Type),
        }
    }

    fn expression(&mut self) -> Option<Expression> {
        match self.peek()? {
            Token::Number(text) => {
                self.position += 1;
                number_literal(text)
            }
            Token::Word(word @ ("true" | "false")) => {
                self.position += 1;
                let digits = if word == "true" { "1" } else { "0" };
                Some(Expression::Literal { ty: Type::Builtin("bool"), negative: false, digits: digits.to_owned() })
            }
            Token::Symbol(operator @ ("-" | "!" | "~")) => {
                self.position += 1;
                // NOTE: gdb also accepts an operator on an operator (`!!x`);
                // one level keeps the recursion bounded.
                if matches!(self.peek(), Some(Token::Symbol("-" | "!" | "~"))) {
                    return None;
                }
                Some(Expression::Unary(operator, Box::new(self.expression()?)))
            }
            Token::Symbol("&") => {
                self.position += 1;
                let parenthesized = self.eat_symbol("(");
                let name = self.name(false)?;
                if parenthesized && !self.eat_symbol(")") {
                    return None;
                }
                Some(Expression::AddressOf(name))
            }
            Token::Symbol("(") => {
                self.position += 1;
                let saved = self.position;
                // A cast: gdb gives a literal the cast's type.
                if let Some(ty) = self.type_name() {
                    if self.eat_symbol(")") {
                        return match self.expression()? {
                            Expression::Literal { negative, digits, .. } => {
                                Some(Expression::Literal { ty, negative, digits })
                            }
                            // NOTE: gdb keeps a cast of anything else.
                            _ => None,
                        };
                    }
                }
                self.position = saved;
                let inner = self.expression()?;
                self.eat_symbol(")").then_some(inner)
            }
            _ => None,
        }
    }

    /// Parses a type: its specifier, then an abstract declarator.
    fn type_name(&mut self) -> Option<Type> {
        let specifier = self.type_specifier()?;
        self.abstract_declarator(specifier)
    }

    /// Parses a builtin or named type with the qualifiers around it.
    fn type_specifier(&mut self) -> Option<Type> {
        let mut qualifiers = self.qualifiers();
        let base = match self.builtin() {
            Some(builtin) => Type::Builtin(builtin),
            None => {
                self.eat_symbol("::");
                Type::Named(self.name(false)?)
            }
        };
        let after = self.qualifiers();
        qualifiers.is_const |= after.is_const;
        qualifiers.is_volatile |= after.is_volatile;
        qualifiers.is_restrict |= after.is_restrict;
        Some(qualify(base, qualifiers))
    }

    fn qualifiers(&mut self) -> Qualifiers {
        let mut qualifiers = Qualifiers::default();
        loop {
            if self.eat_word("const") {
                qualifiers.is_const = true;
            } else if self.eat_word("volatile") {
                qualifiers.is_volatile = true;
            } else if self.eat_word("restrict") {
                qualifiers.is_restrict = true;
            } else {
                return qualifiers;
            }
        }
    }

    /// Parses a builtin type, spelling it as gdb does: `long unsigned int`
    /// is `unsigned long`.
    fn builtin(&mut self) -> Option<&'static str> {
        let single = match self.peek()? {
            Token::Word("float") => Some("float"),
            Token::Word("double") => Some("double"),
            Token::Word("bool") => Some("bool"),
            Token::Word("wchar_t") => Some("wchar_t"),
            Token::Word("void") => Some("void"),
            Token::Word("long") if self.peek_at(1) == Some(Token::Word("double")) => {
                self.position += 1;
                Some("long double")
            }
            _ => None,
        };
        if single.is_some() {
            self.position += 1;
            return single;
        }
        let saved = self.position;
        let (mut signed, mut unsigned, mut char, mut short, mut longs) = (false, false, false, false, 0);
        while let Some(Token::Word(word)) = self.peek() {
            match word {
                "int" => {}
                "signed" => signed = true,
                "unsigned" => unsigned = true,
                "char" => char = true,
                "short" => short = true,
                "long" => longs += 1,
                _ => break,
            }
            self.position += 1;
        }
        if self.position == saved {
            return None;
        }
        match (signed, unsigned, char, short, longs) {
            (true, false, true, false, 0) => Some("signed char"),
            (false, false, true, false, 0) => Some("char"),
            (false, true, true, false, 0) => Some("unsigned char"),
            (_, false, false, false, 0) => Some("int"),
            (false, true, false, false, 0) => Some("unsigned int"),
            (_, false, false, false, 1) => Some("long"),
            (false, true, false, false, 1) => Some("unsigned long"),
            (_, false, false, true, 0) => Some("short"),
            (false, true, false, true, 0) => Some("unsigned short"),
            (_, false, false, false, 2) => Some("long long"),
            (false, true, false, false, 2) => Some("unsigned long long"),
            _ => None,
        }
    }

    /// Parses `*` with the qualifiers after it, `&` or `&&`.
    fn pointer_operator(&mut self) -> Option<PointerOperator> {
        if self.eat_symbol("*") {
            return Some(PointerOperator::Pointer(self.qualifiers()));
        }
        if self.eat_symbol("&&") {
            return Some(PointerOperator::RvalueReference);
        }
        if self.eat_symbol("&") {
            return Some(PointerOperator::Reference);
        }
        None
    }

    /// Parses the declarator of a type without a name: pointer and
    /// reference operators, then `(declarator)` with parameter lists or
    /// array bounds after it, or array bounds alone. A bare parameter
    /// list (a function type) is rejected, as gdb rejects it.
    fn abstract_declarator(&mut self, specifier: Type) -> Option<Type> {
        let mut ty = specifier;
        while let Some(operator) = self.pointer_operator() {
            ty = operator.apply(ty);
        }
        let nested = self.peek() == Some(Token::Symbol("("))
            && matches!(self.peek_at(1), Some(Token::Symbol("*" | "&" | "&&" | "(")));
        if nested {
            self.position += 1;
            // The inner declarator applies to the type built by what
            // follows the parentheses, so parse it against a placeholder.
            let inner = self.abstract_declarator(Type::Builtin("?"))?;
            if !self.eat_symbol(")") {
                return None;
            }
            let mut outer = ty;
            loop {
                if self.peek() == Some(Token::Symbol("(")) {
                    outer = Type::Function(Box::new(outer), self.parameters()?);
                } else if let Some(length) = self.array_bound() {
                    outer = array_of(outer, length);
                } else {
                    break;
                }
            }
            return Some(substitute(inner, outer));
        }
        while let Some(length) = self.array_bound() {
            ty = array_of(ty, length);
        }
        Some(ty)
    }

    /// Parses `[]` or `[N]`.
    fn array_bound(&mut self) -> Option<Option<String>> {
        if self.peek() != Some(Token::Symbol("[")) {
            return None;
        }
        match (self.peek_at(1), self.peek_at(2)) {
            (Some(Token::Symbol("]")), _) => {
                self.position += 2;
                Some(None)
            }
            (Some(Token::Number(number)), Some(Token::Symbol("]"))) => {
                self.position += 3;
                Some(Some(number.to_owned()))
            }
            _ => None,
        }
    }

    /// Parses `(types) qualifiers`, `(void)` or `()`.
    fn parameters(&mut self) -> Option<Parameters> {
        if !self.eat_symbol("(") {
            return None;
        }
        let mut types = Vec::new();
        let mut variadic = false;
        let is_void = self.peek() == Some(Token::Word("void")) && self.peek_at(1) == Some(Token::Symbol(")"));
        if is_void {
            self.position += 1;
        } else if self.peek() != Some(Token::Symbol(")")) {
            types.push(self.type_name()?);
            while self.eat_symbol(",") {
                if self.eat_symbol("...") {
                    variadic = true;
                    break;
                }
                types.push(self.type_name()?);
            }
        }
        if !self.eat_symbol(")") {
            return None;
        }
        let qualifiers = self.qualifiers();
        Some(Parameters { types, variadic, qualifiers })
    }
}

fn qualify(ty: Type, qualifiers: Qualifiers) -> Type {
    if qualifiers == Qualifiers::default() {
        ty
    } else {
        Type::Qualified(Box::new(ty), qualifiers)
    }
}

/// Wraps `element` in an array, keeping `int [3][4]` an array of 3 arrays
/// of 4: bounds are read left to right but nest right to left.
fn array_of(element: Type, length: Option<String>) -> Type {
    match element {
        Type::Array(inner, inner_length) => Type::Array(Box::new(array_of(*inner, length)), inner_length),
        other => Type::Array(Box::new(other), length),
    }
}

/// Replaces the placeholder at the bottom of `declarator` with `ty`.
fn substitute(declarator: Type, ty: Type) -> Type {
    match declarator {
        Type::Builtin("?") => ty,
        Type::Qualified(inner, qualifiers) => Type::Qualified(Box::new(substitute(*inner, ty)), qualifiers),
        Type::Pointer(inner) => Type::Pointer(Box::new(substitute(*inner, ty))),
        Type::Reference(inner) => Type::Reference(Box::new(substitute(*inner, ty))),
        Type::RvalueReference(inner) => Type::RvalueReference(Box::new(substitute(*inner, ty))),
        Type::Array(inner, length) => Type::Array(Box::new(substitute(*inner, ty)), length),
        Type::Function(inner, parameters) => Type::Function(Box::new(substitute(*inner, ty)), parameters),
        other => other,
    }
}

/// Reads an integer literal as gdb's lexer does: the suffix `u`, `l` or
/// `ll` selects the type. A float literal is not supported.
fn number_literal(text: &str) -> Option<Expression> {
    let (negative, unsigned_text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits = unsigned_text.trim_end_matches(['u', 'U', 'l', 'L']);
    let suffix = &unsigned_text[digits.len()..];
    let is_hex = digits.starts_with("0x") || digits.starts_with("0X");
    let valid = if is_hex {
        digits.len() > 2 && digits[2..].chars().all(|c| c.is_ascii_hexdigit())
    } else {
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    };
    if !valid {
        return None;
    }
    let unsigned = suffix.contains(['u', 'U']);
    let longs = suffix.chars().filter(|c| matches!(c, 'l' | 'L')).count();
    let name = match (unsigned, longs) {
        (false, 0) => "int",
        (true, 0) => "unsigned int",
        (false, 1) => "long",
        (true, 1) => "unsigned long",
        (false, _) => "long long",
        (true, _) => "unsigned long long",
    };
    Some(Expression::Literal { ty: Type::Builtin(name), negative, digits: digits.to_owned() })
}

/// Parses `name`; `None` when gdb's parser would reject it.
pub(super) fn parse(name: &str) -> Option<Start> {
    let tokens = tokenize(name)?;
    if tokens.len() > MAX_TOKENS {
        return None;
    }
    let mut nesting = 0usize;
    for token in &tokens {
        match token {
            Token::Symbol("<" | "(" | "[") => nesting += 1,
            Token::Symbol(">" | ")" | "]") => nesting = nesting.saturating_sub(1),
            _ => {}
        }
        if nesting > MAX_NESTING {
            return None;
        }
    }
    let mut parser = Parser { tokens, position: 0 };
    let start = parser.start()?;
    parser.at_end().then_some(start)
}

