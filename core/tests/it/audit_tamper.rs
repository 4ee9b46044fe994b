//! Tampering with a 10,000-entry audit export, checked offline against signed checkpoints every
//! 1,000 entries (issue 13's target): single-entry changes, deletions, insertions and
//! reorderings — left as they are, or with every later hash recomputed as someone with write
//! access to the database would — and cuts of the tail past a checkpoint must all be reported.
//!
//! CI tries the ends, one checkpoint boundary and a fixed sample of other positions (each try
//! verifies all 10,000 entries, about a quarter of a second in a debug build);
//! `LETHE_AUDIT_TAMPER_STRIDE=1 cargo test --release -p lethe-core --test it audit_tamper` tries
//! every position (every k-th with `=k`; bench/README.md has the figures).

use chrono::{Duration, TimeZone, Utc};
use lethe_core::audit::{
    AuditEntry, AuditSigner, Checkpoint, ExportScope, GENESIS_HASH, PublicKeys,
    verify_with_checkpoints,
};
use serde_json::json;

const ENTRIES: i64 = 10_000;
const EVERY: i64 = 1_000;

/// Sets seq, prev_hash and hash of `entries[from..]` as an honest append would.
fn rechain(entries: &mut [AuditEntry], from: usize) {
    for i in from..entries.len() {
        entries[i].seq = i as i64 + 1;
        entries[i].prev_hash = if i == 0 {
            GENESIS_HASH.to_string()
        } else {
            entries[i - 1].hash.clone()
        };
        entries[i].hash = entries[i].computed_hash();
    }
}

fn chain() -> Vec<AuditEntry> {
    let start = Utc.with_ymd_and_hms(2026, 1, 7, 10, 0, 0).unwrap();
    let mut entries: Vec<AuditEntry> = (0..ENTRIES)
        .map(|i| AuditEntry {
            seq: 0,
            at: start + Duration::milliseconds(i * 37),
            actor: format!("worker:w{}", i % 7),
            action: ["request.filed", "file.erased", "export.downloaded"][i as usize % 3].into(),
            request_id: Some(format!("req-{}", i / 3)),
            subject: (i % 2 == 0).then(|| format!("{:064x}", i * 7919)),
            details: json!({ "rows_removed": i % 11, "file": format!("part-{i}.parquet") }),
            prev_hash: String::new(),
            hash: String::new(),
        })
        .collect();
    rechain(&mut entries, 0);
    entries
}

fn checkpoints(signer: &AuditSigner, entries: &[AuditEntry]) -> Vec<Checkpoint> {
    let mut out: Vec<Checkpoint> = Vec::new();
    for seq in (EVERY..=ENTRIES).step_by(EVERY as usize) {
        let at = entries[seq as usize - 1].at;
        let cp = Checkpoint::sign(signer, out.last(), seq, &entries[seq as usize - 1].hash, at);
        out.push(cp);
    }
    out
}

/// Positions (0-based entry indices) to tamper with.
fn positions() -> Vec<usize> {
    let n = ENTRIES as usize;
    if let Some(stride) = std::env::var("LETHE_AUDIT_TAMPER_STRIDE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&k| k > 0)
    {
        return (0..n).step_by(stride).chain([n - 1]).collect();
    }
    let boundary = 5 * EVERY as usize;
    let mut p: Vec<usize> = vec![0, 1, boundary - 2, boundary - 1, boundary, n - 2, n - 1];
    // A fixed pseudo-random sample (an LCG), the same on every run.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..3 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        p.push((x >> 33) as usize % n);
    }
    p.sort_unstable();
    p.dedup();
    p
}

#[test]
fn every_tampering_of_a_10000_entry_export_is_detected_offline() {
    let signer = AuditSigner::generate();
    let keys = PublicKeys::new(&signer, &[]).unwrap();
    let original = chain();
    let cps = checkpoints(&signer, &original);
    let verify = |entries: Vec<AuditEntry>| {
        verify_with_checkpoints(entries, &cps, &keys, ExportScope::Whole)
    };
    assert!(
        verify(original.clone()).is_intact(),
        "the untouched export verifies"
    );

    let n = original.len();
    // Tamperings of one position; the misses.
    let tamper_at = |i: usize| -> (usize, Vec<String>) {
        let mut missed = Vec::new();
        let mut tried = 0usize;
        let mut check = |what: String, entries: Vec<AuditEntry>| {
            tried += 1;
            if verify(entries).is_intact() {
                missed.push(what);
            }
        };
        for rehash in [false, true] {
            let how = if rehash { "rehashed" } else { "as is" };
            // A field changed.
            let mut e = original.clone();
            e[i].actor.push('x');
            if rehash {
                rechain(&mut e, i);
            }
            check(format!("change {} ({how})", i + 1), e);
            // An entry removed.
            let mut e = original.clone();
            e.remove(i);
            if rehash {
                rechain(&mut e, i);
            }
            check(format!("delete {} ({how})", i + 1), e);
            // A forged entry inserted before it.
            let mut e = original.clone();
            let mut forged = original[i].clone();
            forged.action = "export.downloaded".into();
            forged.hash = forged.computed_hash();
            e.insert(i, forged);
            if rehash {
                rechain(&mut e, i);
            }
            check(format!("insert before {} ({how})", i + 1), e);
            // Two neighbours swapped.
            if i + 1 < n {
                let mut e = original.clone();
                e.swap(i, i + 1);
                if rehash {
                    rechain(&mut e, i);
                }
                check(format!("swap {} and {} ({how})", i + 1, i + 2), e);
            }
        }
        // The tail cut off from this entry on (every such cut passes the last checkpoint).
        if i > 0 {
            check(format!("cut from {}", i + 1), original[..i].to_vec());
        }
        (tried, missed)
    };
    let positions = positions();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tried, missed) = std::thread::scope(|scope| {
        let handles: Vec<_> = positions
            .chunks(positions.len().div_ceil(threads))
            .map(|chunk| {
                scope.spawn(|| {
                    chunk.iter().fold((0, Vec::new()), |(t, mut m), &i| {
                        let (tried, missed) = tamper_at(i);
                        m.extend(missed);
                        (t + tried, m)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).fold(
            (0usize, Vec::new()),
            |(t, mut m), (tried, missed)| {
                m.extend(missed);
                (t + tried, m)
            },
        )
    });
    assert!(tried >= 80, "{tried} tamperings tried");
    assert!(
        missed.is_empty(),
        "{} of {tried} tamperings verified as intact: {:?}",
        missed.len(),
        &missed[..missed.len().min(20)]
    );
    eprintln!("{tried} tamperings of a {n}-entry export, all detected");
}
