//! A hook's source stamp: a custom section of the component that names the
//! SHA-256 of the sources it was built from.
//!
//! Not every toolchain builds byte for byte reproducibly: componentize-py
//! snapshots a running CPython, whose heap differs between two builds of
//! the same sources (about 19 MiB that differ in size and content each
//! time). A backend's `model_version` derived from the component's bytes
//! would then change on every rebuild, and Label Studio would re-predict
//! every task. So `hook build` hashes everything a build reads (the hook's
//! files, the SDK, the WIT, the toolchain's version) and records that hash
//! in the custom section [`SECTION`]; the server derives `model_version`
//! from it when a component has one (`HookInfo::version_id`), and
//! `hook build` skips a build whose output already carries the hash of the
//! current sources.
//!
//! The stamp is the uploader's claim and is only used as a name: the
//! compiled-artefact cache stays keyed by the SHA-256 of the bytes, so a
//! forged stamp can at most make two of the uploader's own hooks share a
//! `model_version`.

/// The custom section's name.
pub const SECTION: &str = "cls:source-sha256";

/// The source hash recorded in `component`, if it has a well-formed one
/// (64 lower-case hex digits) among its top-level sections.
pub fn read(component: &[u8]) -> Option<String> {
    let mut rest = component.get(8..)?;
    if !component.starts_with(b"\0asm") {
        return None;
    }
    while let Some((&id, after_id)) = rest.split_first() {
        let (size, after_size) = leb_u32(after_id)?;
        let payload = after_size.get(..size as usize)?;
        rest = &after_size[size as usize..];
        if id != 0 {
            continue;
        }
        let (name_len, after_len) = leb_u32(payload)?;
        let name = after_len.get(..name_len as usize)?;
        if name == SECTION.as_bytes() {
            let data = &after_len[name_len as usize..];
            return std::str::from_utf8(data)
                .ok()
                .filter(|hex| is_sha256_hex(hex))
                .map(str::to_owned);
        }
    }
    None
}

/// Appends the custom section [`SECTION`] holding `sha256_hex`.
pub fn append(component: &mut Vec<u8>, sha256_hex: &str) {
    *component = with_custom_section(component, SECTION, sha256_hex.as_bytes());
}

/// `wasm` (a module or a component) with one more custom section at the
/// end. Custom sections may come anywhere and wasmtime ignores them, so the
/// result behaves the same with different bytes.
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(name.len() + payload.len() + 5);
    push_leb(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(wasm.len() + body.len() + 6);
    out.extend_from_slice(wasm);
    out.push(0);
    push_leb(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An unsigned LEB128 `u32` and what follows it.
fn leb_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        value |= u32::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn push_leb(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component header (layer 1) with one non-custom section of 200
    /// bytes, so sizes take two LEB128 bytes.
    fn component() -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
        bytes.push(1);
        push_leb(&mut bytes, 200);
        bytes.extend(std::iter::repeat_n(0xAB, 200));
        bytes
    }

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn an_appended_stamp_is_read_back() {
        let mut bytes = component();
        assert_eq!(read(&bytes), None);
        append(&mut bytes, HASH);
        assert_eq!(read(&bytes).as_deref(), Some(HASH));
    }

    #[test]
    fn other_custom_sections_and_malformed_stamps_are_ignored() {
        let mut bytes = component();
        // A custom section of another name first.
        let other = b"\x04namex";
        bytes.push(0);
        push_leb(&mut bytes, other.len());
        bytes.extend_from_slice(other);
        let mut malformed = bytes.clone();
        append(&mut malformed, "not-a-hash");
        assert_eq!(read(&malformed), None);
        append(&mut bytes, HASH);
        assert_eq!(read(&bytes).as_deref(), Some(HASH));
    }

    #[test]
    fn truncated_or_foreign_bytes_have_no_stamp() {
        let mut bytes = component();
        append(&mut bytes, HASH);
        assert_eq!(read(&bytes[..bytes.len() - 1]), None);
        assert_eq!(read(b"PK\x03\x04 not wasm"), None);
        assert_eq!(read(b""), None);
        // A size that runs past the end.
        assert_eq!(read(b"\0asm\x0d\x00\x01\x00\x00\xff\xff\xff\xff\x0f"), None);
    }
}
