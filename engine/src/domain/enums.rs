//! One way to give an enum a fixed text form (stored in SQLite, serialised to JSON, shown to
//! people) and to read it back: the [`text_enum!`](crate::text_enum) macro, and the error of a text
//! that names no variant ([`UnknownValue`]).

use std::fmt;

/// A text that names no variant of a [`text_enum!`](crate::text_enum) enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was being read (`run status`, `role`, …).
    pub what: &'static str,
    /// The text that was given.
    pub value: String,
    /// Every accepted text.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}: expected one of {}",
            self.what,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

/// Declares a fieldless enum with a text form per variant: derives `Debug`, `Clone`, `Copy`,
/// `PartialEq`, `Eq`, `Hash` and serde (as the text), and implements `ALL`, `as_str`, `Display` and
/// `FromStr` (error: [`UnknownValue`]).
///
/// ```
/// nkvm_engine::text_enum! {
///     /// A colour.
///     pub enum Colour("colour") {
///         Red => "red",
///         DarkBlue => "dark_blue",
///     }
/// }
/// assert_eq!(Colour::DarkBlue.as_str(), "dark_blue");
/// assert_eq!("red".parse::<Colour>(), Ok(Colour::Red));
/// assert!("green".parse::<Colour>().is_err());
/// ```
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The text form: stored, serialised and shown.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::domain::enums::UnknownValue;

            fn from_str(text: &str) -> ::core::result::Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| $crate::domain::enums::UnknownValue {
                        what: $what,
                        value: text.to_owned(),
                        expected: &[$($text),+],
                    })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::text_enum! {
        /// A test enum.
        enum Mode("mode") {
            Fast => "fast",
            /// Documented variant.
            VerySlow => "very_slow",
        }
    }

    #[test]
    fn text_round_trips_through_every_form() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(*mode));
            assert_eq!(mode.to_string(), mode.as_str());
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                serde_json::Value::String(mode.as_str().to_owned())
            );
        }
        assert_eq!(Mode::ALL, &[Mode::Fast, Mode::VerySlow]);
    }

    #[test]
    fn unknown_text_names_what_is_accepted() {
        let err = "slow".parse::<Mode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown mode \"slow\": expected one of fast, very_slow"
        );
        assert!(serde_json::from_str::<Mode>("\"slow\"").is_err());
    }
}
