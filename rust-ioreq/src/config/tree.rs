//! Whole-tree walks over a device tree already checked by `fdtcheck` (so nodes nest at most
//! `fdtcheck::MAX_DEPTH` deep): a depth-first visit without recursion, a lookup by full path,
//! and the duplicate-phandle check of the involved domains.

use alloc::vec::Vec;

use fdt::node::FdtNode;
use fdt::Fdt;

use super::{err, phandle_lenient, Config, ConfigError, ErrorKind, Path, Text};

/// One node met by [`walk`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Visit<'p, 'b, 'a> {
    /// The node.
    pub node: FdtNode<'b, 'a>,
    /// Its parent (whose `#address-cells`/`#size-cells` apply to its `reg`).
    pub parent: Option<FdtNode<'b, 'a>>,
    /// Node names from the walk's root (excluded) down to this node (included).
    pub names: &'p [&'a str],
}

impl Visit<'_, '_, '_> {
    /// Returns the node's path (cut if very long: messages only).
    pub fn path(&self) -> Text {
        path_of(self.names)
    }
}

/// Joins names into `/a/b/c` (`/` for none).
fn path_of(names: &[&str]) -> Text {
    let mut t = Text::new();
    if names.is_empty() {
        t.push("/");
    }
    for n in names {
        t.push("/");
        t.push(n);
    }
    t
}

/// Visits `root` and every node below it, parents before children, in tree order.
pub(super) fn walk<'b, 'a, E>(
    root: FdtNode<'b, 'a>,
    mut visit: impl FnMut(&Visit<'_, 'b, 'a>) -> Result<(), E>,
) -> Result<(), E> {
    visit(&Visit {
        node: root,
        parent: None,
        names: &[],
    })?;
    let mut names: Vec<&'a str> = Vec::new();
    let mut stack = Vec::new();
    stack.push((root, root.children()));
    while let Some((parent, children)) = stack.last_mut() {
        match children.next() {
            Some(child) => {
                let parent = *parent;
                names.push(child.name);
                visit(&Visit {
                    node: child,
                    parent: Some(parent),
                    names: &names,
                })?;
                stack.push((child, child.children()));
            }
            None => {
                stack.pop();
                names.pop();
            }
        }
    }
    Ok(())
}

/// A node found by [`find_by_path`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Found<'b, 'a> {
    pub node: FdtNode<'b, 'a>,
    pub parent: Option<FdtNode<'b, 'a>>,
    pub path: Text,
}

/// Finds the node at `path` (`/a/b@1`), comparing full node names without case as Xen's
/// `dt_find_node_by_path()` does.
pub(super) fn find_by_path<'b, 'a>(fdt: &'b Fdt<'a>, path: &str) -> Option<Found<'b, 'a>> {
    let mut node = fdt.find_node("/")?;
    let mut parent = None;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let child = node
            .children()
            .find(|c| c.name.eq_ignore_ascii_case(part))?;
        parent = Some(node);
        node = child;
    }
    Some(Found {
        node,
        parent,
        path: Text::from_str(path),
    })
}

/// Refuses a phandle of an involved domain that another node of the tree carries too: the
/// device naming it could mean either.
pub(super) fn check_phandles(config: &Config, fdt: &Fdt<'_>) -> Result<(), ConfigError> {
    if config.domains().iter().all(|d| d.phandle.is_none()) {
        return Ok(());
    }
    let Some(root) = fdt.find_node("/") else {
        return Ok(());
    };
    // Per domain: another node carrying its phandle, if any.
    let mut other: [Option<Text>; super::MAX_DOMAINS] = [None; super::MAX_DOMAINS];
    walk(root, |v| {
        let Some(p) = phandle_lenient(&v.node) else {
            return Ok(());
        };
        for (i, d) in config.domains().iter().enumerate() {
            let itself = matches!(v.names, [chosen, name] if *chosen == "chosen" && *name == d.name.as_str());
            if d.phandle == Some(p) && !itself && other[i].is_none() {
                other[i] = Some(v.path());
            }
        }
        Ok::<(), ConfigError>(())
    })?;
    for (d, other) in config.domains().iter().zip(other) {
        if let (Some(phandle), Some(other)) = (d.phandle, other) {
            return Err(err(
                &Path::Domain(d.name),
                "phandle",
                ErrorKind::DuplicatePhandle { phandle, other },
            ));
        }
    }
    Ok(())
}
