//! The demo data subjects: who they are, where they live and how often they run.
//!
//! Subjects are drawn from one seeded random stream, so the same [`DemoLakeOptions`] always give
//! the same subjects in the same order, whatever else the generator does.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::DemoLakeOptions;
use super::names::{self, City};

/// A data subject of the demo lake, as the caller (service quick start, bench) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemoSubject {
    /// The subject id stored in the `user_id` column: a UUID string (lower-case, hyphenated).
    pub user_id: String,
    /// The subject's full name, as stored in the `full_name` column (PII).
    pub full_name: String,
    /// The subject's email address, as stored in the `email` column (PII); always on a domain
    /// reserved for documentation (`example.com`, `example.org`, `example.net`).
    pub email: String,
    /// The subject's home region: every one of their rows is in a `region=<this>` partition.
    pub region: String,
    /// How many rows (events) of this subject the generated lake holds, across all files.
    /// Zero from [`subjects`]; filled in by [`generate_lake`](super::generate_lake).
    pub rows: u64,
}

/// Everything the generator needs to know about one subject to write their events.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// The public part.
    pub subject: DemoSubject,
    /// Index of the home region in [`DemoLakeOptions::regions`].
    pub region_index: usize,
    /// Value of the `device_id` column for all of this subject's events.
    pub device_id: String,
    /// Home coordinates (degrees), already jittered away from the city centre.
    pub home: (f64, f64),
    /// Multiplier of the mean events per day, in `[0.25, 1.75)`: some subjects run more.
    pub activity: f64,
    /// Pace in seconds per kilometre, in `[240, 450)`.
    pub pace_s_per_km: f64,
    /// Whether the subject's device records heart rate at all.
    pub has_heart_rate: bool,
}

/// Mixes `seed` and a stream number into an independent RNG (SplitMix64 finaliser), so that
/// subjects and each partition draw from their own deterministic stream.
pub(crate) fn stream_rng(seed: u64, stream: u64) -> StdRng {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// A random UUID (version 4 layout) from `rng`, as a lower-case hyphenated string.
pub(crate) fn uuid_from(rng: &mut impl Rng) -> String {
    uuid::Builder::from_random_bytes(rng.r#gen())
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// Builds every subject profile of the lake, in generation order (not sorted).
pub(crate) fn profiles(opts: &DemoLakeOptions) -> Vec<Profile> {
    let mut rng = stream_rng(opts.seed, 0);
    (0..opts.subjects)
        .map(|_| profile(&mut rng, opts))
        .collect()
}

fn profile(rng: &mut StdRng, opts: &DemoLakeOptions) -> Profile {
    let user_id = uuid_from(rng);
    let region_index = rng.gen_range(0..opts.regions.len());
    let region = opts.regions[region_index].clone();
    // Four in five subjects carry a name of their region's culture; the rest any culture.
    let own = names::lists_for(&region).filter(|_| rng.gen_bool(0.8));
    let (first_list, last_list): (&[&str], &[&str]) = match own {
        Some((first, last, _)) => (first, last),
        None => (*pick(rng, names::ALL_FIRST), *pick(rng, names::ALL_LAST)),
    };
    let first = *pick(rng, first_list);
    let last = *pick(rng, last_list);
    let cities: &[City] = match names::lists_for(&region) {
        Some((_, _, cities)) => cities,
        None => names::ALL_CITIES[rng.gen_range(0..names::ALL_CITIES.len())],
    };
    let (_, lat, lon) = *pick(rng, cities);
    let home = (
        lat + rng.gen_range(-0.08..0.08),
        lon + rng.gen_range(-0.08..0.08),
    );
    let email = format!(
        "{}.{}{}@{}",
        names::email_part(first),
        names::email_part(last),
        rng.gen_range(1..1000),
        pick(rng, names::EMAIL_DOMAINS)
    );
    let device_id = format!("{}-{:08x}", pick(rng, names::DEVICES), rng.r#gen::<u32>());
    Profile {
        subject: DemoSubject {
            user_id,
            full_name: format!("{first} {last}"),
            email,
            region,
            rows: 0,
        },
        region_index,
        device_id,
        home,
        activity: rng.gen_range(0.25..1.75),
        pace_s_per_km: rng.gen_range(240.0..450.0),
        has_heart_rate: rng.gen_bool(0.85),
    }
}

/// The subjects [`generate_lake`](super::generate_lake) would write for `opts`, in generation
/// order, without writing anything (their `rows` are 0). Cheap: microseconds per subject.
pub fn subjects(opts: &DemoLakeOptions) -> Vec<DemoSubject> {
    profiles(opts).into_iter().map(|p| p.subject).collect()
}

/// The subject ids (`user_id` values) [`generate_lake`](super::generate_lake) would write for
/// `opts`, in generation order; take the first `n` to pick `n` subjects to erase.
pub fn subject_ids(opts: &DemoLakeOptions) -> Vec<String> {
    profiles(opts)
        .into_iter()
        .map(|p| p.subject.user_id)
        .collect()
}
