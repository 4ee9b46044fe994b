//! Embedded reference data for the demo lake: first and last names, cities and free-text notes.
//!
//! Names are grouped by the region whose users most often carry them, so that a subject's name
//! usually matches their home region (EU, US, APAC). A subject in an unknown region draws from
//! every group. All lists are plain `&'static str` so the generator needs no files at run time.

/// A city near which subjects of a region live: `(name, latitude °, longitude °)`.
pub(crate) type City = (&'static str, f64, f64);

/// First names common in Europe (~34).
pub(crate) const EU_FIRST: &[&str] = &[
    "Emma",
    "Lukas",
    "Sofia",
    "Matteo",
    "Léa",
    "Hugo",
    "Anna",
    "Jan",
    "Marta",
    "Paul",
    "Clara",
    "Noah",
    "Zoë",
    "Elias",
    "Ingrid",
    "Lars",
    "Freja",
    "Mikkel",
    "Agnieszka",
    "Łukasz",
    "José",
    "Lucía",
    "Giulia",
    "Lorenzo",
    "Chloé",
    "Théo",
    "Niamh",
    "Sean",
    "Eva",
    "Tomás",
    "Katarzyna",
    "Björn",
    "Amélie",
    "Joost",
];

/// Last names common in Europe (~34).
pub(crate) const EU_LAST: &[&str] = &[
    "Müller",
    "Schmidt",
    "Rossi",
    "Russo",
    "Dubois",
    "Martin",
    "García",
    "Fernández",
    "Kowalski",
    "Nowak",
    "Jansen",
    "de Vries",
    "Andersen",
    "Nielsen",
    "Johansson",
    "Lindqvist",
    "Murphy",
    "O'Brien",
    "Novák",
    "Horváth",
    "Papadopoulos",
    "Silva",
    "Santos",
    "Weber",
    "Fischer",
    "Lefebvre",
    "Moreau",
    "Bianchi",
    "Virtanen",
    "Korhonen",
    "Peeters",
    "Dupont",
    "Hofmann",
    "Kovačević",
];

/// First names common in the United States (~33).
pub(crate) const US_FIRST: &[&str] = &[
    "Olivia",
    "Liam",
    "Ava",
    "Ethan",
    "Mia",
    "Mason",
    "Harper",
    "Logan",
    "Madison",
    "Jackson",
    "Abigail",
    "Aiden",
    "Emily",
    "Carter",
    "Elizabeth",
    "Wyatt",
    "Avery",
    "Grayson",
    "Scarlett",
    "Jayden",
    "Chloe",
    "Tyler",
    "Brooklyn",
    "Dylan",
    "Savannah",
    "Marcus",
    "Jasmine",
    "Andre",
    "Destiny",
    "Diego",
    "Camila",
    "Isaiah",
    "Taylor",
];

/// Last names common in the United States (~33).
pub(crate) const US_LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Moore",
    "Jackson",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Washington",
];

/// First names common in Asia-Pacific (~33).
pub(crate) const APAC_FIRST: &[&str] = &[
    "Haruto",
    "Yui",
    "Sota",
    "Aoi",
    "Ren",
    "Sakura",
    "Wei",
    "Li Na",
    "Jun",
    "Xiu",
    "Min-jun",
    "Seo-yeon",
    "Ji-ho",
    "Ha-eun",
    "Aarav",
    "Priya",
    "Arjun",
    "Ananya",
    "Rohan",
    "Nguyen Anh",
    "Linh",
    "Minh",
    "Siti",
    "Putri",
    "Budi",
    "Rizal",
    "Malia",
    "Tane",
    "Aroha",
    "Jack",
    "Charlotte",
    "Kai",
    "Mei",
];

/// Last names common in Asia-Pacific (~33).
pub(crate) const APAC_LAST: &[&str] = &[
    "Sato",
    "Suzuki",
    "Takahashi",
    "Tanaka",
    "Watanabe",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Kim",
    "Park",
    "Choi",
    "Jung",
    "Sharma",
    "Patel",
    "Singh",
    "Gupta",
    "Iyer",
    "Nguyen",
    "Tran",
    "Pham",
    "Santoso",
    "Wijaya",
    "Reyes",
    "Cruz",
    "Bautista",
    "Tan",
    "Lim",
    "Ng",
    "Wong",
    "Ngata",
    "Wilson",
];

/// Cities of the EU region.
pub(crate) const EU_CITIES: &[City] = &[
    ("Berlin", 52.520, 13.405),
    ("Paris", 48.857, 2.352),
    ("Madrid", 40.417, -3.704),
    ("Amsterdam", 52.370, 4.895),
    ("Warsaw", 52.230, 21.012),
    ("Milan", 45.464, 9.190),
    ("Stockholm", 59.329, 18.069),
    ("Dublin", 53.350, -6.260),
];

/// Cities of the US region.
pub(crate) const US_CITIES: &[City] = &[
    ("New York", 40.713, -74.006),
    ("Chicago", 41.878, -87.630),
    ("San Francisco", 37.775, -122.419),
    ("Austin", 30.267, -97.743),
    ("Boston", 42.360, -71.059),
    ("Seattle", 47.606, -122.332),
    ("Denver", 39.739, -104.990),
];

/// Cities of the APAC region.
pub(crate) const APAC_CITIES: &[City] = &[
    ("Tokyo", 35.676, 139.650),
    ("Singapore", 1.352, 103.820),
    ("Sydney", -33.869, 151.209),
    ("Seoul", 37.567, 126.978),
    ("Mumbai", 19.076, 72.878),
    ("Jakarta", -6.200, 106.817),
    ("Auckland", -36.848, 174.763),
];

/// Free-text notes a runner might leave on an event (the nullable `notes` column).
pub(crate) const NOTES: &[&str] = &[
    "easy run",
    "recovery jog",
    "intervals 6x800m",
    "tempo run, felt strong",
    "long run with the club",
    "hill repeats",
    "rainy, cut it short",
    "new shoes",
    "race pace practice",
    "knee a bit sore",
    "parkrun",
    "ran to work",
    "hot and humid",
    "trail loop",
];

/// Device models; a subject's `device_id` is one of these plus a serial suffix.
pub(crate) const DEVICES: &[&str] = &[
    "garmin-fr255",
    "garmin-fr965",
    "apple-watch-s9",
    "coros-pace3",
    "polar-v3",
    "suunto-race",
    "fitbit-charge6",
    "phone-android",
    "phone-ios",
];

/// Domains for demo email addresses: only names reserved for documentation (RFC 2606), so a demo
/// address can never reach a real person.
pub(crate) const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

/// The first-name, last-name and city lists for a region; `None` for a region without its own
/// lists (callers then mix every group).
pub(crate) fn lists_for(
    region: &str,
) -> Option<(
    &'static [&'static str],
    &'static [&'static str],
    &'static [City],
)> {
    match region {
        "EU" => Some((EU_FIRST, EU_LAST, EU_CITIES)),
        "US" => Some((US_FIRST, US_LAST, US_CITIES)),
        "APAC" => Some((APAC_FIRST, APAC_LAST, APAC_CITIES)),
        _ => None,
    }
}

/// Every first-name list, for subjects drawn from outside their region's culture.
pub(crate) const ALL_FIRST: &[&[&str]] = &[EU_FIRST, US_FIRST, APAC_FIRST];
/// Every last-name list.
pub(crate) const ALL_LAST: &[&[&str]] = &[EU_LAST, US_LAST, APAC_LAST];
/// Every city list.
pub(crate) const ALL_CITIES: &[&[City]] = &[EU_CITIES, US_CITIES, APAC_CITIES];

/// Lower-case ASCII form of a name for the local part of an email address: accents folded
/// (`Zoë` → `zoe`, `Łukasz` → `lukasz`), spaces, apostrophes and hyphens dropped.
pub(crate) fn email_part(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let folded = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => "a",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'í' | 'ì' | 'î' | 'ï' => "i",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => "o",
            'ú' | 'ù' | 'û' | 'ü' => "u",
            'ñ' | 'ń' => "n",
            'ç' | 'č' | 'ć' => "c",
            'ł' | 'Ł' => "l",
            'š' | 'ś' => "s",
            'ž' | 'ź' | 'ż' => "z",
            'É' => "e",
            c if c.is_ascii_alphanumeric() => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
            _ => continue,
        };
        out.push_str(folded);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_about_a_hundred_first_and_last_names() {
        let first: usize = ALL_FIRST.iter().map(|l| l.len()).sum();
        let last: usize = ALL_LAST.iter().map(|l| l.len()).sum();
        assert!(first >= 100, "{first} first names");
        assert!(last >= 100, "{last} last names");
    }

    #[test]
    fn every_name_folds_to_a_non_empty_ascii_email_part() {
        for name in ALL_FIRST.iter().chain(ALL_LAST).flat_map(|l| l.iter()) {
            let part = email_part(name);
            assert!(!part.is_empty(), "{name}");
            assert!(
                part.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{name} -> {part}"
            );
        }
        assert_eq!(email_part("Łukasz"), "lukasz");
        assert_eq!(email_part("O'Brien"), "obrien");
        assert_eq!(email_part("de Vries"), "devries");
    }
}
