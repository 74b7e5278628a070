//! Kubernetes label selectors as users type them (`app=web,tier!=cache,env in (prod,stage),!skip`)
//! and matching them against a PVC's labels. Requirements are ANDed.

use std::collections::BTreeMap;
use std::fmt;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    text: String,
    requirements: Vec<Requirement>,
}

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid label selector {text:?}: {reason} (examples: `app=web`, `tier!=cache`, \
     `env in (prod,stage)`, `backup`, `!skip`; requirements separated by commas)"
)]
pub struct SelectorError {
    pub text: String,
    pub reason: String,
}

fn valid_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok = prefix.is_empty() || crate::domain::names::is_dns1123_subdomain(prefix);
    name_ok && prefix_ok && (key.contains('/') != prefix.is_empty())
}

fn valid_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric())
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced `)`".to_owned());
                }
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `(`".to_owned());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let part = part.trim();
    if part.is_empty() {
        return Err("an empty requirement (two commas in a row?)".to_owned());
    }
    let key_checked = |key: &str| -> Result<String, String> {
        let key = key.trim();
        if valid_key(key) {
            Ok(key.to_owned())
        } else {
            Err(format!("{key:?} is not a label key"))
        }
    };
    let value_checked = |value: &str| -> Result<String, String> {
        let value = value.trim();
        if valid_value(value) {
            Ok(value.to_owned())
        } else {
            Err(format!("{value:?} is not a label value"))
        }
    };
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_checked(key)?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key_checked(key)?,
            value_checked(value)?,
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(
            key_checked(key)?,
            value_checked(value)?,
        ));
    }
    for (word, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, list)) = part.split_once(word) {
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| format!("expected a list in parentheses after `{}`", word.trim()))?;
            let values = inner
                .split(',')
                .map(value_checked)
                .collect::<Result<Vec<_>, _>>()?;
            let key = key_checked(key)?;
            return Ok(if negated {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    Ok(Requirement::Exists(key_checked(part)?))
}

impl LabelSelector {
    /// Parses a selector; blank text is the empty selector.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::default());
        }
        let refuse = |reason: String| SelectorError {
            text: text.to_owned(),
            reason,
        };
        let requirements = split_top_level(text)
            .map_err(refuse)?
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<Vec<_>, _>>()
            .map_err(refuse)?;
        Ok(Self {
            text: text.to_owned(),
            requirements,
        })
    }

    /// Whether the selector has no requirement.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matching_table() {
        let web = labels(&[("app", "web"), ("env", "prod"), ("example.com/team", "a")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app=web,env=prod", true),
            ("app=web,env=stage", false),
            ("env in (prod, stage)", true),
            ("env notin (prod)", false),
            ("missing notin (prod)", true),
            ("app", true),
            ("!app", false),
            ("!skip", true),
            ("example.com/team=a", true),
            ("app=web, env in (dev,prod), !skip", true),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).unwrap();
            assert_eq!(selector.matches(&web), expected, "{text}");
        }
    }

    #[test]
    fn refusals_say_why() {
        for bad in [
            "app=web,",
            "=web",
            "app=web!",
            "env in prod",
            "env in (a",
            "a b",
            "x/y/z=1",
        ] {
            let error = LabelSelector::parse(bad).unwrap_err();
            assert!(error.to_string().contains("examples"), "{bad}: {error}");
        }
        assert!(LabelSelector::parse("  ").unwrap().is_empty());
        assert_eq!(
            LabelSelector::parse(" app=web ").unwrap().to_string(),
            "app=web"
        );
    }
}
