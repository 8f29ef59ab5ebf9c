//! One rounding for every figure the drills print: tables, CSV and JSON all show the same digits.
//!
//! Figures are rounded half away from zero on their decimal value (the shortest decimal that reads
//! back as the same `f64`, as JSON prints it), so 81.25 is 81.3 everywhere; `format!("{:.1}")` alone
//! would round the binary value half to even and print 81.2 beside a JSON 81.3. Zero is never
//! printed with a minus sign.

/// `x` rounded to `places` decimals, half away from zero on its decimal value; a result of zero is
/// always `+0.0`. NaN and infinities come back unchanged.
pub fn round_half_away(x: f64, places: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Shortest round-trip form, e.g. "-8.125e1": sign, digits and the exponent of the first digit.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // Digits kept: those before the decimal point plus `places` after it.
    let keep = exp + 1 + i64::from(places);
    if keep < 0 {
        return 0.0;
    }
    let keep = keep as usize;
    let mut kept: Vec<u8> = (0..keep)
        .map(|i| digits.get(i).copied().unwrap_or(0))
        .collect();
    if digits.get(keep).is_some_and(|&d| d >= 5) {
        // Carry the round-up leftwards; a carry out of the first digit adds one in front.
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let int: String = if kept.is_empty() {
        "0".into()
    } else {
        kept.iter().map(|d| char::from(b'0' + d)).collect()
    };
    let sign = if x < 0.0 { "-" } else { "" };
    let rounded: f64 = format!("{sign}{int}e-{places}").parse().unwrap_or(x);
    // -0.0 + 0.0 is +0.0: a negative figure that rounds to zero prints as zero.
    rounded + 0.0
}

/// `x` rounded by [`round_half_away`] and printed with exactly `places` decimals ("81.3", "0.0").
pub fn fixed(x: f64, places: u32) -> String {
    format!("{:.*}", places as usize, round_half_away(x, places))
}

/// [`fixed`] with the sign always shown ("+12.5", "-3.0", and "+0.0" for any figure that rounds to
/// zero), for differences.
pub fn fixed_signed(x: f64, places: u32) -> String {
    format!("{:+.*}", places as usize, round_half_away(x, places))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_away_from_zero_on_the_decimal_value() {
        // 81.25 is exact in binary: `{:.1}` alone rounds it half to even, to 81.2.
        assert_eq!(format!("{:.1}", 81.25), "81.2");
        assert_eq!(round_half_away(81.25, 1), 81.3);
        assert_eq!(fixed(81.25, 1), "81.3");
        assert_eq!(fixed(-81.25, 1), "-81.3");
        assert_eq!(fixed(0.125, 2), "0.13");
        assert_eq!(fixed(2.5, 0), "3");
        assert_eq!(fixed(0.5, 0), "1");
        // 1.005 and 2.675 are a little below their decimal value in binary; the decimal value rules.
        assert_eq!(fixed(1.005, 2), "1.01");
        assert_eq!(fixed(2.675, 2), "2.68");
        // Below half stays down, however many digits follow.
        assert_eq!(fixed(81.249_999, 1), "81.2");
        assert_eq!(fixed(0.0284, 4), "0.0284");
    }

    #[test]
    fn carries_and_magnitudes() {
        assert_eq!(fixed(9.95, 1), "10.0");
        assert_eq!(fixed(99.95, 1), "100.0");
        assert_eq!(fixed(0.999_5, 3), "1.000");
        assert_eq!(fixed(0.05, 1), "0.1");
        assert_eq!(fixed(0.049, 1), "0.0");
        assert_eq!(fixed(1e-20, 3), "0.000");
        assert_eq!(fixed(123_456_789.0, 1), "123456789.0");
        assert_eq!(fixed(3237.65, 1), "3237.7");
        assert_eq!(round_half_away(2065.25, 1), 2065.3);
    }

    #[test]
    fn zero_never_has_a_minus_sign() {
        for x in [-0.0, -0.04, -1e-12, 0.0] {
            assert_eq!(fixed(x, 1), "0.0", "{x}");
            assert_eq!(fixed_signed(x, 1), "+0.0", "{x}");
            assert!(round_half_away(x, 1).is_sign_positive(), "{x}");
        }
        // An empty sum is -0.0 in Rust: it prints as zero.
        let empty: f64 = Vec::<f64>::new().iter().sum();
        assert_eq!(fixed(empty / 2.0, 1), "0.0");
        assert_eq!(fixed_signed(-0.126, 2), "-0.13");
        assert_eq!(fixed_signed(0.126, 2), "+0.13");
    }

    #[test]
    fn non_finite_values_pass_through() {
        assert!(round_half_away(f64::NAN, 1).is_nan());
        assert_eq!(round_half_away(f64::INFINITY, 1), f64::INFINITY);
        assert_eq!(fixed(f64::INFINITY, 1), "inf");
    }
}
