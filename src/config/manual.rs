//! The help in other forms: a man page (`monoloop --man`) and shell
//! completions (`monoloop --completions bash|zsh|fish`), both generated
//! from the help text at run time.
//!
//! The options are named once, with the commands that use them, in
//! `options.rs`, and described once, in the help (`usage.rs`), which a
//! test there keeps in step with that table. This module reads the help
//! back, since it alone says what each option's value is and what it does,
//! instead of keeping a second list: a new option, a mode's own list, or a
//! build without TLS shows up here as it shows up in `--help`, and a test
//! below checks that each command's options, read back, are the table's.
//! What it relies on is the help's layout:
//! - a section title starts at the margin and ends in `:`;
//! - an entry starts four spaces in with its options, each perhaps
//!   followed by its value's name in capitals (`--cert FILE --key FILE`,
//!   `-h, --help`), then its description, continued on lines indented
//!   further;
//! - a line four spaces in that is not an option is a note (or, under
//!   USAGE, a synopsis; under MODES, a mode and its summary).
//!
//! tests/cli.rs checks the outcome against the help: every option it lists
//! is in the man page and in each completion script. Printing is
//! `main.rs`'s; `--man` and `--completions` are read by `parse.rs`, and
//! are not in the help.

use std::fmt::Write as _;
use std::str::FromStr;

use super::model::Command;
use super::usage::usage;

/// A shell that `--completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl FromStr for Shell {
    type Err = String;

    fn from_str(s: &str) -> Result<Shell, String> {
        match s {
            "bash" => Ok(Shell::Bash),
            "zsh" => Ok(Shell::Zsh),
            "fish" => Ok(Shell::Fish),
            _ => Err("expected bash, zsh or fish".into()),
        }
    }
}

/// The log levels `--log-level` takes (`values.rs` reads them); the help
/// names them in prose, which is no list to complete from.
const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// One entry of the help: its options, each with its value's name if it
/// takes one (for a mode under MODES: the mode's name), and its
/// description with its lines joined.
#[derive(Debug)]
struct Entry<'a> {
    options: Vec<(&'a str, Option<&'a str>)>,
    about: String,
}

/// A section of the help: its title (without the colon), its entries, and
/// its other lines (a synopsis, a note).
#[derive(Debug)]
struct Section<'a> {
    title: &'a str,
    entries: Vec<Entry<'a>>,
    notes: Vec<String>,
}

/// The help read back: its first line (what monoloop is, or what the
/// command does), then its sections.
fn read(help: &str) -> (&str, Vec<Section<'_>>) {
    let mut lines = help.lines();
    let title = lines.next().unwrap_or_default();
    let mut sections: Vec<Section> = Vec::new();
    // What the line before was, which a line indented deeper (an entry's,
    // a note's) or a note's next line continues.
    #[derive(PartialEq)]
    enum Last {
        Entry,
        Note,
        Other,
    }
    let mut last = Last::Other;
    for line in lines {
        if line.trim().is_empty() {
            last = Last::Other;
            continue;
        }
        if !line.starts_with(' ') {
            sections.push(Section {
                title: line.trim_end_matches(':'),
                entries: Vec::new(),
                notes: Vec::new(),
            });
            last = Last::Other;
            continue;
        }
        // Before the first section, only the title's second line.
        let Some(section) = sections.last_mut() else {
            continue;
        };
        let text = line.trim();
        let deeper = line.starts_with("     ");
        if deeper && last == Last::Entry {
            if let Some(entry) = section.entries.last_mut() {
                entry.about.push(' ');
                entry.about.push_str(text);
            }
        } else if (deeper || !text.starts_with('-') && section.title != "USAGE")
            && last == Last::Note
        {
            if let Some(note) = section.notes.last_mut() {
                note.push(' ');
                note.push_str(text);
            }
        } else if section.title == "MODES" {
            let (name, about) = text.split_once(' ').unwrap_or((text, ""));
            section.entries.push(Entry {
                options: vec![(name, None)],
                about: about.trim().to_string(),
            });
            last = Last::Entry;
        } else if text.starts_with('-') {
            section.entries.push(entry(text));
            last = Last::Entry;
        } else {
            // A synopsis under USAGE, each its own; elsewhere a note.
            section.notes.push(text.to_string());
            last = Last::Note;
        }
    }
    // The help pads to line up its columns; read back, a space is a space.
    let words = |text: &mut String| *text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for section in &mut sections {
        section.entries.iter_mut().for_each(|e| words(&mut e.about));
        section.notes.iter_mut().for_each(words);
    }
    (title, sections)
}

/// An entry's first line, without its indent: its options, then what it
/// does (after two spaces, or after the first word that is neither an
/// option nor a value's name in capitals).
fn entry(mut rest: &str) -> Entry<'_> {
    let mut options: Vec<(&str, Option<&str>)> = Vec::new();
    loop {
        let (word, after) = rest.split_once(' ').unwrap_or((rest, ""));
        if word.starts_with('-') {
            options.push((word.trim_end_matches(','), None));
        } else if word.starts_with(|c: char| c.is_ascii_uppercase())
            && options.last().is_some_and(|(_, value)| value.is_none())
        {
            if let Some((_, value)) = options.last_mut() {
                *value = Some(word);
            }
        } else {
            break;
        }
        rest = after;
        if rest.is_empty() || rest.starts_with(' ') {
            break;
        }
    }
    Entry {
        options,
        about: rest.trim().to_string(),
    }
}

/// One command's options as its own help lists them: each option's name,
/// its value's name if it takes one, and what it does.
fn command_options(command: Command) -> Vec<(String, Option<String>, String)> {
    let help = usage(Some(command));
    let (_, sections) = read(&help);
    let mut out = Vec::new();
    for section in sections.iter().filter(|s| s.title != "USAGE") {
        for e in &section.entries {
            for (name, value) in &e.options {
                out.push((name.to_string(), value.map(String::from), e.about.clone()));
            }
        }
    }
    out
}

/// The modes and their summaries, from the whole help's MODES.
fn modes() -> Vec<(&'static str, String)> {
    let help = usage(None);
    let (_, sections) = read(&help);
    Command::ALL
        .iter()
        .map(|c| {
            let about = sections
                .iter()
                .filter(|s| s.title == "MODES")
                .flat_map(|s| &s.entries)
                .find(|e| e.options[0].0 == c.name())
                .map(|e| e.about.clone())
                .unwrap_or_default();
            (c.name(), about)
        })
        .collect()
}

/// The options every command takes and that take no value (`--help`,
/// `--version`): the ones that need no mode before them. With what each
/// does.
fn everywhere() -> Vec<(String, String)> {
    let mut common: Option<Vec<(String, String)>> = None;
    for c in Command::ALL {
        let here: Vec<(String, String)> = command_options(c)
            .into_iter()
            .filter(|(_, value, _)| value.is_none())
            .map(|(name, _, about)| (name, about))
            .collect();
        common = Some(match common {
            None => here,
            Some(so_far) => so_far.into_iter().filter(|o| here.contains(o)).collect(),
        });
    }
    common.unwrap_or_default()
}

/// The names of [`everywhere`]'s options, between spaces.
fn everywhere_names() -> String {
    let names: Vec<String> = everywhere().into_iter().map(|(n, _)| n).collect();
    names.join(" ")
}

/// What kind of value an option takes, from its value's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    File,
    Directory,
    Level,
    /// Anything else: typed by the user, nothing to offer.
    Typed,
}

fn kind(value: &str) -> Value {
    match value {
        "FILE" => Value::File,
        "DIR" => Value::Directory,
        "LEVEL" => Value::Level,
        _ => Value::Typed,
    }
}

/// Every option that takes a value, once, with its kind.
fn valued() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for c in Command::ALL {
        for (name, value, _) in command_options(c) {
            if let Some(v) = value {
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, kind(&v)));
                }
            }
        }
    }
    out
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> String {
    match shell {
        Shell::Bash => bash(),
        Shell::Zsh => zsh(),
        Shell::Fish => fish(),
    }
}

/// The line each script starts with, after the shell's own first line.
fn generated_by(shell: &str) -> String {
    format!(
        "# {shell} completion for monoloop, generated by `monoloop --completions {shell}`\n\
         # from the help of {}.\n",
        crate::build::describe()
    )
}

fn bash() -> String {
    let mut out = generated_by("bash");
    let first: Vec<&str> = modes().into_iter().map(|(m, _)| m).collect();
    let by_kind = |k: Value| {
        valued()
            .into_iter()
            .filter(|(_, v)| *v == k)
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
            .join("|")
    };
    let (files, dirs, levels, typed) = (
        by_kind(Value::File),
        by_kind(Value::Directory),
        by_kind(Value::Level),
        by_kind(Value::Typed),
    );
    let _ = writeln!(
        out,
        "_monoloop() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W '{} {}' -- \"$cur\"))
        return
    fi
    case $prev in",
        first.join(" "),
        everywhere_names()
    );
    for (pattern, action) in [
        (
            files,
            "compopt -o filenames; COMPREPLY=($(compgen -f -- \"$cur\")); ",
        ),
        (
            dirs,
            "compopt -o filenames; COMPREPLY=($(compgen -d -- \"$cur\")); ",
        ),
        (
            levels,
            &format!(
                "COMPREPLY=($(compgen -W '{}' -- \"$cur\")); ",
                LEVELS.join(" ")
            ),
        ),
        // A value to type: nothing to offer, and no option either.
        (typed, ""),
    ] {
        if !pattern.is_empty() {
            let _ = writeln!(out, "        {pattern}) {action}return ;;");
        }
    }
    out.push_str("    esac\n    local options\n    case ${COMP_WORDS[1]} in\n");
    for c in Command::ALL {
        let names: Vec<String> = command_options(c).into_iter().map(|(n, _, _)| n).collect();
        let _ = writeln!(
            out,
            "        {}) options='{}' ;;",
            c.name(),
            names.join(" ")
        );
    }
    out.push_str(
        "    esac
    COMPREPLY=($(compgen -W \"$options\" -- \"$cur\"))
}
complete -F _monoloop monoloop
",
    );
    out
}

/// `text` inside single quotes, for zsh or fish.
fn quoted(text: &str, fish: bool) -> String {
    if fish {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// What an option does, short enough for a completion menu: its
/// description up to a stated default or the first `;`.
fn short(about: &str) -> &str {
    let end = [about.find(" [default:"), about.find(';')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(about.len());
    about[..end].trim()
}

fn zsh() -> String {
    let mut out = format!("#compdef monoloop\n{}", generated_by("zsh"));
    out.push_str("_monoloop() {\n    if (( CURRENT == 2 )); then\n        local -a modes=(\n");
    for (mode, about) in modes() {
        let _ = writeln!(
            out,
            "            {}",
            quoted(&format!("{mode}:{about}"), false)
        );
    }
    let _ = writeln!(
        out,
        "        )
        _describe -t modes 'monoloop mode' modes
        compadd -- {}
        return
    fi
    local -a spec
    case $words[2] in",
        everywhere_names()
    );
    // `_arguments` takes `--name[what it does]:value's name:action`; a
    // repeatable option starts with `*`.
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('[', "\\[")
            .replace(']', "\\]")
            .replace(':', "\\:")
    };
    for c in Command::ALL {
        let _ = writeln!(out, "        ({}) spec=(", c.name());
        for (name, value, about) in command_options(c) {
            let repeat = if about.contains("(repeat") { "*" } else { "" };
            let mut spec = format!("{repeat}{name}[{}]", escape(short(&about)));
            if let Some(v) = value {
                let action = match kind(&v) {
                    Value::File => "_files".to_string(),
                    Value::Directory => "_files -/".to_string(),
                    Value::Level => format!("({})", LEVELS.join(" ")),
                    Value::Typed => " ".to_string(),
                };
                let _ = write!(spec, ":{}:{action}", escape(&v));
            }
            let _ = writeln!(out, "            {}", quoted(&spec, false));
        }
        for (i, arg) in positionals(c).iter().enumerate() {
            let _ = writeln!(
                out,
                "            {}",
                quoted(&format!("{}:{}: ", i + 1, escape(arg)), false)
            );
        }
        out.push_str("        ) ;;\n");
    }
    out.push_str(
        "    esac
    # The mode is the command _arguments completes for.
    shift words
    (( CURRENT-- ))
    _arguments -S $spec
}
_monoloop \"$@\"
",
    );
    out
}

/// The arguments `command`'s synopsis names that are not options (the
/// client's `HOST:PORT`).
fn positionals(command: Command) -> Vec<String> {
    let help = usage(Some(command));
    let (_, sections) = read(&help);
    let Some(synopsis) = sections
        .iter()
        .find(|s| s.title == "USAGE")
        .and_then(|s| s.notes.first())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut words = synopsis.split_whitespace().skip(2);
    let mut optional = false;
    while let Some(word) = words.next() {
        if optional || word.starts_with('[') {
            // Inside `[...]`, until the word that closes it.
            optional = !word.ends_with(']');
        } else if word.starts_with('-') {
            // Its value's name follows.
            words.next();
        } else {
            out.push(word.to_string());
        }
    }
    out
}

fn fish() -> String {
    let mut out = generated_by("fish");
    // No file names, but for the options that take one.
    let _ = writeln!(out, "complete -c monoloop -f");
    for (mode, about) in modes() {
        let _ = writeln!(
            out,
            "complete -c monoloop -n __fish_use_subcommand -a {mode} -d {}",
            quoted(&about, true)
        );
    }
    for (name, about) in everywhere() {
        let _ = writeln!(
            out,
            "complete -c monoloop -n __fish_use_subcommand {} -d {}",
            fish_name(&name),
            quoted(short(&about), true)
        );
    }
    for c in Command::ALL {
        let when = quoted(&format!("__fish_seen_subcommand_from {}", c.name()), true);
        for (name, value, about) in command_options(c) {
            // -r: takes a value; -x: one that is not a file name.
            let value = match value.as_deref().map(kind) {
                None => String::new(),
                Some(Value::File) => " -r -F".into(),
                Some(Value::Directory) => " -x -a '(__fish_complete_directories)'".into(),
                Some(Value::Level) => format!(" -x -a {}", quoted(&LEVELS.join(" "), true)),
                Some(Value::Typed) => " -x".into(),
            };
            let _ = writeln!(
                out,
                "complete -c monoloop -n {when} {}{value} -d {}",
                fish_name(&name),
                quoted(short(&about), true)
            );
        }
    }
    out
}

/// An option as fish's `complete` names it: `-l name` or `-s h`.
fn fish_name(option: &str) -> String {
    match option.strip_prefix("--") {
        Some(long) => format!("-l {long}"),
        None => format!("-s {}", option.trim_start_matches('-')),
    }
}

/// `text` for roff: backslashes and hyphens escaped (a hyphen in an option
/// is a minus sign, which a reader can copy), and a line that would start
/// with a control character kept as text.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The man page, in roff (`man -l` reads it; `man monoloop` once
/// installed where `manpath` looks).
pub fn man_page() -> String {
    let help = usage(None);
    let (title, sections) = read(&help);
    let name = title.strip_prefix("monoloop: ").unwrap_or(title);
    let mut out = format!(
        ".TH MONOLOOP 1 \"\" \"monoloop {}\" \"User Commands\"\n\
         .nh\n.ad l\n\
         .SH NAME\nmonoloop \\- {}\n",
        crate::build::version(),
        roff(name)
    );
    for section in &sections {
        let heading = if section.title == "USAGE" {
            "SYNOPSIS"
        } else {
            section.title
        };
        let _ = writeln!(out, ".SH \"{heading}\"");
        if section.title == "USAGE" {
            out.push_str(".nf\n");
            for note in &section.notes {
                let _ = writeln!(out, "{}", roff(note));
            }
            out.push_str(".fi\n");
            continue;
        }
        for e in &section.entries {
            let tag: Vec<String> = e
                .options
                .iter()
                .map(|(name, value)| match value {
                    Some(v) => format!("\\fB{}\\fR \\fI{}\\fR", roff(name), roff(v)),
                    None => format!("\\fB{}\\fR", roff(name)),
                })
                .collect();
            // `-h, --help` are two names for one option; `--cert FILE
            // --key FILE` two options given together.
            let aliases = e.options.iter().all(|(_, value)| value.is_none());
            let tag = tag.join(if aliases { ", " } else { " " });
            let _ = writeln!(out, ".TP\n{tag}\n{}", roff(&e.about));
        }
        for note in &section.notes {
            let _ = writeln!(out, ".PP\n{}", roff(note));
        }
    }
    out.push_str(
        ".SH \"SEE ALSO\"\n\
         \\fBmonoloop\\fR \\fIMODE\\fR \\fB\\-\\-help\\fR lists what one mode takes.\n\
         .PP\n\
         \\fBmonoloop \\-\\-completions\\fR \\fBbash\\fR|\\fBzsh\\fR|\\fBfish\\fR \
         prints a completion script for that shell, and \\fBmonoloop \\-\\-man\\fR \
         this page, both from the help above.\n\
         .PP\n\
         README.md, docs/protocols.md and docs/scaling.md, in monoloop's source, \
         say more.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::config::{parse, Parsed};

    #[test]
    fn an_entry_is_its_options_and_their_values_then_what_it_does() {
        let e = entry("--cert FILE --key FILE present a client certificate");
        assert_eq!(
            e.options,
            [("--cert", Some("FILE")), ("--key", Some("FILE"))]
        );
        assert_eq!(e.about, "present a client certificate");
        let e = entry("-h, --help             print this help");
        assert_eq!(e.options, [("-h", None), ("--help", None)]);
        assert_eq!(e.about, "print this help");
        // Two spaces end the options even before a word in capitals.
        let e = entry("--tls-cert FILE        PEM certificate chain; turns TLS on");
        assert_eq!(e.options, [("--tls-cert", Some("FILE"))]);
        assert_eq!(e.about, "PEM certificate chain; turns TLS on");
        let e = entry("--request-timeout SECS close a client");
        assert_eq!(e.options, [("--request-timeout", Some("SECS"))]);
        assert_eq!(e.about, "close a client");
    }

    #[test]
    fn the_help_reads_back_into_its_sections() {
        let help = usage(None);
        let (title, sections) = read(&help);
        assert!(title.starts_with("monoloop: "), "{title}");
        let titles: Vec<&str> = sections.iter().map(|s| s.title).collect();
        assert_eq!(titles[..2], ["USAGE", "MODES"]);
        assert_eq!(sections[0].notes.len(), Command::ALL.len());
        let mut modes = modes();
        let names: Vec<&str> = modes.iter().map(|(m, _)| *m).collect();
        assert_eq!(names, ["echo", "broadcast", "chat", "file", "client"]);
        let (_, client) = modes.pop().expect("the client, last");
        assert_eq!(
            client,
            "connect: standard input to the server, the server to standard output (like nc)"
        );
        // A description over several lines is one, its padding gone.
        let listen = command_options(Command::Echo)
            .into_iter()
            .find(|(n, _, _)| n == "--listen")
            .expect("--listen");
        assert_eq!(listen.1.as_deref(), Some("HOST:PORT"));
        assert!(
            listen
                .2
                .starts_with("address and port to listen on; repeat it for more (127")
                && listen
                    .2
                    .ends_with(" on its first address [default: 127.0.0.1:8080]"),
            "{}",
            listen.2
        );
        assert_eq!(positionals(Command::Client), ["HOST:PORT"]);
        assert!(positionals(Command::File).is_empty());
        let everywhere: Vec<String> = everywhere().into_iter().map(|(n, _)| n).collect();
        assert_eq!(everywhere, ["-h", "--help", "-V", "--version"]);
    }

    #[test]
    fn each_commands_options_are_the_ones_options_rs_gives_it() {
        use crate::config::options;
        for c in Command::ALL {
            let read = command_options(c);
            let mut names: Vec<&str> = read.iter().map(|(n, _, _)| n.as_str()).collect();
            names.sort_unstable();
            let mut table: Vec<&str> = options::OPTIONS
                .iter()
                .map(|(o, _)| *o)
                .filter(|o| options::listed(c, o))
                .collect();
            table.sort_unstable();
            assert_eq!(names, table, "{}", c.name());
            // And a value after every option but the flags.
            for (name, value, _) in &read {
                assert_eq!(
                    value.is_none(),
                    options::FLAGS.contains(&name.as_str()),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn the_levels_offered_are_the_ones_the_parser_takes() {
        for level in LEVELS {
            let args = ["echo", "--log-level", level].map(OsString::from).to_vec();
            assert!(matches!(parse(args), Ok(Parsed::Run(_))), "{level}");
        }
    }

    #[test]
    fn completions_and_man_are_asked_for_by_hidden_flags() {
        let ask = |args: &[&str]| parse(args.iter().map(OsString::from).collect());
        assert!(matches!(ask(&["--man"]), Ok(Parsed::Man)));
        for (name, shell) in [
            ("bash", Shell::Bash),
            ("zsh", Shell::Zsh),
            ("fish", Shell::Fish),
        ] {
            assert!(
                matches!(ask(&["--completions", name]), Ok(Parsed::Completions(s)) if s == shell)
            );
        }
        let e = ask(&["--completions", "tcsh"]).unwrap_err();
        assert_eq!(
            e.problem,
            "invalid value 'tcsh' for --completions: expected bash, zsh or fish"
        );
        // Not options of a run: the help does not list them.
        assert!(!usage(None).contains("--man") && !usage(None).contains("--completions"));
    }
}
