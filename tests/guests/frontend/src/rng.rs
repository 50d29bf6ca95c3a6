//! virtio-rng checks (virtio 1.2 §5.4) through virtio-drivers' `VirtIORng`: two requests for
//! entropy return bytes, neither all zero, and not the same bytes twice.

use guest_common::scenario;
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::mmio::MmioTransport;

use crate::dt::VirtioNode;
use crate::hal::{self, GuestHal};
use crate::name;

/// Bytes asked for per request.
const REQUEST_BYTES: usize = 64;

/// Runs the checks on the entropy device at `node` (transport already probed).
pub fn run(node: &VirtioNode, transport: MmioTransport<'static>) {
    let prefix = name!("rng@{:x}", node.base);
    let prefix = prefix.as_str();
    let mut rng = match VirtIORng::<GuestHal, _>::new(transport) {
        Ok(rng) => rng,
        Err(e) => {
            scenario::check(
                name!("{prefix}-init").as_str(),
                false,
                format_args!("VirtIORng::new: {e}"),
            );
            return;
        }
    };
    let buf = hal::buffer(1);
    let (first, rest) = buf.split_at_mut(REQUEST_BYTES);
    let second = &mut rest[..REQUEST_BYTES];
    let check = name!("{prefix}-read");
    let n1 = match rng.request_entropy(first) {
        Ok(n) => n,
        Err(e) => {
            scenario::check(check.as_str(), false, format_args!("first request: {e}"));
            return;
        }
    };
    let n2 = match rng.request_entropy(second) {
        Ok(n) => n,
        Err(e) => {
            scenario::check(check.as_str(), false, format_args!("second request: {e}"));
            return;
        }
    };
    let (n1, n2) = (n1.min(REQUEST_BYTES), n2.min(REQUEST_BYTES));
    scenario::check(
        check.as_str(),
        n1 > 0 && n2 > 0,
        format_args!("two requests for {REQUEST_BYTES} bytes returned {n1} and {n2} bytes"),
    );
    let (a, b) = (&first[..n1], &second[..n2]);
    let zero = |s: &[u8]| s.iter().all(|&x| x == 0);
    scenario::check(
        name!("{prefix}-nonzero").as_str(),
        n1 > 0 && n2 > 0 && !zero(a) && !zero(b),
        format_args!(
            "first bytes {:02x?}, {:02x?}",
            &a[..n1.min(8)],
            &b[..n2.min(8)]
        ),
    );
    let n = n1.min(n2);
    scenario::check(
        name!("{prefix}-differ").as_str(),
        n > 0 && a[..n] != b[..n],
        format_args!(
            "the two reads {} in their first {n} bytes",
            if a[..n] != b[..n] {
                "differ"
            } else {
                "are equal"
            }
        ),
    );
}
