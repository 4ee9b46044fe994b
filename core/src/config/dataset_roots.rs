//! Where datasets may live: `storage.allowed_roots`, and never Lethe's own folders.
//!
//! An admin who could register any path the service can reach could read, export or rewrite
//! files there — Lethe's own database, keys, tombstone journal or exports included.

use std::path::{Component, Path, PathBuf};

use super::Settings;

/// A dataset root as a comparable location: a normalised absolute local path, or an object
/// store URL without its trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Local(PathBuf),
    Remote(String),
}

/// `url_or_path` (`file:///…`, a path, or `scheme://…`) as a [`Location`]; a path with `..`
/// is refused (it would dodge the prefix checks).
fn location(url_or_path: &str) -> Result<Location, String> {
    let text = url_or_path.trim();
    let path = if let Some(rest) = text.strip_prefix("file://") {
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if url
            .host_str()
            .is_some_and(|h| !h.is_empty() && h != "localhost")
        {
            return Err(format!("{text:?}: a file URL must not name a host"));
        }
        url.to_file_path()
            .map_err(|()| format!("{text:?}: {rest:?} is not an absolute path"))?
    } else if text.contains("://") {
        if text.split('/').any(|s| s == "..") {
            return Err(format!("{text:?} must not contain `..`"));
        }
        return Ok(Location::Remote(text.trim_end_matches('/').to_string()));
    } else {
        PathBuf::from(text)
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{text:?} must not contain `..`"));
    }
    let absolute = std::path::absolute(&path).map_err(|e| format!("{text:?}: {e}"))?;
    // Resolve symbolic links of the part that exists, so a link cannot point around a check.
    Ok(Location::Local(resolve_existing(&absolute)))
}

/// `path` with its longest existing ancestor canonicalised (symbolic links resolved).
fn resolve_existing(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
    let mut resolved = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved
}

/// Whether `inner` is `outer` or lies below it.
fn within(inner: &Location, outer: &Location) -> bool {
    match (inner, outer) {
        (Location::Local(inner), Location::Local(outer)) => inner.starts_with(outer),
        (Location::Remote(inner), Location::Remote(outer)) => {
            if outer.ends_with(':') || outer.ends_with("://") {
                // A scheme alone (`s3://`): everything of that scheme.
                inner.starts_with(outer.trim_end_matches('/'))
            } else {
                inner == outer || inner.starts_with(&format!("{outer}/"))
            }
        }
        _ => false,
    }
}

/// Whether two dataset roots overlap: the same location, or one inside the other (a root
/// belongs to one dataset only: two datasets over the same files would rewrite each other's).
/// Roots that cannot be read as locations never overlap.
pub fn roots_overlap(a: &str, b: &str) -> bool {
    match (location(a), location(b)) {
        (Ok(a), Ok(b)) => within(&a, &b) || within(&b, &a),
        _ => false,
    }
}

impl Settings {
    /// The folders and URLs that hold Lethe's own data: the data folder itself (database and
    /// key files), the SQLite database's folder, the KEK file's folder, the tombstone journal
    /// and the exports.
    fn protected_locations(&self) -> Vec<Location> {
        let data_dir = &self.storage.data_dir;
        let mut protected = vec![data_dir.display().to_string()];
        if let Some(db) = secrecy::ExposeSecret::expose_secret(&self.database.url)
            .strip_prefix("sqlite:")
            .map(|rest| rest.trim_start_matches("//"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            && let Some(parent) = Path::new(db).parent()
            && !parent.as_os_str().is_empty()
        {
            protected.push(parent.display().to_string());
        }
        if let Some(kek) = &self.crypto.kek_file
            && let Some(parent) = kek.parent()
            && !parent.as_os_str().is_empty()
        {
            protected.push(parent.display().to_string());
        }
        protected.push(
            self.crypto
                .tombstone_journal
                .clone()
                .unwrap_or_else(|| data_dir.join("tombstones").display().to_string()),
        );
        protected.push(self.storage.exports_location());
        protected.iter().filter_map(|p| location(p).ok()).collect()
    }

    /// The prefixes dataset roots may be registered under: `storage.allowed_roots`, or
    /// `<data_dir>/lake`.
    fn allowed_locations(&self) -> Vec<Location> {
        match &self.storage.allowed_roots {
            Some(prefixes) => prefixes.iter().filter_map(|p| location(p).ok()).collect(),
            None => location(&self.storage.data_dir.join("lake").display().to_string())
                .into_iter()
                .collect(),
        }
    }

    /// Checks that a dataset root may be registered: it lies under one of
    /// `storage.allowed_roots` (default: `<data_dir>/lake`), and neither holds nor lies in a
    /// folder of Lethe's own (database, keys, tombstone journal, exports) — whatever the
    /// allow-list says.
    ///
    /// # Errors
    /// A sentence saying why the root is refused.
    pub fn check_dataset_root(&self, url_or_path: &str) -> Result<(), String> {
        let root = location(url_or_path)?;
        for own in self.protected_locations() {
            // The data folder may hold lakes (`<data_dir>/lake`), but no root may contain it,
            // nor lie in the database's, keys', journal's or exports' own places.
            let data_dir_itself =
                location(&self.storage.data_dir.display().to_string()).is_ok_and(|d| d == own);
            let inside = within(&root, &own) && !(data_dir_itself && root != own);
            if within(&own, &root) || inside {
                return Err(format!(
                    "{url_or_path} overlaps a folder of Lethe's own (database, keys, tombstone journal or exports); a dataset must live elsewhere"
                ));
            }
        }
        let allowed = self.allowed_locations();
        if allowed.iter().any(|prefix| within(&root, prefix)) {
            Ok(())
        } else {
            Err(format!(
                "{url_or_path} is not under storage.allowed_roots ({}); an operator can add its prefix there",
                match &self.storage.allowed_roots {
                    Some(list) => list.join(", "),
                    None => format!("default: {}", self.storage.data_dir.join("lake").display()),
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        Settings::embedded(dir)
    }

    #[test]
    fn the_embedded_default_allows_its_lake_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let lake = dir.path().join("lake").join("running_events");
        s.check_dataset_root(&lake.display().to_string()).unwrap();
        s.check_dataset_root(&format!("file://{}", lake.display()))
            .unwrap();
        for refused in [
            "/etc".to_string(),
            dir.path().display().to_string(),
            dir.path().join("exports").display().to_string(),
            dir.path()
                .join("tombstones")
                .join("x")
                .display()
                .to_string(),
            "/".to_string(),
            format!("{}/lake/../exports", dir.path().display()),
            "s3://bucket/lake".to_string(),
        ] {
            assert!(s.check_dataset_root(&refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn allowed_roots_are_prefixes_but_never_over_lethes_own_folders() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.storage.allowed_roots = Some(vec!["s3://company-lake/".into(), "/".into()]);
        s.check_dataset_root("s3://company-lake/events").unwrap();
        assert!(s.check_dataset_root("s3://company-lakehouse/x").is_err());
        s.check_dataset_root("/srv/lake/events").unwrap();
        assert!(s.check_dataset_root("/").is_err(), "holds the data folder");
        assert!(
            s.check_dataset_root(&dir.path().join("exports").display().to_string())
                .is_err()
        );
        s.storage.exports_url = Some("s3://company-lake/exports".into());
        assert!(s.check_dataset_root("s3://company-lake/exports/x").is_err());
        assert!(s.check_dataset_root("s3://company-lake").is_err());
    }
}
