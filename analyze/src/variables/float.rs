//! Binary floating-point values: the decimal text of formats wider than
//! `double`, which are the x87 80-bit extended format (`long double` on
//! x86_64, stored in 16 bytes) and IEEE binary128 (`_Float128`,
//! `__float128`), and the conversions, comparisons and negation that casts
//! and expressions need in every format.
//!
//! gdb 13 prints a float with C's `%g` and enough significant digits to
//! distinguish every value of the format. For a p-bit significand that is
//! ceil(p * log10 2) + 1: 9 for `float`, 17 for `double`, 21 for the x87
//! format and 36 for binary128. The host's `long double` cannot hold
//! binary128, and Rust has no 80-bit type, so this module converts exactly
//! with a small big integer and rounds half to even as glibc's `printf`
//! does. A NaN prints as gdb prints it, with its significand in hex:
//! `nan(0xc000000000000000)`.

use super::bignum::BigUint;

/// A floating-point format wider than `double`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WideFloat {
    /// x87 extended precision: 64-bit significand with an explicit integer
    /// bit, 15-bit exponent, sign; 10 bytes, padded to 12 or 16.
    X87Extended,
    /// IEEE 754 binary128: 113-bit significand (112 stored), 15-bit exponent.
    Binary128,
}

/// Exponent bias of both formats.
const EXPONENT_BIAS: i32 = 16383;
/// Exponent field value of infinities and NaNs in both formats.
const EXPONENT_SPECIAL: u32 = 0x7fff;

impl WideFloat {
    /// Returns the format gdb uses on x86_64 for a float type of `name`
    /// and `size_bytes`, or `None` when it is not a wide format.
    pub fn for_type(name: &str, size_bytes: usize) -> Option<WideFloat> {
        let base_name = name.trim_start_matches("complex ").trim_start_matches("_Complex ");
        match size_bytes {
            16 if ["_Float128", "__float128"].contains(&base_name) => Some(WideFloat::Binary128),
            10 | 12 | 16 => Some(WideFloat::X87Extended),
            _ => None,
        }
    }

    /// Significant digits gdb prints: ceil(p * log10 2) + 1.
    pub fn digits(self) -> usize {
        match self {
            WideFloat::X87Extended => 21,
            WideFloat::Binary128 => 36,
        }
    }

    /// Bytes of the value that carry bits; the rest is padding.
    pub fn value_bytes(self) -> usize {
        match self {
            WideFloat::X87Extended => 10,
            WideFloat::Binary128 => 16,
        }
    }
}

/// The kind of value a float's bits encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// `significand * 2^exponent`, with the sign apart.
    Finite { significand: u128, exponent: i32 },
    Infinite,
    /// A NaN and the significand bits gdb shows for it.
    NaN { payload: u128 },
    /// An encoding the format does not allow.
    Invalid,
}

/// Decodes `bytes` (little-endian, at least [`WideFloat::value_bytes`]
/// long) into its sign and class.
pub(super) fn decode(format: WideFloat, bytes: &[u8]) -> Option<(bool, Class)> {
    match format {
        WideFloat::X87Extended => {
            let significand = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
            let sign_exponent = u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?);
            let negative = sign_exponent & 0x8000 != 0;
            let exponent = u32::from(sign_exponent & 0x7fff);
            // The explicit integer bit must be set exactly when the exponent
            // is not 0. The other encodings (unnormals, pseudo-denormals,
            // pseudo-infinities) are invalid operands on x87 since the 387,
            // and gdb prints them as `<invalid float value>`.
            if (significand >> 63 == 1) != (exponent != 0) {
                return Some((negative, Class::Invalid));
            }
            if exponent == EXPONENT_SPECIAL {
                // The integer bit (63) is set in both, so the fraction distinguishes them.
                let class = if significand << 1 == 0 {
                    Class::Infinite
                } else {
                    Class::NaN { payload: u128::from(significand) }
                };
                return Some((negative, class));
            }
            // A denormal (exponent 0) has the exponent of the smallest normal.
            let exponent = (exponent.max(1) as i32) - EXPONENT_BIAS - 63;
            Some((negative, Class::Finite { significand: u128::from(significand), exponent }))
        }
        WideFloat::Binary128 => {
            let bits = u128::from_le_bytes(bytes.get(..16)?.try_into().ok()?);
            let negative = bits >> 127 != 0;
            let exponent = ((bits >> 112) & 0x7fff) as u32;
            let fraction = bits & ((1u128 << 112) - 1);
            if exponent == EXPONENT_SPECIAL {
                let class = if fraction == 0 { Class::Infinite } else { Class::NaN { payload: fraction } };
                return Some((negative, class));
            }
            let significand = if exponent == 0 { fraction } else { fraction | 1u128 << 112 };
            let exponent = (exponent.max(1) as i32) - EXPONENT_BIAS - 112;
            Some((negative, Class::Finite { significand, exponent }))
        }
    }
}

/// A floating-point format, for casts between floats and integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatKind {
    /// IEEE binary32, `float`.
    Single,
    /// IEEE binary64, `double`.
    Double,
    /// A format wider than `double`.
    Wide(WideFloat),
}

impl FloatKind {
    /// Bytes of the value that carry bits; the sign is the top bit of the last.
    pub fn value_bytes(self) -> usize {
        match self {
            FloatKind::Single => 4,
            FloatKind::Double => 8,
            FloatKind::Wide(wide) => wide.value_bytes(),
        }
    }

    /// Returns the format of a float type of `name` and `size_bytes`.
    pub fn for_type(name: &str, size_bytes: usize) -> Option<FloatKind> {
        match size_bytes {
            4 => Some(FloatKind::Single),
            8 => Some(FloatKind::Double),
            _ => WideFloat::for_type(name, size_bytes).map(FloatKind::Wide),
        }
    }
}

/// Decodes `bytes` of any [`FloatKind`] into its sign and class.
fn decode_any(kind: FloatKind, bytes: &[u8]) -> Option<(bool, Class)> {
    let (bits, fraction_bits, exponent_bits): (u64, u32, u32) = match kind {
        FloatKind::Wide(wide) => return decode(wide, bytes),
        FloatKind::Single => (u64::from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)), 23, 8),
        FloatKind::Double => (u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?), 52, 11),
    };
    let negative = bits >> (fraction_bits + exponent_bits) & 1 == 1;
    let exponent = (bits >> fraction_bits) & ((1 << exponent_bits) - 1);
    let fraction = bits & ((1 << fraction_bits) - 1);
    let bias = (1i32 << (exponent_bits - 1)) - 1;
    if exponent == (1 << exponent_bits) - 1 {
        let class = if fraction == 0 { Class::Infinite } else { Class::NaN { payload: u128::from(fraction) } };
        return Some((negative, class));
    }
    let significand = if exponent == 0 { fraction } else { fraction | 1 << fraction_bits };
    let exponent = (exponent.max(1) as i32) - bias - fraction_bits as i32;
    Some((negative, Class::Finite { significand: u128::from(significand), exponent }))
}

/// Converts a float's bytes to an integer as a C cast does, truncating
/// toward zero. `None` for a NaN, an infinity or a value outside `i128`.
pub fn float_to_integer(kind: FloatKind, bytes: &[u8]) -> Option<i128> {
    let (negative, Class::Finite { significand, exponent }) = decode_any(kind, bytes)? else { return None };
    let magnitude = if exponent >= 0 {
        let shift = u32::try_from(exponent).ok()?;
        if significand != 0 && significand.leading_zeros() <= shift {
            return None;
        }
        significand << shift
    } else {
        significand.checked_shr(exponent.unsigned_abs()).unwrap_or(0)
    };
    let magnitude = i128::try_from(magnitude).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Encodes an integer in a float format of `size_bytes` bytes.
/// NOTE: a magnitude wider than the significand (64 bits for x87, 113 for
/// binary128) is truncated toward zero; C rounds to nearest.
pub fn integer_to_float(kind: FloatKind, value: i128, size_bytes: usize) -> Vec<u8> {
    let class = Class::Finite { significand: value.unsigned_abs(), exponent: 0 };
    encode(kind, value < 0, class, size_bytes)
}

/// Converts a float's bytes from one format to another, as a C cast does.
pub fn convert_float(from: FloatKind, bytes: &[u8], to: FloatKind, size_bytes: usize) -> Option<Vec<u8>> {
    let (negative, class) = decode_any(from, bytes)?;
    Some(encode(to, negative, class, size_bytes))
}

/// Compares two floats of format `kind` exactly; `None` when either is a NaN.
pub fn compare_floats(kind: FloatKind, left: &[u8], right: &[u8]) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;

    let (left_negative, left_class) = decode_any(kind, left)?;
    let (right_negative, right_class) = decode_any(kind, right)?;
    // Magnitudes first: infinity above every finite value.
    let magnitude = match (left_class, right_class) {
        (Class::NaN { .. } | Class::Invalid, _) | (_, Class::NaN { .. } | Class::Invalid) => return None,
        (Class::Infinite, Class::Infinite) => Ordering::Equal,
        (Class::Infinite, _) => Ordering::Greater,
        (_, Class::Infinite) => Ordering::Less,
        (Class::Finite { significand: a, exponent: ea }, Class::Finite { significand: b, exponent: eb }) => {
            compare_magnitudes(a, ea, b, eb)
        }
    };
    let zero = |class: Class| matches!(class, Class::Finite { significand: 0, .. });
    if zero(left_class) && zero(right_class) {
        return Some(Ordering::Equal);
    }
    Some(match (left_negative, right_negative) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
    })
}

/// Compares `a * 2^ea` with `b * 2^eb`.
fn compare_magnitudes(a: u128, ea: i32, b: u128, eb: i32) -> std::cmp::Ordering {
    if a == 0 || b == 0 {
        return a.cmp(&b);
    }
    let top = |significand: u128, exponent: i32| 128 - significand.leading_zeros() as i32 + exponent;
    match top(a, ea).cmp(&top(b, eb)) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    // Same position of the top bit: align both at the smaller exponent; the
    // shift is at most 128 bits because the top bits line up.
    let base = ea.min(eb);
    let left = BigUint::from(a).shl((ea - base) as u32);
    let right = BigUint::from(b).shl((eb - base) as u32);
    left.limbs.len().cmp(&right.limbs.len()).then_with(|| left.limbs.iter().rev().cmp(right.limbs.iter().rev()))
}

/// Replaces the float in `bytes` by 0 - itself, as gdb 13 negates: the sign
/// flips except that a zero becomes +0 and a NaN stays as it is. `None`
/// when `bytes` is shorter than the format.
pub fn negate_float(kind: FloatKind, bytes: &mut [u8]) -> Option<()> {
    let (_, class) = decode_any(kind, bytes)?;
    let sign_byte = bytes.get_mut(kind.value_bytes() - 1)?;
    match class {
        Class::NaN { .. } => {}
        Class::Finite { significand: 0, .. } => *sign_byte &= 0x7f,
        _ => *sign_byte ^= 0x80,
    }
    Some(())
}

/// Returns `significand * 2^exponent` as the nearest `f64`.
fn to_f64(significand: u128, exponent: i32) -> f64 {
    // Scale in steps that stay exact, so 2^-16445 still reaches 0.
    let mut value = significand as f64;
    let mut exponent = exponent;
    while exponent > 1000 {
        value *= 2f64.powi(1000);
        exponent -= 1000;
    }
    while exponent < -1000 {
        value *= 2f64.powi(-1000);
        exponent += 1000;
    }
    value * 2f64.powi(exponent)
}

/// Encodes a sign and class in `kind`, padded with zeros to `size_bytes`.
fn encode(kind: FloatKind, negative: bool, class: Class, size_bytes: usize) -> Vec<u8> {
    let mut bytes = match kind {
        FloatKind::Single | FloatKind::Double => {
            let magnitude = match class {
                Class::Finite { significand, exponent } => to_f64(significand, exponent),
                Class::Infinite => f64::INFINITY,
                // The x87 turns an invalid encoding into a NaN when it loads it.
                Class::NaN { .. } | Class::Invalid => f64::NAN,
            };
            let value = if negative { -magnitude } else { magnitude };
            match kind {
                FloatKind::Single => (value as f32).to_le_bytes().to_vec(),
                _ => value.to_le_bytes().to_vec(),
            }
        }
        FloatKind::Wide(wide) => encode_wide(wide, negative, class),
    };
    bytes.resize(size_bytes.max(bytes.len()), 0);
    bytes.truncate(size_bytes);
    bytes
}

/// Encodes in the x87 or binary128 format, truncating extra significand bits.
pub(super) fn encode_wide(wide: WideFloat, negative: bool, class: Class) -> Vec<u8> {
    // Position of the integer bit: explicit bit 63 for x87, implicit bit 112.
    let top_bit: i32 = match wide {
        WideFloat::X87Extended => 63,
        WideFloat::Binary128 => 112,
    };
    let (biased, significand) = match class {
        Class::Infinite => (EXPONENT_SPECIAL as i32, if wide == WideFloat::X87Extended { 1u128 << 63 } else { 0 }),
        Class::NaN { .. } | Class::Invalid => (EXPONENT_SPECIAL as i32, 3u128 << (top_bit - 1)),
        Class::Finite { significand: 0, .. } => (0, 0),
        Class::Finite { significand, exponent } => {
            let bits = 128 - significand.leading_zeros() as i32;
            let shift = bits - 1 - top_bit;
            let normalized = if shift > 0 { significand >> shift } else { significand << -shift };
            let biased = exponent + shift + top_bit + EXPONENT_BIAS;
            if biased >= EXPONENT_SPECIAL as i32 {
                return encode_wide(wide, negative, Class::Infinite);
            }
            if biased <= 0 {
                // A denormal: the exponent of the smallest normal, fewer bits.
                let denormal = normalized.checked_shr((1 - biased) as u32).unwrap_or(0);
                (0, denormal)
            } else {
                (biased, normalized)
            }
        }
    };
    let sign = u128::from(negative);
    match wide {
        WideFloat::X87Extended => {
            let mut bytes = (significand as u64).to_le_bytes().to_vec();
            let sign_exponent = (sign as u16) << 15 | biased as u16;
            bytes.extend_from_slice(&sign_exponent.to_le_bytes());
            bytes
        }
        WideFloat::Binary128 => {
            let fraction = significand & ((1u128 << 112) - 1);
            let bits = sign << 127 | (biased as u128) << 112 | fraction;
            bits.to_le_bytes().to_vec()
        }
    }
}

/// Formats a wide float's bytes as gdb prints its value. Returns `None`
/// when `bytes` is shorter than the format.
pub fn format_wide_float(format: WideFloat, bytes: &[u8]) -> Option<String> {
    let (negative, class) = decode(format, bytes)?;
    let sign = if negative { "-" } else { "" };
    Some(match class {
        Class::Infinite => format!("{sign}inf"),
        Class::NaN { payload } => format!("{sign}nan({payload:#x})"),
        Class::Invalid => "<invalid float value>".to_owned(),
        Class::Finite { significand: 0, .. } => format!("{sign}0"),
        Class::Finite { significand, exponent } => {
            format!("{sign}{}", format_g(significand, exponent, format.digits()))
        }
    })
}

/// Formats `significand * 2^exponent` (positive) as C's `%.{precision}g`.
fn format_g(significand: u128, exponent: i32, precision: usize) -> String {
    let (digits, decimal_exponent) = round_to_digits(significand, exponent, precision);
    // `digits` has `precision` digits d0 d1 … and the value is
    // d0.d1… × 10^decimal_exponent.
    if decimal_exponent < -4 || decimal_exponent >= precision as i32 {
        let fraction = digits[1..].trim_end_matches('0');
        let mantissa = if fraction.is_empty() { digits[..1].to_owned() } else { format!("{}.{fraction}", &digits[..1]) };
        let exponent_sign = if decimal_exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{exponent_sign}{:02}", decimal_exponent.unsigned_abs());
    }
    let text = if decimal_exponent < 0 {
        let zeros = "0".repeat((-decimal_exponent - 1) as usize);
        format!("0.{zeros}{digits}")
    } else {
        let split = decimal_exponent as usize + 1;
        format!("{}.{}", &digits[..split], &digits[split..])
    };
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Returns the first `precision` significant decimal digits of
/// `significand * 2^exponent` (positive), rounded half to even, and the
/// decimal exponent of the first digit.
fn round_to_digits(significand: u128, exponent: i32, precision: usize) -> (String, i32) {
    // Scale the value by 10^scale into an integer with a few more digits
    // than needed, remembering whether the bits dropped were all zero.
    // floor(log10(value)) is within one of `estimate`.
    let bits = 128 - significand.leading_zeros() as i32;
    let estimate = ((bits - 1 + exponent) as f64 * std::f64::consts::LOG10_2).floor() as i32;
    let (scaled, scale, inexact) = if exponent >= 0 {
        // An integer: exact, however many digits it has (up to 4933).
        (BigUint::from(significand).shl(exponent as u32), 0, false)
    } else {
        // significand * 2^exponent * 10^scale = significand * 5^scale * 2^(exponent + scale).
        let scale = (precision as i32 + 2 - estimate).max(0);
        let mut value = BigUint::from(significand);
        value.mul_pow5(scale as u32);
        let shift = exponent + scale;
        if shift >= 0 {
            (value.shl(shift as u32), scale, false)
        } else {
            let (value, inexact) = value.shr(shift.unsigned_abs());
            (value, scale, inexact)
        }
    };
    let all = scaled.to_decimal();
    let decimal_exponent = all.len() as i32 - 1 - scale;
    if all.len() <= precision {
        return (format!("{all:0<precision$}"), decimal_exponent);
    }
    let (kept, dropped) = all.split_at(precision);
    let first_dropped = dropped.as_bytes()[0];
    let rest_nonzero = inexact || dropped[1..].bytes().any(|digit| digit != b'0');
    let last_odd = (kept.as_bytes()[precision - 1] - b'0') % 2 == 1;
    let round_up = first_dropped > b'5' || (first_dropped == b'5' && (rest_nonzero || last_odd));
    if !round_up {
        return (kept.to_owned(), decimal_exponent);
    }
    let mut digits = kept.as_bytes().to_vec();
    for digit in digits.iter_mut().rev() {
        if *digit == b'9' {
            *digit = b'0';
        } else {
            *digit += 1;
            return (String::from_utf8(digits).unwrap_or_default(), decimal_exponent);
        }
    }
    // 999… rounded up to 1000…: one more decimal place.
    digits.insert(0, b'1');
    digits.truncate(precision);
    (String::from_utf8(digits).unwrap_or_default(), decimal_exponent + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x87(significand: u64, sign_exponent: u16) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&significand.to_le_bytes());
        bytes[8..10].copy_from_slice(&sign_exponent.to_le_bytes());
        format_wide_float(WideFloat::X87Extended, &bytes).unwrap()
    }

    // Expected texts are gdb 13's `print` of the same bits (gcc 12 x86_64).
    #[test]
    fn x87_values_like_gdb() {
        assert_eq!(x87(0xc90fdaa22168c235, 0x4000), "3.14159265358979323851");
        assert_eq!(x87(0xc90fdaa22168c235, 0xc000), "-3.14159265358979323851");
        assert_eq!(x87(0x8000000000000000, 0x3fff), "1");
        assert_eq!(x87(0xa000000000000000, 0xc000), "-2.5");
        assert_eq!(x87(0xaaaaaaaaaaaaaaab, 0x3ffd), "0.333333333333333333342");
        assert_eq!(x87(0xcccccccccccccccd, 0x3ffb), "0.100000000000000000001");
        assert_eq!(x87(0xab54a98ceb1f0ad2, 0x403e), "12345678901234567890");
        assert_eq!(x87(0xffffffffffffffff, 0x7ffe), "1.18973149535723176502e+4932");
    }

    #[test]
    fn x87_special_values() {
        assert_eq!(x87(0x8000000000000000, 0x7fff), "inf");
        assert_eq!(x87(0x8000000000000000, 0xffff), "-inf");
        assert_eq!(x87(0xc000000000000000, 0x7fff), "nan(0xc000000000000000)");
        assert_eq!(x87(0, 0x8000), "-0");
        assert_eq!(x87(0, 0), "0");
    }

    #[test]
    fn x87_invalid_encodings() {
        // An unnormal (integer bit clear, exponent not 0) and a
        // pseudo-denormal (integer bit set, exponent 0).
        assert_eq!(x87(0x4000000000000000, 0x3fff), "<invalid float value>");
        assert_eq!(x87(0x8000000000000001, 0), "<invalid float value>");
        assert_eq!(x87(0x4000000000000000, 0x7fff), "<invalid float value>");
    }

    #[test]
    fn x87_denormal_is_exact() {
        // The smallest denormal, 2^-16445.
        assert_eq!(x87(1, 0), "3.64519953188247460253e-4951");
    }

    #[test]
    fn binary128_third() {
        // 1/3 in binary128: 0x3ffd5555…5555.
        let bits: u128 = 0x3ffd_5555_5555_5555_5555_5555_5555_5555;
        assert_eq!(format_wide_float(WideFloat::Binary128, &bits.to_le_bytes()).unwrap(), "0.333333333333333333333333333333333317");
        let two: u128 = 0x4000 << 112;
        assert_eq!(format_wide_float(WideFloat::Binary128, &two.to_le_bytes()).unwrap(), "2");
    }

    #[test]
    fn rounding_carries_into_new_digit() {
        // 9.5 at one digit rounds half to even: 1e+01.
        assert_eq!(format_g(19, -1, 1), "1e+01");
        assert_eq!(format_g(17, -1, 1), "8");
        assert_eq!(format_g(5, -1, 1), "2");
        assert_eq!(format_g(3, -1, 1), "2");
    }

    #[test]
    fn short_buffer_is_none() {
        assert_eq!(format_wide_float(WideFloat::X87Extended, &[0; 9]), None);
    }

    #[test]
    fn casts_to_integers_truncate() {
        let pi = {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&0xc90fdaa22168c235u64.to_le_bytes());
            bytes[8..10].copy_from_slice(&0xc000u16.to_le_bytes());
            bytes
        };
        assert_eq!(float_to_integer(FloatKind::Wide(WideFloat::X87Extended), &pi), Some(-3));
        assert_eq!(float_to_integer(FloatKind::Double, &2.718f64.to_le_bytes()), Some(2));
        assert_eq!(float_to_integer(FloatKind::Single, &(-0.5f32).to_le_bytes()), Some(0));
        assert_eq!(float_to_integer(FloatKind::Double, &f64::NAN.to_le_bytes()), None);
        assert_eq!(float_to_integer(FloatKind::Double, &1e300f64.to_le_bytes()), None);
    }

    #[test]
    fn integers_to_floats() {
        let x87 = FloatKind::Wide(WideFloat::X87Extended);
        assert_eq!(format_wide_float(WideFloat::X87Extended, &integer_to_float(x87, -42, 16)).unwrap(), "-42");
        assert_eq!(integer_to_float(FloatKind::Double, -42, 8), (-42f64).to_le_bytes().to_vec());
        assert_eq!(integer_to_float(FloatKind::Single, 7, 4), 7f32.to_le_bytes().to_vec());
        let quad = FloatKind::Wide(WideFloat::Binary128);
        assert_eq!(format_wide_float(WideFloat::Binary128, &integer_to_float(quad, 12345, 16)).unwrap(), "12345");
    }

    #[test]
    fn conversions_between_formats() {
        let x87 = FloatKind::Wide(WideFloat::X87Extended);
        let wide = convert_float(FloatKind::Double, &2.5f64.to_le_bytes(), x87, 16).unwrap();
        assert_eq!(format_wide_float(WideFloat::X87Extended, &wide).unwrap(), "2.5");
        let back = convert_float(x87, &wide, FloatKind::Double, 8).unwrap();
        assert_eq!(back, 2.5f64.to_le_bytes().to_vec());
        let tiny = convert_float(x87, &{
            let mut bytes = [0u8; 16];
            bytes[0] = 1;
            bytes
        }, FloatKind::Double, 8)
        .unwrap();
        assert_eq!(tiny, 0f64.to_le_bytes().to_vec());
        let infinity = convert_float(FloatKind::Double, &f64::INFINITY.to_le_bytes(), x87, 16).unwrap();
        assert_eq!(format_wide_float(WideFloat::X87Extended, &infinity).unwrap(), "inf");
    }

    #[test]
    fn exact_comparisons() {
        use std::cmp::Ordering;
        let x87 = FloatKind::Wide(WideFloat::X87Extended);
        let value = |number: i128| integer_to_float(x87, number, 16);
        assert_eq!(compare_floats(x87, &value(3), &value(4)), Some(Ordering::Less));
        assert_eq!(compare_floats(x87, &value(-3), &value(-4)), Some(Ordering::Greater));
        assert_eq!(compare_floats(x87, &value(7), &value(7)), Some(Ordering::Equal));
        assert_eq!(compare_floats(x87, &value(0), &convert_float(FloatKind::Double, &(-0f64).to_le_bytes(), x87, 16).unwrap()), Some(Ordering::Equal));
        let third = convert_float(FloatKind::Double, &(1.0f64 / 3.0).to_le_bytes(), x87, 16).unwrap();
        assert_eq!(compare_floats(x87, &third, &value(1)), Some(Ordering::Less));
        let nan = convert_float(FloatKind::Double, &f64::NAN.to_le_bytes(), x87, 16).unwrap();
        assert_eq!(compare_floats(x87, &nan, &value(1)), None);
    }

    #[test]
    fn type_names_choose_format() {
        assert_eq!(WideFloat::for_type("long double", 16), Some(WideFloat::X87Extended));
        assert_eq!(WideFloat::for_type("_Float128", 16), Some(WideFloat::Binary128));
        assert_eq!(WideFloat::for_type("__float128", 16), Some(WideFloat::Binary128));
        assert_eq!(WideFloat::for_type("double", 8), None);
    }
}
