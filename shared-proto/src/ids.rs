//! The rule every record id of ours follows (schools, sections, students, teachers, usernames):
//! checked once here, so the JSON API, roster uploads and the box's roster import accept the same
//! ids.
//!
//! Ids travel in URL paths, log lines, CSV files and sync events, and the stores index them; the
//! rule keeps them short and free of characters that need quoting anywhere.

/// The longest id, in bytes (every allowed character is one byte).
pub const MAX_ID_LEN: usize = 128;

/// The rule in words, for messages that say what to change.
pub const ID_RULE: &str = "1-128 characters of letters, digits and - _ . : @";

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("it is empty")]
    Empty,
    #[error("it is {len} characters long")]
    TooLong { len: usize },
    #[error("it contains {found:?}")]
    Character { found: char },
}

/// Checks that `id` is 1-[`MAX_ID_LEN`] ASCII letters, digits and `- _ . : @`.
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(found) = id.chars().find(|&c| !is_id_char(c)) {
        return Err(IdError::Character { found });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: id.len() });
    }
    Ok(())
}

/// `value` as a message may echo it: cut after 60 characters. A 2.5 MB upload can hold a
/// 2.5 MB "id", and messages are read by people.
pub fn shown(value: &str) -> String {
    const MAX_SHOWN_CHARS: usize = 60;
    match value.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_plain_ascii() {
        for good in ["s1", "a-b_c.d:e@f", &"x".repeat(MAX_ID_LEN)] {
            assert_eq!(check_id(good), Ok(()), "{good}");
        }
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(
            check_id(&"x".repeat(5000)),
            Err(IdError::TooLong { len: 5000 })
        );
        for (bad, found) in [("a/b", '/'), ("a b", ' '), ("café", 'é'), ("a\u{0}", '\0')] {
            assert_eq!(check_id(bad), Err(IdError::Character { found }), "{bad}");
        }
        assert_eq!(check_id("a/b").unwrap_err().to_string(), "it contains '/'");
    }
}
