//! The fields of a tar header block: member paths, octal and base-256 numbers, the checksum, pax
//! records, padding.

use super::{BLOCK, TarError};

pub(super) const REASON_NOT_RELATIVE: &str = "is not relative to the volume root (expected ./...)";
pub(super) const REASON_ABSOLUTE: &str =
    "is an absolute path (it would be written outside the volume)";

/// A member path written by `tar -C <mount> .`: `.`, `./` or `./…`, with no `..` component.
pub(super) fn check_member_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("has an empty name");
    }
    if path.starts_with(b"/") {
        return Err(REASON_ABSOLUTE);
    }
    if path != b"." && !path.starts_with(b"./") {
        return Err(REASON_NOT_RELATIVE);
    }
    if path.split(|b| *b == b'/').any(|c| c == b"..") {
        return Err("contains a `..` component");
    }
    Ok(())
}

pub(super) fn padding_of(size: u64) -> u64 {
    let rem = size % BLOCK as u64;
    if rem == 0 { 0 } else { BLOCK as u64 - rem }
}

/// The bytes before the first NUL.
pub(super) fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

pub(super) fn trim_nuls(data: &[u8]) -> &[u8] {
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &data[..end]
}

/// An octal field (NUL/space padded) or GNU base-256 (high bit set, positive only).
pub(super) fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*byte))?;
        }
        return Some(value);
    }
    let text = field
        .iter()
        .skip_while(|b| **b == b' ' || **b == 0)
        .take_while(|b| **b != b' ' && **b != 0)
        .copied()
        .collect::<Vec<u8>>();
    if text.is_empty() {
        return Some(0);
    }
    let mut value: u64 = 0;
    for digit in text {
        if !(b'0'..=b'7').contains(&digit) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(digit - b'0'))?;
    }
    Some(value)
}

pub(super) fn verify_checksum(block: &[u8; BLOCK], offset: u64) -> Result<(), TarError> {
    let stored = parse_numeric(&block[148..156]).ok_or_else(|| TarError::BadHeader {
        offset,
        reason: "the checksum field is not a valid number (not a tar stream?)".to_owned(),
    })?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&i) { b' ' } else { *byte };
        unsigned += u64::from(byte);
        signed += i64::from(byte.cast_signed());
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(TarError::BadHeader {
            offset,
            reason: format!(
                "checksum mismatch (stored {stored}, computed {unsigned}): not a tar stream, or \
                 corrupted"
            ),
        })
    }
}

/// A pax record's key and value.
pub(super) type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// Pax records `"<len> <key>=<value>\n"`.
pub(super) fn parse_pax(data: &[u8]) -> Result<Vec<PaxRecord<'_>>, &'static str> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a pax record has no length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a pax record length is not a number")?;
        if len <= space + 1 || len > rest.len() {
            return Err("a pax record length is out of range");
        }
        let record = &rest[space + 1..len];
        let Some((&b'\n', body)) = record.split_last() else {
            return Err("a pax record does not end with a newline");
        };
        let eq = body
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a pax record has no `=`")?;
        records.push((&body[..eq], &body[eq + 1..]));
        rest = &rest[len..];
    }
    Ok(records)
}
