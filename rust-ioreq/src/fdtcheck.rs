//! Structural check of a flattened device tree (Devicetree Specification v0.4 §5) before the
//! `fdt` 0.1.5 crate reads it.
//!
//! `fdt` 0.1.5 trusts the structure block: a property running past the block, a name without
//! its NUL, a name offset past the strings block, a non-UTF-8 name, unbalanced nodes, or a NOP
//! token inside a node it skips over make it panic (slice index, `unwrap`, `assert_eq!`). This
//! walks the block once, without recursion, and accepts only what the crate reads without
//! panicking:
//!
//! ```text
//! block  = NOP* root NOP* END
//! root   = BEGIN_NODE "" NOP* PROP* (NOP | node)* END_NODE      (NOPs where QEMU leaves them)
//! node   = BEGIN_NODE name PROP* node* NOP* END_NODE            (what `fdt` can skip)
//! ```
//!
//! Nodes nest at most [`MAX_DEPTH`] deep (libfdt's `FDT_MAX_DEPTH`), which also bounds the
//! crate's recursion on Xen's small stacks. A spec-valid tree with a NOP token between the
//! properties or children of a non-root node is refused: `fdt` 0.1.5 would panic on it.

/// Deepest node nesting accepted (the root is depth 1).
pub const MAX_DEPTH: usize = 32;

const HEADER_SIZE: usize = 40;
const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// Returns `[start, start + len)` of `blob` if it lies inside.
fn block(blob: &[u8], start: u32, len: u32) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    blob.get(start..end)
}

/// Returns the length of the NUL-terminated UTF-8 string at `at`, NUL excluded.
fn c_str(bytes: &[u8], at: usize) -> Option<usize> {
    let rest = bytes.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&rest[..len]).ok()?;
    Some(len)
}

/// Where the walk is inside the current node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// After the name: properties may follow.
    Props,
    /// After a child (or, in the root, a NOP after properties): children, NOPs, the end.
    Children,
    /// After a NOP in a non-root node: only NOPs and END_NODE.
    Closing,
}

/// Checks `blob`; the error says what is wrong, for tests and logs.
pub fn check(blob: &[u8]) -> Result<(), &'static str> {
    if blob.len() < HEADER_SIZE {
        return Err("shorter than a header");
    }
    let field = |i: usize| be32(blob, 4 * i).unwrap_or(0);
    if field(0) != MAGIC {
        return Err("bad magic");
    }
    let total = usize::try_from(field(1)).map_err(|_| "bad totalsize")?;
    let blob = blob.get(..total).ok_or("totalsize past the buffer")?;
    // Version 17 added size_dt_struct, which the reader uses.
    if field(5) < 17 || field(6) > 17 {
        return Err("unsupported version");
    }
    let structs = block(blob, field(2), field(9)).ok_or("structure block out of bounds")?;
    let strings = block(blob, field(3), field(8)).ok_or("strings block out of bounds")?;

    let mut at = 0;
    let mut depth = 0usize;
    let mut phase = Phase::Props;
    let mut root_props = false;
    let mut root_done = false;
    loop {
        let token = be32(structs, at).ok_or("structure block ends without END")?;
        at += 4;
        match token {
            // Before and after the root: anywhere.
            NOP if depth == 0 => {}
            // In the root: the reader skips NOPs before its properties and between its
            // children, but stops reading properties at one.
            NOP if depth == 1 => {
                if root_props {
                    phase = Phase::Children;
                }
            }
            // Elsewhere the reader skips NOPs only just before END_NODE.
            NOP => phase = Phase::Closing,
            END if root_done => return Ok(()),
            END => return Err("END inside a node"),
            BEGIN_NODE if root_done => return Err("a second root node"),
            BEGIN_NODE if phase == Phase::Closing => return Err("NOP before a child node"),
            BEGIN_NODE => {
                let len = c_str(structs, at).ok_or("bad node name")?;
                if depth == 0 && len != 0 {
                    return Err("root node with a name");
                }
                at = align4(at + len + 1).ok_or("overflow")?;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err("nodes nested too deep");
                }
                phase = Phase::Props;
            }
            PROP if depth == 0 => return Err("property outside the root"),
            PROP if phase == Phase::Closing => return Err("NOP before a property"),
            PROP if phase == Phase::Children => return Err("property after a child node"),
            PROP => {
                let len = be32(structs, at).ok_or("truncated property")?;
                let name = be32(structs, at + 4).ok_or("truncated property")?;
                let data = at + 8;
                let end = data
                    .checked_add(usize::try_from(len).map_err(|_| "overflow")?)
                    .filter(|&e| e <= structs.len())
                    .ok_or("property value past the structure block")?;
                let name = usize::try_from(name).map_err(|_| "overflow")?;
                c_str(strings, name).ok_or("bad property name offset")?;
                at = align4(end).ok_or("overflow")?;
                root_props |= depth == 1;
            }
            END_NODE if depth == 0 => return Err("END_NODE outside a node"),
            END_NODE => {
                depth -= 1;
                root_done = depth == 0;
                // Back in the parent, after a child.
                phase = Phase::Children;
            }
            _ => return Err("unknown token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Assembles a blob from structure tokens (`Tok`) and a strings block.
    enum Tok<'a> {
        Begin(&'a str),
        Prop(u32, &'a [u8]),
        End,
        Nop,
        Fin,
        Raw(u32),
    }

    fn blob(toks: &[Tok<'_>], strings: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        for t in toks {
            match t {
                Tok::Begin(n) => {
                    s.extend(BEGIN_NODE.to_be_bytes());
                    s.extend(n.as_bytes());
                    s.push(0);
                }
                Tok::Prop(name, v) => {
                    s.extend(PROP.to_be_bytes());
                    s.extend((v.len() as u32).to_be_bytes());
                    s.extend(name.to_be_bytes());
                    s.extend(*v);
                }
                Tok::End => s.extend(END_NODE.to_be_bytes()),
                Tok::Nop => s.extend(NOP.to_be_bytes()),
                Tok::Fin => s.extend(END.to_be_bytes()),
                Tok::Raw(v) => s.extend(v.to_be_bytes()),
            }
            while s.len() % 4 != 0 {
                s.push(0);
            }
        }
        let off_struct = HEADER_SIZE + 16; // an empty reservation map
        let off_strings = off_struct + s.len();
        let total = off_strings + strings.len();
        let mut b = Vec::new();
        for v in [
            MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            HEADER_SIZE as u32,
            17,
            16,
            0,
            strings.len() as u32,
            s.len() as u32,
        ] {
            b.extend(v.to_be_bytes());
        }
        b.extend([0; 16]);
        b.extend(s);
        b.extend(strings);
        b
    }

    const STRINGS: &[u8] = b"compatible\0reg\0";

    fn parses_without_panicking(b: &[u8]) {
        // What config.rs does with an accepted blob.
        let fdt = fdt::Fdt::new(b).unwrap();
        let root = fdt.find_node("/").unwrap();
        for n in root.children() {
            let _ = n.property("reg");
            for c in n.children() {
                let _ = c.compatible().map(|c| c.all().count());
                for g in c.children() {
                    let _ = g.property("compatible");
                }
            }
        }
    }

    #[test]
    fn accepts_nops_where_qemu_leaves_them_and_before_end_node() {
        use Tok::*;
        let b = blob(
            &[
                Nop,
                Begin(""),
                Nop,
                Prop(0, b"x\0"),
                Nop,
                Begin("memory@0"),
                Prop(11, &[0; 8]),
                Nop,
                End,
                Nop,
                Nop,
                Begin("chosen"),
                Begin("dom"),
                Prop(0, b"xen,domain\0"),
                Begin("dev"),
                End,
                End,
                End,
                Nop,
                End,
                Nop,
                Fin,
            ],
            STRINGS,
        );
        assert_eq!(check(&b), Ok(()));
        parses_without_panicking(&b);
    }

    #[test]
    fn refuses_what_fdt_would_panic_on() {
        use Tok::*;
        let cases: [(&[Tok<'_>], &str); 14] = [
            (
                &[Begin(""), Begin("a"), Nop, Prop(0, b"")],
                "NOP before a property",
            ),
            (
                &[Begin(""), Begin("a"), Prop(0, b""), Nop, Prop(0, b"")],
                "NOP before a property",
            ),
            (
                &[Begin(""), Begin("a"), Begin("b"), End, Nop, Begin("c")],
                "NOP before a child node",
            ),
            (
                &[Begin(""), Begin("a"), Nop, Begin("c")],
                "NOP before a child node",
            ),
            (
                &[Begin(""), Begin("a"), Begin("b"), End, Prop(0, b"")],
                "property after a child node",
            ),
            (
                &[Begin(""), Prop(0, b""), Nop, Prop(0, b"")],
                "property after a child node",
            ),
            (&[Begin("x"), End, Fin], "root node with a name"),
            (
                &[Begin(""), Prop(99, b""), End, Fin],
                "bad property name offset",
            ),
            (
                &[Begin(""), Prop(0, b""), Raw(PROP), Raw(0x100), Raw(0)],
                "property value past the structure block",
            ),
            (&[Begin(""), End, Begin(""), End, Fin], "a second root node"),
            (&[Begin(""), End], "structure block ends without END"),
            (&[Begin(""), Fin], "END inside a node"),
            (&[End, Fin], "END_NODE outside a node"),
            (&[Begin(""), Raw(5)], "unknown token"),
        ];
        for (toks, why) in cases {
            assert_eq!(check(&blob(toks, STRINGS)), Err(why));
        }
        // A name without NUL, a non-UTF-8 name.
        let mut b = blob(&[Begin(""), Begin("abc"), End, End, Fin], STRINGS);
        let at = b.iter().position(|&c| c == b'a').unwrap();
        b[at + 3] = b'd';
        b.truncate(b.len() - STRINGS.len() - 12);
        let _ = check(&b).unwrap_err();
        let mut b = blob(&[Begin(""), Begin("abc"), End, End, Fin], STRINGS);
        let at = b.iter().position(|&c| c == b'a').unwrap();
        b[at] = 0xff;
        assert_eq!(check(&b), Err("bad node name"));
    }

    #[test]
    fn refuses_deep_nesting() {
        use Tok::*;
        let mut toks = std::vec![Begin("")];
        toks.extend((1..MAX_DEPTH).map(|_| Begin("n")));
        toks.extend((0..MAX_DEPTH).map(|_| End));
        toks.push(Fin);
        assert_eq!(check(&blob(&toks, STRINGS)), Ok(()));
        let mut deeper = std::vec![Begin("")];
        deeper.extend((0..MAX_DEPTH).map(|_| Begin("n")));
        deeper.extend((0..=MAX_DEPTH).map(|_| End));
        deeper.push(Fin);
        assert_eq!(check(&blob(&deeper, STRINGS)), Err("nodes nested too deep"));
    }

    #[test]
    fn refuses_bad_headers() {
        use Tok::*;
        let good = blob(&[Begin(""), End, Fin], STRINGS);
        assert_eq!(check(&good), Ok(()));
        assert_eq!(check(&good[..39]), Err("shorter than a header"));
        for (field, value, why) in [
            (0, 0xd00d_feee, "bad magic"),
            (1, good.len() as u32 + 1, "totalsize past the buffer"),
            (2, good.len() as u32, "structure block out of bounds"),
            (9, u32::MAX, "structure block out of bounds"),
            (3, u32::MAX, "strings block out of bounds"),
            (8, 0x1000, "strings block out of bounds"),
            (5, 16, "unsupported version"),
            (6, 18, "unsupported version"),
        ] {
            let mut b = good.clone();
            b[field * 4..field * 4 + 4].copy_from_slice(&value.to_be_bytes());
            assert_eq!(check(&b), Err(why), "field {field} = {value:#x}");
        }
    }
}
