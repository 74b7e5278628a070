//! Kubernetes resource quantities (`1Gi`, `500M`, `1.5e3`, `100m`) converted to whole bytes.

/// Parses a Kubernetes quantity into bytes, rounding fractions up as `Quantity.Value()` does.
///
/// Accepts an optional `+`, digits with an optional decimal point, then one of: nothing, a binary
/// suffix (`Ki Mi Gi Ti Pi Ei`), a decimal suffix (`m k M G T P E`) or a decimal exponent
/// (`e3`, `E-2`, `e+6`). Returns `None` for malformed, negative or larger-than-`u64` quantities.
pub fn parse_bytes(quantity: &str) -> Option<u64> {
    let text = quantity.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }

    // mantissa = digits without the point; value = mantissa / 10^fraction_len * scale.
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
    }
    let fraction_len = i32::try_from(fraction.len()).ok()?;

    let (binary_shift, decimal_exponent) = scale(suffix)?;
    let decimal_exponent = decimal_exponent.checked_sub(fraction_len)?;

    let mut numerator = mantissa.checked_mul(1u128.checked_shl(binary_shift)?)?;
    let mut denominator: u128 = 1;
    if decimal_exponent >= 0 {
        numerator = numerator.checked_mul(10u128.checked_pow(decimal_exponent.unsigned_abs())?)?;
    } else if numerator != 0 {
        denominator = 10u128.checked_pow(decimal_exponent.unsigned_abs())?;
    }
    u64::try_from(numerator.div_ceil(denominator)).ok()
}

/// `(binary shift, decimal exponent)` of a quantity suffix.
fn scale(suffix: &str) -> Option<(u32, i32)> {
    let binary = match suffix {
        "" => Some(0),
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(shift) = binary {
        return Some((shift, 0));
    }
    let decimal = match suffix {
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(exponent) = decimal {
        return Some((0, exponent));
    }
    let exponent = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    let digits = exponent
        .strip_prefix('+')
        .or_else(|| exponent.strip_prefix('-'))
        .unwrap_or(exponent);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
        return None;
    }
    Some((0, exponent.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn plain_integers() {
        assert_eq!(parse_bytes("0"), Some(0));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("+5"), Some(5));
        assert_eq!(parse_bytes(" 7 "), Some(7));
    }

    #[test]
    fn binary_suffixes() {
        assert_eq!(parse_bytes("1Ki"), Some(1024));
        assert_eq!(parse_bytes("1Mi"), Some(1 << 20));
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("10Gi"), Some(10 << 30));
        assert_eq!(parse_bytes("1Ti"), Some(1 << 40));
        assert_eq!(parse_bytes("1Pi"), Some(1 << 50));
        assert_eq!(parse_bytes("1Ei"), Some(1 << 60));
        assert_eq!(parse_bytes("1.5Gi"), Some(1_610_612_736));
        assert_eq!(parse_bytes("0.5Ki"), Some(512));
    }

    #[test]
    fn decimal_suffixes() {
        assert_eq!(parse_bytes("1k"), Some(1_000));
        assert_eq!(parse_bytes("5M"), Some(5_000_000));
        assert_eq!(parse_bytes("2G"), Some(2_000_000_000));
        assert_eq!(parse_bytes("1T"), Some(1_000_000_000_000));
        assert_eq!(parse_bytes("1P"), Some(1_000_000_000_000_000));
        assert_eq!(parse_bytes("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(parse_bytes("1.5G"), Some(1_500_000_000));
    }

    #[test]
    fn milli_rounds_up_to_whole_bytes() {
        assert_eq!(parse_bytes("1000m"), Some(1));
        assert_eq!(parse_bytes("1500m"), Some(2));
        assert_eq!(parse_bytes("1m"), Some(1));
        assert_eq!(parse_bytes("0m"), Some(0));
    }

    #[test]
    fn exponents() {
        assert_eq!(parse_bytes("1e3"), Some(1_000));
        assert_eq!(parse_bytes("1E3"), Some(1_000));
        assert_eq!(parse_bytes("1.5e+3"), Some(1_500));
        assert_eq!(parse_bytes("12e-1"), Some(2));
        assert_eq!(parse_bytes("2e0"), Some(2));
    }

    #[test]
    fn fractions_round_up() {
        assert_eq!(parse_bytes("0.1"), Some(1));
        assert_eq!(parse_bytes("1.0"), Some(1));
        assert_eq!(parse_bytes(".5k"), Some(500));
        assert_eq!(parse_bytes("5."), Some(5));
    }

    #[test]
    fn rejects_malformed_negative_and_overflow() {
        for bad in [
            "", "Gi", "-1Gi", "1.2.3", "1GB", "1gi", "1 Gi", "e3", "1e", "1e+", "1e3.5", "abc",
            "1Yi", "1e9999",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
        assert_eq!(parse_bytes("16Ei"), None);
        assert_eq!(parse_bytes("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_bytes("18446744073709551616"), None);
    }
}
