//! Arithmetic on the float formats the host has no type for: x87
//! `long double` and IEEE binary128 (`_Float128`).
//!
//! gdb 13 on x86_64 computes `long double` with the host's x87 unit, whose
//! default precision on Linux is the full 64-bit significand, and
//! `_Float128` with correct rounding. Both round to nearest, ties to even.
//! This module computes each result exactly with big integers and rounds it
//! once to the format, so it gets the same bits. The special values follow
//! IEEE 754: NaN operands give a NaN, inf - inf and 0 * inf and 0 / 0 give a
//! NaN, x / 0 gives an infinity.
//!
//! NOTE: a NaN result is always the default quiet NaN, where the x87 passes
//! a NaN operand's payload on, so `nan(0x…)` may show other bits than gdb.

use super::bignum::BigUint;
use super::float::{decode as decode_wide, encode_wide, Class, WideFloat};

/// An exact intermediate result: `(-1)^negative * magnitude * 2^exponent`,
/// with `inexact` set when nonzero bits below `magnitude` were dropped.
struct Exact {
    negative: bool,
    magnitude: BigUint,
    exponent: i64,
    inexact: bool,
}

/// Significand bits of each format, integer bit included.
fn precision(format: WideFloat) -> u32 {
    match format {
        WideFloat::X87Extended => 64,
        WideFloat::Binary128 => 113,
    }
}

/// Computes `left operator right` (`+ - * /`) in `format` and returns the
/// result's bytes; `None` for another operator or too few bytes.
pub fn wide_operation(format: WideFloat, operator: &str, left: &[u8], right: &[u8]) -> Option<Vec<u8>> {
    let (left_negative, left_class) = decode_wide(format, left)?;
    let (right_negative, right_class) = decode_wide(format, right)?;
    // Subtraction is addition of the negated right operand.
    let right_negative = right_negative != (operator == "-");
    let nan = || encode_wide(format, false, Class::NaN { payload: 0 });
    let infinity = |negative| encode_wide(format, negative, Class::Infinite);
    let zero = |negative| encode_wide(format, negative, Class::Finite { significand: 0, exponent: 0 });

    let (a, ea, b, eb) = match (left_class, right_class) {
        (Class::NaN { .. } | Class::Invalid, _) | (_, Class::NaN { .. } | Class::Invalid) => return Some(nan()),
        (Class::Finite { significand: a, exponent: ea }, Class::Finite { significand: b, exponent: eb }) => (a, ea, b, eb),
        (left_class, right_class) => {
            let left_zero = matches!(left_class, Class::Finite { significand: 0, .. });
            let right_zero = matches!(right_class, Class::Finite { significand: 0, .. });
            let left_infinite = left_class == Class::Infinite;
            let right_infinite = right_class == Class::Infinite;
            return Some(match operator {
                "+" | "-" if left_infinite && right_infinite && left_negative != right_negative => nan(),
                "+" | "-" if left_infinite => infinity(left_negative),
                "+" | "-" => infinity(right_negative),
                "*" if left_zero || right_zero => nan(),
                "*" => infinity(left_negative != right_negative),
                "/" if left_infinite && right_infinite => nan(),
                "/" if left_infinite => infinity(left_negative != right_negative),
                "/" => zero(left_negative != right_negative),
                _ => return None,
            });
        }
    };
    let product_sign = left_negative != right_negative;
    let exact = match operator {
        "+" | "-" => add(left_negative, a, ea, right_negative, b, eb),
        "*" => Exact {
            negative: product_sign,
            magnitude: BigUint::from(a).mul(&BigUint::from(b)),
            exponent: i64::from(ea) + i64::from(eb),
            inexact: false,
        },
        "/" if b == 0 && a == 0 => return Some(nan()),
        "/" if b == 0 => return Some(infinity(product_sign)),
        "/" => {
            // Enough quotient bits for the significand, a rounding bit and
            // more; the remainder decides the rest.
            let shift = precision(format) + 130;
            let (quotient, inexact) = BigUint::from(a).shl(shift).div_u128(b);
            Exact {
                negative: product_sign,
                magnitude: quotient,
                exponent: i64::from(ea) - i64::from(eb) - i64::from(shift),
                inexact,
            }
        }
        _ => return None,
    };
    Some(round(format, exact))
}

/// Adds two signed values exactly.
fn add(left_negative: bool, a: u128, ea: i32, right_negative: bool, b: u128, eb: i32) -> Exact {
    let base = ea.min(eb);
    // The larger exponent's operand is shifted left to align the two. A
    // shift far past the other operand's bits is capped, and the smaller
    // operand then counts only as a set bit below the rounding bit.
    const MAX_SHIFT: i32 = 400;
    // A single bit that far below still rounds the sum correctly, because it
    // lies below the rounding bit of every format here.
    let (a, b, base) = if (ea - eb).abs() > MAX_SHIFT {
        if ea > eb {
            (BigUint::from(a).shl(MAX_SHIFT as u32), BigUint::from(u128::from(b != 0)), ea - MAX_SHIFT)
        } else {
            (BigUint::from(u128::from(a != 0)), BigUint::from(b).shl(MAX_SHIFT as u32), eb - MAX_SHIFT)
        }
    } else {
        (BigUint::from(a).shl((ea - base) as u32), BigUint::from(b).shl((eb - base) as u32), base)
    };
    if left_negative == right_negative {
        return Exact { negative: left_negative, magnitude: a.add(&b), exponent: i64::from(base), inexact: false };
    }
    match a.compare(&b) {
        std::cmp::Ordering::Less => Exact { negative: right_negative, magnitude: b.sub(&a), exponent: i64::from(base), inexact: false },
        // An exact zero sum is +0 in round-to-nearest.
        std::cmp::Ordering::Equal => Exact { negative: false, magnitude: BigUint::from(0u128), exponent: 0, inexact: false },
        std::cmp::Ordering::Greater => Exact { negative: left_negative, magnitude: a.sub(&b), exponent: i64::from(base), inexact: false },
    }
}

/// Rounds an exact value to `format`, to nearest with ties to even,
/// gradually underflowing to denormals and overflowing to infinity.
fn round(format: WideFloat, exact: Exact) -> Vec<u8> {
    let precision = precision(format);
    if exact.magnitude.is_zero() {
        return encode_wide(format, exact.negative, Class::Finite { significand: 0, exponent: 0 });
    }
    // The smallest exponent of the significand's last bit: that of denormals.
    let min_exponent = i64::from(1 - 16383 - (precision as i32 - 1));
    let bits = i64::from(exact.magnitude.bit_len());
    let drop = (bits - i64::from(precision)).max(min_exponent - exact.exponent);
    let (significand, exponent) = if drop > 0 {
        let drop_bits = u32::try_from(drop).unwrap_or(u32::MAX);
        let (kept, below_half) = exact.magnitude.clone().shr(drop_bits.saturating_sub(1));
        // `kept` still has the rounding bit at the bottom.
        let round_bit = kept.limbs.first().is_some_and(|limb| limb & 1 == 1);
        let (kept, _) = kept.shr(1);
        let sticky = below_half || exact.inexact;
        let mut significand = kept.low_u128();
        let odd = significand & 1 == 1;
        if round_bit && (sticky || odd) {
            significand += 1;
        }
        (significand, exact.exponent + drop)
    } else {
        (exact.magnitude.low_u128(), exact.exponent)
    };
    let Ok(exponent) = i32::try_from(exponent) else {
        return encode_wide(format, exact.negative, Class::Infinite);
    };
    encode_wide(format, exact.negative, Class::Finite { significand, exponent })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::float::{format_wide_float, integer_to_float, FloatKind};

    fn x87(value: i128) -> Vec<u8> {
        integer_to_float(FloatKind::Wide(WideFloat::X87Extended), value, 16)
    }

    fn text(bytes: &[u8]) -> String {
        format_wide_float(WideFloat::X87Extended, bytes).unwrap()
    }

    #[test]
    fn exact_results() {
        let format = WideFloat::X87Extended;
        assert_eq!(text(&wide_operation(format, "+", &x87(2), &x87(3)).unwrap()), "5");
        assert_eq!(text(&wide_operation(format, "-", &x87(2), &x87(3)).unwrap()), "-1");
        assert_eq!(text(&wide_operation(format, "*", &x87(-6), &x87(7)).unwrap()), "-42");
        assert_eq!(text(&wide_operation(format, "/", &x87(1), &x87(4)).unwrap()), "0.25");
        assert_eq!(text(&wide_operation(format, "-", &x87(3), &x87(3)).unwrap()), "0");
    }

    #[test]
    fn rounded_quotient() {
        // 1/3 in the x87 format, as gcc computes 1.0L / 3.0L.
        let third = wide_operation(WideFloat::X87Extended, "/", &x87(1), &x87(3)).unwrap();
        assert_eq!(text(&third), "0.333333333333333333342");
        let quad = FloatKind::Wide(WideFloat::Binary128);
        let third = wide_operation(WideFloat::Binary128, "/", &integer_to_float(quad, 1, 16), &integer_to_float(quad, 3, 16)).unwrap();
        assert_eq!(format_wide_float(WideFloat::Binary128, &third).unwrap(), "0.333333333333333333333333333333333317");
    }

    #[test]
    fn special_values() {
        let format = WideFloat::X87Extended;
        assert_eq!(text(&wide_operation(format, "/", &x87(1), &x87(0)).unwrap()), "inf");
        assert_eq!(text(&wide_operation(format, "/", &x87(-1), &x87(0)).unwrap()), "-inf");
        assert!(text(&wide_operation(format, "/", &x87(0), &x87(0)).unwrap()).contains("nan"));
        let infinity = wide_operation(format, "/", &x87(1), &x87(0)).unwrap();
        assert!(text(&wide_operation(format, "-", &infinity, &infinity).unwrap()).contains("nan"));
        assert_eq!(text(&wide_operation(format, "+", &infinity, &x87(5)).unwrap()), "inf");
    }

    #[test]
    fn overflow_and_underflow() {
        let format = WideFloat::X87Extended;
        let largest = {
            let mut bytes = vec![0xff; 8];
            bytes.extend_from_slice(&0x7ffeu16.to_le_bytes());
            bytes.resize(16, 0);
            bytes
        };
        assert_eq!(text(&wide_operation(format, "*", &largest, &x87(2)).unwrap()), "inf");
        let smallest = {
            let mut bytes = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            bytes.resize(16, 0);
            bytes
        };
        assert_eq!(text(&wide_operation(format, "/", &smallest, &x87(2)).unwrap()), "0");
        assert_eq!(text(&wide_operation(format, "/", &smallest, &x87(1)).unwrap()), "3.64519953188247460253e-4951");
    }
}
