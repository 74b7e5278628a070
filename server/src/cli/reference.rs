//! The command-line reference (`docs/reference/cli.md`) rendered from the clap definitions, so
//! that the documentation of every command, option, environment variable and default cannot drift
//! from the code: a test compares the file with what the code renders.

use std::fmt::Write as _;

use clap::{Arg, Command};

/// The Markdown reference of `command` and its subcommands.
pub fn markdown(command: &Command) -> String {
    let mut out = String::new();
    let name = command.get_name();
    let _ = writeln!(out, "# `{name}` command-line reference\n");
    out.push_str(
        "Generated from the command definitions in `server/src/cli/`; a test fails when this \
         file and the code disagree (`NKVM_UPDATE_DOCS=1 cargo test -p nkvm-server reference` \
         rewrites it). Every option can also be set through the environment variable named \
         beside it; the command line wins.\n\n",
    );
    if let Some(about) = command.get_about() {
        let _ = writeln!(out, "{about}\n");
    }
    let globals: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .collect();
    out.push_str("## Global options\n\nAccepted before or after the subcommand.\n\n");
    options_table(&mut out, &globals);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand(&mut out, name, sub);
    }
    out
}

fn subcommand(out: &mut String, parent: &str, command: &Command) {
    let path = format!("{parent} {}", command.get_name());
    let _ = writeln!(out, "## `{path}`\n");
    if let Some(about) = command.get_long_about().or_else(|| command.get_about()) {
        let _ = writeln!(out, "{about}\n");
    }
    let positionals: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| a.is_positional() && !a.is_hide_set())
        .collect();
    let options: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_global_set() && !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    let mut usage = path.clone();
    if !options.is_empty() {
        usage.push_str(" [OPTIONS]");
    }
    for arg in &positionals {
        let value = value_name(arg);
        let repeat = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            "..."
        } else {
            ""
        };
        if arg.is_required_set() {
            let _ = write!(usage, " {value}{repeat}");
        } else {
            let _ = write!(usage, " [{value}]{repeat}");
        }
    }
    let _ = writeln!(out, "```\n{usage}\n```\n");
    for arg in &positionals {
        let _ = writeln!(out, "- `{}`: {}", value_name(arg), help(arg));
    }
    if !positionals.is_empty() {
        out.push('\n');
    }
    if !options.is_empty() {
        options_table(out, &options);
    }
    if let Some(examples) = command.get_after_help() {
        let _ = writeln!(out, "```\n{examples}\n```\n");
    }
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand(out, &path, sub);
    }
}

fn options_table(out: &mut String, args: &[&Arg]) {
    out.push_str("| option | environment | default | meaning |\n| --- | --- | --- | --- |\n");
    for arg in args {
        let mut flag = String::new();
        if let Some(long) = arg.get_long() {
            let _ = write!(flag, "--{long}");
        }
        if let Some(short) = arg.get_short() {
            let _ = write!(flag, ", -{short}");
        }
        if arg.get_action().takes_values() {
            let _ = write!(flag, " {}", value_name(arg));
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty() && v != "false")
            .collect();
        let default = if defaults.is_empty() {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut meaning = help(arg);
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !choices.is_empty() && arg.get_action().takes_values() {
            let _ = write!(meaning, " (one of {})", choices.join(", "));
        }
        let _ = writeln!(
            out,
            "| `{flag}` | {env} | {default} | {} |",
            meaning.replace('|', "\\|")
        );
    }
    out.push('\n');
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), ToString::to_string)
}

fn help(arg: &Arg) -> String {
    arg.get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| {
            h.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::cli::Cli;

    const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/reference/cli.md");

    #[test]
    fn the_docs_reference_matches_the_code() {
        let rendered = markdown(&Cli::command());
        if std::env::var_os("NKVM_UPDATE_DOCS").is_some() {
            std::fs::write(REFERENCE, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(REFERENCE).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/reference/cli.md is out of date: run `NKVM_UPDATE_DOCS=1 cargo test -p \
             nkvm-server reference` and commit it"
        );
    }

    #[test]
    fn every_option_has_help_and_every_subcommand_an_about() {
        let command = Cli::command();
        for sub in command.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no about", sub.get_name());
            for arg in sub.get_arguments() {
                if matches!(arg.get_id().as_str(), "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} {} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
