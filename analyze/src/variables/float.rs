//! Decimal text of binary floating-point values wider than `double`: the
//! x87 80-bit extended format (`long double` on x86_64, stored in 16
//! bytes) and IEEE binary128 (`_Float128`, `__float128`).
//!
//! gdb 13 prints a float with C's `%g` and as many significant digits as
//! it takes to tell every value of the format apart: ceil(p * log10 2) + 1
//! for a p-bit significand, so 9 for `float`, 17 for `double`, 21 for the
//! x87 format and 36 for binary128. The host's `long double` cannot hold
//! binary128, and Rust has no 80-bit type, so this module converts exactly
//! with a small big integer and rounds half to even as glibc's `printf`
//! does. A NaN prints as gdb prints it, with its significand in hex:
//! `nan(0xc000000000000000)`.

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

/// What a float's bits encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `significand * 2^exponent`, with the sign apart.
    Finite { significand: u128, exponent: i32 },
    Infinite,
    /// A NaN and the significand bits gdb shows for it.
    NaN { payload: u128 },
}

/// Decodes `bytes` (little-endian, at least [`WideFloat::value_bytes`]
/// long) into its sign and class.
fn decode(format: WideFloat, bytes: &[u8]) -> Option<(bool, Class)> {
    match format {
        WideFloat::X87Extended => {
            let significand = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
            let sign_exponent = u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?);
            let negative = sign_exponent & 0x8000 != 0;
            let exponent = u32::from(sign_exponent & 0x7fff);
            if exponent == EXPONENT_SPECIAL {
                // The integer bit (63) is set in both; the fraction tells them apart.
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

/// Formats a wide float's bytes as gdb prints its value. Returns `None`
/// when `bytes` is shorter than the format.
pub fn format_wide_float(format: WideFloat, bytes: &[u8]) -> Option<String> {
    let (negative, class) = decode(format, bytes)?;
    let sign = if negative { "-" } else { "" };
    Some(match class {
        Class::Infinite => format!("{sign}inf"),
        Class::NaN { payload } => format!("{sign}nan({payload:#x})"),
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

/// An unsigned integer of any size, little-endian 32-bit limbs, with the
/// few operations decimal conversion needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BigUint {
    limbs: Vec<u32>,
}

impl From<u128> for BigUint {
    fn from(value: u128) -> BigUint {
        let mut limbs: Vec<u32> = (0..4).map(|index| (value >> (32 * index)) as u32).collect();
        trim(&mut limbs);
        BigUint { limbs }
    }
}

fn trim(limbs: &mut Vec<u32>) {
    while limbs.last() == Some(&0) {
        limbs.pop();
    }
}

impl BigUint {
    fn mul_small(&mut self, factor: u32) {
        let mut carry = 0u64;
        for limb in &mut self.limbs {
            let product = u64::from(*limb) * u64::from(factor) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    /// Multiplies by 5^power, 13 powers at a time (5^13 < 2^32).
    fn mul_pow5(&mut self, mut power: u32) {
        const POW5_13: u32 = 1_220_703_125;
        while power >= 13 {
            self.mul_small(POW5_13);
            power -= 13;
        }
        self.mul_small(5u32.pow(power));
    }

    fn shl(mut self, bits: u32) -> BigUint {
        let (limbs, bits) = ((bits / 32) as usize, bits % 32);
        if bits != 0 {
            let mut carry = 0u32;
            for limb in &mut self.limbs {
                let shifted = (*limb << bits) | carry;
                carry = *limb >> (32 - bits);
                *limb = shifted;
            }
            if carry != 0 {
                self.limbs.push(carry);
            }
        }
        let mut result = vec![0u32; limbs];
        result.extend_from_slice(&self.limbs);
        trim(&mut result);
        BigUint { limbs: result }
    }

    /// Shifts right by `bits` and returns whether a set bit was dropped.
    fn shr(self, bits: u32) -> (BigUint, bool) {
        let (whole, bits) = ((bits / 32) as usize, bits % 32);
        if whole >= self.limbs.len() {
            return (BigUint { limbs: Vec::new() }, self.limbs.iter().any(|&limb| limb != 0));
        }
        let mut inexact = self.limbs[..whole].iter().any(|&limb| limb != 0);
        let mut limbs = self.limbs[whole..].to_vec();
        if bits != 0 {
            inexact |= limbs[0] & ((1u32 << bits) - 1) != 0;
            for index in 0..limbs.len() {
                let high = limbs.get(index + 1).map_or(0, |&next| next << (32 - bits));
                limbs[index] = (limbs[index] >> bits) | high;
            }
        }
        trim(&mut limbs);
        (BigUint { limbs }, inexact)
    }

    /// Divides by `divisor` in place and returns the remainder.
    fn div_small(&mut self, divisor: u32) -> u32 {
        let mut remainder = 0u64;
        for limb in self.limbs.iter_mut().rev() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / u64::from(divisor)) as u32;
            remainder = current % u64::from(divisor);
        }
        trim(&mut self.limbs);
        remainder as u32
    }

    fn to_decimal(&self) -> String {
        const CHUNK: u32 = 1_000_000_000;
        let mut value = self.clone();
        let mut chunks = Vec::new();
        while !value.limbs.is_empty() {
            chunks.push(value.div_small(CHUNK));
        }
        let Some((last, rest)) = chunks.split_last() else { return "0".to_owned() };
        let mut text = last.to_string();
        for chunk in rest.iter().rev() {
            text.push_str(&format!("{chunk:09}"));
        }
        text
    }
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
    fn type_names_choose_format() {
        assert_eq!(WideFloat::for_type("long double", 16), Some(WideFloat::X87Extended));
        assert_eq!(WideFloat::for_type("_Float128", 16), Some(WideFloat::Binary128));
        assert_eq!(WideFloat::for_type("__float128", 16), Some(WideFloat::Binary128));
        assert_eq!(WideFloat::for_type("double", 8), None);
    }
}
