//! The naming rule shared by pipelines, stages, actions and artifacts.

/// Longest accepted name, so names fit in a DNS label and a container name.
pub const MAX_NAME_LEN: usize = 63;

/// Checks the name rule: lowercase ASCII letters, digits and `-`, starting
/// with a letter, at most [`MAX_NAME_LEN`] characters.
///
/// The error says what is wrong, without repeating the name, e.g.
/// "must start with a lowercase letter (a-z)".
pub fn validate_name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("must not be empty".to_string());
    };
    if !first.is_ascii_lowercase() {
        return Err("must start with a lowercase letter (a-z)".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains {bad:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_NAME_LEN} characters long (it has {})",
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for name in ["a", "hello", "build-2", "x-y-z", &"a".repeat(MAX_NAME_LEN)] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_invalid_names_with_reason() {
        assert_eq!(validate_name(""), Err("must not be empty".to_string()));
        assert_eq!(
            validate_name("Build"),
            Err("must start with a lowercase letter (a-z)".to_string())
        );
        assert_eq!(
            validate_name("1st"),
            Err("must start with a lowercase letter (a-z)".to_string())
        );
        assert_eq!(
            validate_name("-x"),
            Err("must start with a lowercase letter (a-z)".to_string())
        );
        assert_eq!(
            validate_name("my_app"),
            Err("contains '_'; only lowercase letters, digits and '-' are allowed".to_string())
        );
        assert_eq!(
            validate_name("caf\u{e9}"),
            Err(
                "contains '\u{e9}'; only lowercase letters, digits and '-' are allowed".to_string()
            )
        );
        assert_eq!(
            validate_name(&"a".repeat(64)),
            Err("must be at most 63 characters long (it has 64)".to_string())
        );
    }
}
