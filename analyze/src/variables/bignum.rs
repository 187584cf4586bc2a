//! A small unsigned big integer for exact float conversion and arithmetic:
//! values up to a few thousand bits (2^16445 and 5^16445 for the smallest
//! x87 denormal), with the operations decimal conversion and rounding need.

use std::cmp::Ordering;

/// An unsigned integer of any size, in little-endian 32-bit limbs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigUint {
    /// The limbs, least significant first, without zero limbs at the top.
    pub limbs: Vec<u32>,
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
    /// Multiplies by `factor` in place.
    pub fn mul_small(&mut self, factor: u32) {
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
    pub fn mul_pow5(&mut self, mut power: u32) {
        const POW5_13: u32 = 1_220_703_125;
        while power >= 13 {
            self.mul_small(POW5_13);
            power -= 13;
        }
        self.mul_small(5u32.pow(power));
    }

    /// Returns the value shifted left by `bits`.
    pub fn shl(mut self, bits: u32) -> BigUint {
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
    pub fn shr(self, bits: u32) -> (BigUint, bool) {
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
    pub fn div_small(&mut self, divisor: u32) -> u32 {
        let mut remainder = 0u64;
        for limb in self.limbs.iter_mut().rev() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / u64::from(divisor)) as u32;
            remainder = current % u64::from(divisor);
        }
        trim(&mut self.limbs);
        remainder as u32
    }

    /// Returns the value in decimal digits.
    pub fn to_decimal(&self) -> String {
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

impl BigUint {
    /// Returns the number of significant bits; 0 for zero.
    pub fn bit_len(&self) -> u32 {
        match self.limbs.last() {
            Some(top) => (self.limbs.len() as u32 - 1) * 32 + (32 - top.leading_zeros()),
            None => 0,
        }
    }

    /// Returns whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    /// Returns the low 128 bits.
    pub fn low_u128(&self) -> u128 {
        self.limbs.iter().take(4).enumerate().fold(0u128, |value, (index, &limb)| value | u128::from(limb) << (32 * index))
    }

    /// Returns `self + other`.
    pub fn add(&self, other: &BigUint) -> BigUint {
        let mut limbs = Vec::with_capacity(self.limbs.len().max(other.limbs.len()) + 1);
        let mut carry = 0u64;
        for index in 0..self.limbs.len().max(other.limbs.len()) {
            let sum = u64::from(*self.limbs.get(index).unwrap_or(&0)) + u64::from(*other.limbs.get(index).unwrap_or(&0)) + carry;
            limbs.push(sum as u32);
            carry = sum >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
        trim(&mut limbs);
        BigUint { limbs }
    }

    /// Returns `self - other`; `other` must not be larger.
    pub fn sub(&self, other: &BigUint) -> BigUint {
        let mut limbs = Vec::with_capacity(self.limbs.len());
        let mut borrow = 0i64;
        for index in 0..self.limbs.len() {
            let mut difference = i64::from(self.limbs[index]) - i64::from(*other.limbs.get(index).unwrap_or(&0)) - borrow;
            borrow = i64::from(difference < 0);
            if difference < 0 {
                difference += 1 << 32;
            }
            limbs.push(difference as u32);
        }
        trim(&mut limbs);
        BigUint { limbs }
    }

    /// Returns `self * other`.
    pub fn mul(&self, other: &BigUint) -> BigUint {
        let mut limbs = vec![0u32; self.limbs.len() + other.limbs.len()];
        for (i, &a) in self.limbs.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.limbs.iter().enumerate() {
                let current = u64::from(limbs[i + j]) + u64::from(a) * u64::from(b) + carry;
                limbs[i + j] = current as u32;
                carry = current >> 32;
            }
            limbs[i + other.limbs.len()] = carry as u32;
        }
        trim(&mut limbs);
        BigUint { limbs }
    }

    /// Divides by `divisor` (not zero, below 2^127) bit by bit and returns
    /// the quotient and whether the remainder is not zero.
    pub fn div_u128(&self, divisor: u128) -> (BigUint, bool) {
        let mut quotient = vec![0u32; self.limbs.len()];
        let mut remainder = 0u128;
        for bit in (0..self.bit_len()).rev() {
            let next = (self.limbs[(bit / 32) as usize] >> (bit % 32)) & 1;
            remainder = remainder << 1 | u128::from(next);
            if remainder >= divisor {
                remainder -= divisor;
                quotient[(bit / 32) as usize] |= 1 << (bit % 32);
            }
        }
        trim(&mut quotient);
        (BigUint { limbs: quotient }, remainder != 0)
    }

    /// Compares two values.
    pub fn compare(&self, other: &BigUint) -> Ordering {
        self.limbs.len().cmp(&other.limbs.len()).then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_round_trips() {
        let a = BigUint::from(u128::MAX);
        let b = BigUint::from(12345u128);
        let product = a.mul(&b);
        assert_eq!(product.div_u128(12345), (a.clone(), false));
        assert_eq!(product.add(&b).sub(&b), product);
        assert_eq!(a.bit_len(), 128);
        assert_eq!(BigUint::from(1u128).shl(200).bit_len(), 201);
        assert_eq!(b.compare(&a), Ordering::Less);
        assert_eq!(BigUint::from(7u128).div_u128(2), (BigUint::from(3u128), true));
        assert_eq!(b.to_decimal(), "12345");
    }
}
