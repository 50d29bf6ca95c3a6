//! Fixed-capacity containers for tables built once at boot: no allocation, `Copy` where the
//! contents are.

use core::fmt;

/// A string of at most `N` bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FixedStr<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> FixedStr<N> {
    /// Returns an empty string.
    pub const fn new() -> Self {
        FixedStr {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Copies `s`, cut at a character boundary if longer than `N` (for names in messages).
    #[allow(clippy::should_implement_trait)] // infallible and truncating, unlike FromStr
    pub fn from_str(s: &str) -> Self {
        let mut f = Self::new();
        f.push(s);
        f
    }

    /// Copies `s`, or returns `None` if it is longer than `N`.
    pub fn try_from_str(s: &str) -> Option<Self> {
        (s.len() <= N).then(|| Self::from_str(s))
    }

    /// Appends as much of `s` as fits, cutting at a character boundary.
    pub fn push(&mut self, s: &str) {
        let len = usize::from(self.len);
        let mut n = s.len().min(N - len);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[len..len + n].copy_from_slice(&s.as_bytes()[..n]);
        // len + n <= N <= 255 (checked in `new`).
        self.len = (len + n) as u8;
    }

    /// Returns the text.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in, so this cannot fail.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A vector of at most `N` `Copy` items, stored inline.
#[derive(Clone, Copy)]
pub struct Table<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

/// Returned by [`Table::push`] when the table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

impl<T: Copy + Default, const N: usize> Table<T, N> {
    /// Returns an empty table.
    pub fn new() -> Self {
        Table {
            items: [T::default(); N],
            len: 0,
        }
    }

    /// Appends `item`, or fails when full.
    pub fn push(&mut self, item: T) -> Result<(), Full> {
        let slot = self.items.get_mut(self.len).ok_or(Full)?;
        *slot = item;
        self.len += 1;
        Ok(())
    }

    /// Returns the items.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    /// Returns the items, mutably (boot-time construction only).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }

    /// Returns the number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Tells whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over the items.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.as_slice().iter()
    }
}

impl<T: Copy + Default, const N: usize> Default for Table<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for Table<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_str_cuts_at_char_boundaries() {
        let s = FixedStr::<4>::from_str("abé!");
        assert_eq!(s.as_str(), "abé");
        assert_eq!(FixedStr::<3>::try_from_str("abcd"), None);
        assert_eq!(FixedStr::<4>::try_from_str("abcd").map(|s| s.len), Some(4));
        let mut long = FixedStr::<255>::new();
        long.push(&"x".repeat(300));
        assert_eq!(long.as_str().len(), 255);
    }

    #[test]
    fn table_refuses_past_capacity() {
        let mut t = Table::<u8, 2>::new();
        assert_eq!(t.push(1), Ok(()));
        assert_eq!(t.push(2), Ok(()));
        assert_eq!(t.push(3), Err(Full));
        assert_eq!(t.as_slice(), &[1, 2]);
    }
}
