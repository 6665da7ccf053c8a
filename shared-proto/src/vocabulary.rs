//! The one word each value of our small enums is written as: in both server stores, the box's
//! store, the wire (serde, held to it by a test), the CLI, the teacher's screen and the API
//! document. `vocabulary!` writes `as_str`, `FromStr`, `Display`, the list of words and (with the
//! `openapi` feature) the OpenAPI schema from one table per enum, so a word is spelled once.

/// A word that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}; expected one of: {}", expected.join(", "))]
pub struct UnknownWord {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

/// `vocabulary!(Type, "what it is", { Variant => "word", ... })`: `Type::ALL`, `Type::WORDS`,
/// `as_str`, `FromStr` (an `UnknownWord` naming the words it takes), `Display` and, with the
/// `openapi` feature, `utoipa::ToSchema` (a string schema whose `enum` is `WORDS`).
#[macro_export]
macro_rules! vocabulary {
    ($ty:ty, $what:literal, { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// The word of each value, in the order of `ALL`.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::vocabulary::UnknownWord;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($word => Ok(Self::$variant),)+
                    _ => Err($crate::vocabulary::UnknownWord {
                        what: $what,
                        value: text.to_owned(),
                        expected: Self::WORDS,
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::__vocabulary_schema!($ty, $what);
    };
}

/// utoipa, for the schemas `vocabulary!` writes in crates that need not depend on it themselves.
#[cfg(feature = "openapi")]
#[doc(hidden)]
pub use utoipa as __utoipa;

// The feature is decided here, in shared-proto, not in the crate that calls `vocabulary!`: a
// `cfg` inside the exported macro would test the caller's features instead.
#[cfg(feature = "openapi")]
#[doc(hidden)]
#[macro_export]
macro_rules! __vocabulary_schema {
    ($ty:ty, $what:literal) => {
        impl $crate::vocabulary::__utoipa::PartialSchema for $ty {
            fn schema() -> $crate::vocabulary::__utoipa::openapi::RefOr<
                $crate::vocabulary::__utoipa::openapi::schema::Schema,
            > {
                use $crate::vocabulary::__utoipa::openapi::schema::{ObjectBuilder, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($what))
                    .enum_values(Some(Self::WORDS.iter().copied()))
                    .into()
            }
        }

        impl $crate::vocabulary::__utoipa::ToSchema for $ty {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($ty))
            }
        }
    };
}

#[cfg(not(feature = "openapi"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __vocabulary_schema {
    ($ty:ty, $what:literal) => {};
}

#[cfg(test)]
mod tests {
    use crate::sync::{Consent, EnrolmentRole, MarkSource, MarkStatus};

    /// The wire (serde) and every store write the same word.
    fn serde_agrees<T>(all: &[T])
    where
        T: Copy + serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        T: std::str::FromStr + std::fmt::Display,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for &value in all {
            let word = value.to_string();
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{word}\"")
            );
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{word}\"")).unwrap(),
                value
            );
            assert_eq!(word.parse::<T>().unwrap(), value);
        }
    }

    #[test]
    fn every_word_is_the_wire_word_and_parses_back() {
        serde_agrees(MarkStatus::ALL);
        serde_agrees(MarkSource::ALL);
        serde_agrees(Consent::ALL);
        serde_agrees(EnrolmentRole::ALL);
    }

    #[test]
    fn an_unknown_word_says_what_is_expected() {
        let err = "maybe".parse::<Consent>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"maybe\" is not a consent; expected one of: none, granted, withdrawn"
        );
    }
}
