//! DynamoDB numbers are decimal text of up to 38 significant digits with exponents from -130 to
//! +125. They never go through `f64` here: we check the text and, for plain JSON, rewrite only the
//! spellings that JSON forbids (`+1`, `.5`, `5.`, `007`) without touching a single digit's value.

use std::borrow::Cow;

/// An `N` value that is not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a DynamoDB number (expected decimal digits with an optional sign, point and exponent)")]
pub struct NumberError(pub String);

/// The number as a JSON number literal with exactly the same value, borrowing when the text is
/// already valid JSON (the usual case: DynamoDB returns canonical numbers).
pub fn json_number(text: &str) -> Result<Cow<'_, str>, NumberError> {
    let err = || NumberError(text.to_string());
    let bytes = text.as_bytes();
    let (sign, rest) = match bytes.first() {
        Some(b'-') => ("-", &text[1..]),
        Some(b'+') => ("", &text[1..]),
        _ => ("", text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part)
        || !frac_part.is_none_or(all_digits)
        || int_part.len() + frac_part.map_or(0, str::len) == 0
    {
        return Err(err());
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !all_digits(digits) {
            return Err(err());
        }
    }
    let int_canonical = int_part.trim_start_matches('0');
    let needs_rewrite = bytes.first() == Some(&b'+')
        || int_part.is_empty()
        || (int_part.len() > 1 && int_part.starts_with('0'))
        || frac_part == Some("");
    if !needs_rewrite {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len() + 1);
    out.push_str(sign);
    out.push_str(if int_canonical.is_empty() {
        "0"
    } else {
        int_canonical
    });
    if let Some(frac) = frac_part.filter(|f| !f.is_empty()) {
        out.push('.');
        out.push_str(frac);
    }
    if let Some(exp) = exponent {
        out.push('e');
        out.push_str(exp);
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_numbers_are_borrowed_unchanged() {
        for n in [
            "0",
            "-0",
            "42",
            "-3.75",
            "12345678901234567890123456789012345678",
            "1E-130",
            "9.9999999999999999999999999999999999999E+125",
            "1e5",
        ] {
            assert!(
                matches!(json_number(n), Ok(Cow::Borrowed(s)) if s == n),
                "{n}"
            );
        }
    }

    #[test]
    fn json_forbidden_spellings_are_rewritten_to_the_same_value() {
        for (given, want) in [
            ("+1", "1"),
            (".5", "0.5"),
            ("-.5", "-0.5"),
            ("5.", "5"),
            ("007", "7"),
            ("-00.10", "-0.10"),
            ("000", "0"),
            ("+1.E+3", "1e+3"),
        ] {
            assert_eq!(json_number(given).unwrap(), want, "{given}");
            let parsed: serde_json::Value = serde_json::from_str(want).unwrap();
            assert!(parsed.is_number(), "{want}");
        }
    }

    #[test]
    fn non_numbers_are_errors() {
        for bad in [
            "", "-", ".", "abc", "1e", "1e+", "1.2.3", "0x10", "NaN", "Infinity", " 1", "1 ",
            "--1", "1e1.5",
        ] {
            assert!(json_number(bad).is_err(), "{bad:?} accepted");
        }
    }
}
