//! What the benchmarks share.

use orch::executor::sim::host_address;
use orch::plan::{Desired, DesiredHost};
use orch::spec::Promotion;

/// A desired tree: host i under (i - 1) / fanout; `primary` swaps places with host 0.
pub fn desired(n: usize, fanout: usize, primary: usize) -> Desired {
    let name = |i: usize| {
        let i = if i == primary {
            0
        } else if i == 0 {
            primary
        } else {
            i
        };
        format!("h{i}")
    };
    Desired {
        cluster: "bench".into(),
        hosts: (0..n)
            .map(|i| DesiredHost {
                id: name(i),
                address: host_address(if i == primary {
                    0
                } else if i == 0 {
                    primary
                } else {
                    i
                }),
                source: (i > 0).then(|| name((i - 1) / fanout)),
                promotion: Promotion::Neutral,
                delay_secs: 0,
                dc: None,
            })
            .collect(),
    }
}
