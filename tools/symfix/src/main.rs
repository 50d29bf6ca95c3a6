//! symfix: reads symbol names (one per line, from `nm -j`) and prints an
//! `objcopy --redefine-syms` map giving every Rust-mangled name a short readable one.
//!
//! Xen 4.17's `symbols_expand_symbol()` copies names into a 128-byte buffer without a bound, so
//! a Rust name of 300 characters corrupts the stack as soon as Xen prints a backtrace. Names are
//! demangled without their hash, their paths cut to the last two segments, characters that
//! `objcopy` or Xen's `symbols` tool would misread replaced, and capped at `MAX_LEN`.

use std::collections::HashSet;
use std::io::{self, BufRead, Write};

/// Longest name written; Xen's buffer is 128 bytes including the NUL.
const MAX_LEN: usize = 96;

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut names: Vec<String> = Vec::new();
    for line in stdin.lock().lines() {
        let line = line?;
        let name = line.trim();
        if !name.is_empty() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    names.dedup();
    let out = io::stdout();
    let mut out = out.lock();
    for (old, new) in redefinitions(&names) {
        writeln!(out, "{old} {new}")?;
    }
    Ok(())
}

/// Returns `(mangled, short)` pairs for every Rust-mangled name, with all short names unique and
/// distinct from every name that is kept as it is.
fn redefinitions(names: &[String]) -> Vec<(String, String)> {
    let mut taken: HashSet<String> = names
        .iter()
        .filter(|n| !is_rust_mangled(n))
        .cloned()
        .collect();
    let mut pairs = Vec::new();
    for old in names.iter().filter(|n| is_rust_mangled(n)) {
        let base = short_name(old);
        let mut candidate = base.clone();
        let mut n = 1;
        while taken.contains(&candidate) {
            n += 1;
            let suffix = format!("~{n}");
            let keep = base.len().min(MAX_LEN - suffix.len());
            candidate = format!("{}{suffix}", &base[..keep]);
        }
        taken.insert(candidate.clone());
        pairs.push((old.clone(), candidate));
    }
    pairs
}

fn is_rust_mangled(name: &str) -> bool {
    (name.starts_with("_R") || name.starts_with("_ZN"))
        && rustc_demangle::try_demangle(name).is_ok()
}

/// Demangles `name` (without hash), shortens paths and makes it safe for objcopy and Xen.
fn short_name(name: &str) -> String {
    let demangled = format!("{:#}", rustc_demangle::demangle(name));
    let shortened = shorten_paths(&demangled);
    let mut safe: String = shortened
        .chars()
        .map(|c| match c {
            ' ' => '_',
            // `#` starts a comment in an objcopy map file; `|` separates fields in `nm --format=sysv`.
            '#' => '~',
            '|' => '!',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect();
    if safe.len() > MAX_LEN {
        // Keep the tail: it holds the function's own name, the most useful part in a backtrace.
        let cut = safe.len() - (MAX_LEN - 2);
        let cut = (cut..safe.len())
            .find(|&i| safe.is_char_boundary(i))
            .unwrap_or(safe.len());
        safe = format!("..{}", &safe[cut..]);
    }
    safe
}

/// Cuts every `a::b::c::d` path to its last two segments (`c::d`).
fn shorten_paths(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut segment_starts: Vec<usize> = Vec::new();
    let mut token = String::new();
    let flush = |token: &mut String, starts: &mut Vec<usize>, out: &mut String| {
        if starts.len() >= 2 {
            out.push_str(&token[starts[starts.len() - 2]..]);
        } else {
            out.push_str(token);
        }
        token.clear();
        starts.clear();
    };
    let bytes: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_alphanumeric() || c == '_' || c == '{' || c == '}' || c == '#' {
            if token.is_empty() {
                segment_starts.push(0);
            }
            token.push(c);
        } else if c == ':' && bytes.get(i + 1) == Some(&':') && !token.is_empty() {
            token.push_str("::");
            segment_starts.push(token.len());
            i += 1;
        } else {
            flush(&mut token, &mut segment_starts, &mut out);
            out.push(c);
        }
        i += 1;
    }
    flush(&mut token, &mut segment_starts, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_paths_to_two_segments() {
        assert_eq!(shorten_paths("core::fmt::write"), "fmt::write");
        assert_eq!(
            shorten_paths("<a::b::C as d::e::F>::g"),
            "<b::C as e::F>::g"
        );
        assert_eq!(shorten_paths("f"), "f");
    }

    #[test]
    fn renames_only_rust_names_and_keeps_them_short_and_unique() {
        let names: Vec<String> = [
            "printk",
            "_RNvNtCsjaBXxn6ygSa_10rust_ioreq6config25count_virtio_mmio_devices",
            "_RNvXs1i_NtCsbiqOwJRPFFV_4core3fmtRNtNtNtB8_5panic10panic_info9PanicInfoNtB6_7Display3fmtCshbZO37WPLES_14rust_ioreq_xen",
            "_ZN4core3fmt5write17h0123456789abcdefE",
            "_ZN4core3fmt5write17hfedcba9876543210E",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pairs = redefinitions(&names);
        assert_eq!(pairs.len(), 4, "{pairs:?}");
        assert!(pairs
            .iter()
            .all(|(_, new)| new.len() <= MAX_LEN && !new.contains(' ')));
        let news: HashSet<_> = pairs.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(
            news.len(),
            pairs.len(),
            "short names must be unique: {pairs:?}"
        );
        assert!(
            news.contains("config::count_virtio_mmio_devices"),
            "{news:?}"
        );
        assert!(
            news.contains("fmt::write") && news.contains("fmt::write~2"),
            "{news:?}"
        );
    }

    #[test]
    fn caps_very_long_names_keeping_the_tail() {
        let long = format!(
            "_ZN{}E",
            (0..40)
                .map(|i| format!("8segment{i:02}"))
                .collect::<String>()
        );
        let s = short_name(&long);
        assert!(s.len() <= MAX_LEN, "{s}");
    }
}
