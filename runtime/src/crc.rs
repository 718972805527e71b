//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the checksum that
//! seals an artifact. Table-free, so it costs no flash; artifacts are checked
//! once at boot, so speed does not matter here.

/// CRC-32 of `bytes` (the same value as zlib's `crc32`).
pub const fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut i = 0;
    while i < bytes.len() {
        crc ^= bytes[i] as u32;
        let mut bit = 0;
        while bit < 8 {
            // Branch-free: subtracting the low bit gives an all-ones mask.
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            bit += 1;
        }
        i += 1;
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn matches_published_check_values() {
        // The standard check value of CRC-32/ISO-HDLC, and two zlib values.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut data = *b"ddis artifact payload";
        let good = crc32(&data);
        for byte in 0..data.len() {
            for bit in 0..8 {
                data[byte] ^= 1 << bit;
                assert_ne!(crc32(&data), good, "flip of bit {bit} in byte {byte} went unseen");
                data[byte] ^= 1 << bit;
            }
        }
    }
}
