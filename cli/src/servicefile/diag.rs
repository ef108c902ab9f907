//! What the parser reports: [`Finding`]s (errors and warnings) that each name a file, a
//! line, a column and a key, carry the offending text as a source span, and render as
//! miette snippets with a label and a help line.

use std::fmt;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode,
    SourceSpan,
};

/// One service file's text with its display name, shared by every finding that points
/// into it.
pub(crate) type SourceText = Arc<NamedSource<Arc<str>>>;

/// Whether a finding stops the apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Nothing is sent while there is one.
    Error,
    /// Said to the user; the file still applies.
    Warning,
}

/// What a finding is about, for callers and tests that need more than the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The file is not valid YAML (or an `env_file` cannot be read or parsed).
    Syntax,
    /// A value has the wrong type: a string where a number belongs, and so on.
    Type,
    /// A key that is neither a Compose key nor a berth key.
    UnknownKey,
    /// A Compose key berth does not support: a warning when ignoring it is safe, an error
    /// otherwise.
    Unsupported,
    /// A key berth parses but this version does not apply yet.
    NotApplied,
    /// A key Compose itself no longer uses (`version:`).
    Obsolete,
    /// A value outside what berth accepts (a bad image reference, constraint, protocol...).
    Invalid,
    /// A required key is missing (`image`).
    Missing,
    /// A service name that is not a DNS label.
    ServiceName,
    /// `links` or `depends_on` names a service the files do not define.
    UnknownService,
    /// `depends_on` and `links` form a cycle.
    Cycle,
    /// A port outside 1–65535 or a malformed port specification.
    Port,
    /// A duration that does not parse.
    Duration,
    /// A size that does not parse.
    Size,
    /// `${VAR}` interpolation: an unset variable, a `${VAR:?message}` error, a bad `$`.
    Interpolation,
}

/// One error or warning about the service files.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What it is about.
    pub kind: Kind,
    /// The file's display name (its path as given, or `-` for standard input).
    pub file: String,
    /// 1-based line; 0 when the finding is about the file as a whole.
    pub line: u32,
    /// 1-based column (in characters); 0 when the finding is about the file as a whole.
    pub column: u32,
    /// The dotted path of the key concerned, e.g. `services.web.deploy.replicas`; empty
    /// for the file as a whole.
    pub key: String,
    /// What is wrong, naming the thing.
    pub message: String,
    /// The text under the snippet's marker.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
    pub(crate) source: Option<SourceText>,
    pub(crate) span: SourceSpan,
    /// (source number, byte offset): the order findings are reported in.
    pub(crate) order: (usize, usize),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Finding {}

impl Diagnostic for Finding {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_deref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some(self.label.clone()), self.span),
        )))
    }
}

impl Finding {
    /// `file:line:column: message`, on one line (for logs and plain output).
    pub fn one_line(&self) -> String {
        let what = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            format!("{}: {what}: {}", self.file, self.message)
        } else {
            format!(
                "{}:{}:{}: {what}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Why the service files cannot be applied: every error found (at least every one in each
/// file that parsed), and the warnings found along the way.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// The errors, in file order, then line order; never empty.
    pub errors: Vec<Finding>,
    /// The warnings found before giving up.
    pub warnings: Vec<Finding>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [one] => write!(f, "{}", one.one_line()),
            many => write!(f, "{} errors in the service files", many.len()),
        }
    }
}

impl std::error::Error for ParseError {}

impl Diagnostic for ParseError {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.errors.iter().map(|e| e as &dyn Diagnostic)))
    }
}

/// How findings are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderStyle {
    /// ANSI colours (give `false` when `NO_COLOR` is set or the output is not a terminal).
    pub color: bool,
    /// Unicode box drawing (else ASCII).
    pub unicode: bool,
    /// Wrap width.
    pub width: usize,
}

impl RenderStyle {
    /// No colour, Unicode, 100 columns: deterministic, as the golden tests use.
    pub const PLAIN: RenderStyle = RenderStyle {
        color: false,
        unicode: true,
        width: 100,
    };
}

/// Renders findings one after the other, each as a miette report: a `×` (error) or `⚠`
/// (warning) line with the message, the file, line and column, a snippet with the
/// offending text labelled, and the help line.
pub fn render(findings: &[Finding], style: RenderStyle) -> String {
    let theme = match (style.unicode, style.color) {
        (true, true) => GraphicalTheme::unicode(),
        (true, false) => GraphicalTheme::unicode_nocolor(),
        (false, _) => GraphicalTheme::ascii(),
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(style.width)
        .with_links(false);
    let mut out = String::new();
    for f in findings {
        let mut one = String::new();
        if handler.render_report(&mut one, f).is_err() {
            one = f.one_line();
        }
        out.push_str(one.trim_end());
        out.push_str("\n\n");
    }
    out
}
