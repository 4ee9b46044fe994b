//! A contract check for [`KeyStore`] implementations, so the database backends can prove they
//! keep the rules crypto-shredding relies on (tombstones are permanent, nothing is brought back).

use chrono::{TimeZone, Utc};
use futures::future::join_all;

use super::{Dek, Kek, KeyStore, KeyringError, StoredKey};

/// Runs the [`KeyStore`] contract against `store` and returns the first broken rule.
///
/// Safe on a store holding real keys: it uses fresh random references
/// (`lethe-contract-<uuid>-…`) and touches nothing else, but it leaves those test keys and
/// tombstones behind. Timestamps are whole seconds, so a backend may store them at any
/// precision down to a second.
///
/// # Errors
/// A message naming the broken rule, or the store's own error.
pub async fn check_key_store_contract(store: &dyn KeyStore) -> Result<(), String> {
    let prefix = format!("lethe-contract-{}-", uuid::Uuid::new_v4().simple());
    let r = |name: &str| format!("{prefix}{name}");
    let kek = Kek::generate();
    let key = |subject: &str, secs: i64| StoredKey {
        wrapped: kek.wrap(&Dek::generate(1), subject),
        created_at: Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
    };
    let fail = |rule: &str| Err::<(), String>(format!("key store contract: {rule}"));
    let err = |e: KeyringError| format!("key store contract: store error: {e}");
    let (a, b) = (r("a"), r("b"));

    if store.get(&a).await.map_err(err)?.is_some() || store.is_tombstoned(&a).await.map_err(err)? {
        return fail("an unknown reference must have no key and no tombstone");
    }
    let (k1, k2, k3) = (key(&a, 1), key(&a, 2), key(&a, 3));
    if store.put_if_absent(&a, &k1).await.map_err(err)? != k1 {
        return fail("put_if_absent on an empty reference must store and return the key");
    }
    if store.put_if_absent(&a, &k2).await.map_err(err)? != k1 {
        return fail("put_if_absent must return the key stored first, not the new one");
    }
    if store.get(&a).await.map_err(err)? != Some(k1.clone()) {
        return fail("get must return the stored key unchanged");
    }
    if store.replace(&a, &k2, &k3).await.map_err(err)? {
        return fail("replace must fail when the stored key is not `old`");
    }
    if !store.replace(&a, &k1, &k3).await.map_err(err)?
        || store.get(&a).await.map_err(err)? != Some(k3.clone())
    {
        return fail("replace must swap in `new` when the stored key is `old`");
    }
    if !store.destroy(&a).await.map_err(err)? {
        return fail("destroy must report that it deleted a key");
    }
    if store.get(&a).await.map_err(err)?.is_some() || !store.is_tombstoned(&a).await.map_err(err)? {
        return fail("after destroy the key must be gone and the tombstone present");
    }
    if store.destroy(&a).await.map_err(err)? || !store.is_tombstoned(&a).await.map_err(err)? {
        return fail("a second destroy must report no key and keep the tombstone");
    }
    match store.put_if_absent(&a, &k1).await {
        Err(KeyringError::Shredded) => {}
        Ok(_) => return fail("put_if_absent must refuse a tombstoned reference"),
        Err(e) => return Err(err(e)),
    }
    if store.replace(&a, &k3, &k1).await.map_err(err)?
        || store.get(&a).await.map_err(err)?.is_some()
    {
        return fail("replace must never bring back a destroyed key");
    }
    if store.destroy(&b).await.map_err(err)? || !store.is_tombstoned(&b).await.map_err(err)? {
        return fail("destroy of a reference without a key must tombstone it and report false");
    }

    // Paging: ordered by reference, `after` is exclusive, destroyed keys are not listed.
    let names = ["c1", "c2", "c3"];
    for name in names {
        store
            .put_if_absent(&r(name), &key(&r(name), 0))
            .await
            .map_err(err)?;
    }
    let mut seen = Vec::new();
    let mut after = Some(prefix.clone());
    loop {
        let page = store.list(after.as_deref(), 2).await.map_err(err)?;
        if page.len() > 2 {
            return fail("list must return at most `limit` keys");
        }
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let ours: Vec<String> = page
            .into_iter()
            .map(|(name, _)| name)
            .take_while(|name| name.starts_with(&prefix))
            .collect();
        let done = ours.len() < 2;
        seen.extend(ours);
        if done {
            break;
        }
    }
    if seen != names.map(r) {
        return fail("list must page through live keys in reference order, `after` exclusive");
    }

    // Bulk operations agree with the single ones.
    let (c1, d, e) = (r("c1"), r("d"), r("e"));
    let kd = key(&d, 0);
    let kc = key(&c1, 9);
    let put = store
        .put_many_if_absent(&[
            (a.clone(), k1.clone()),
            (d.clone(), kd.clone()),
            (c1.clone(), kc.clone()),
        ])
        .await
        .map_err(err)?;
    let got = |name: &str| put.iter().find(|(n, _)| n == name).map(|(_, k)| k.clone());
    if got(&a) != Some(None) {
        return fail("put_many_if_absent must refuse (None) a tombstoned reference");
    }
    if got(&d) != Some(Some(kd.clone())) {
        return fail("put_many_if_absent must store a new reference's key");
    }
    let first = store.get(&c1).await.map_err(err)?;
    if got(&c1) != Some(first.clone()) || first == Some(kc) {
        return fail("put_many_if_absent must return the key stored first");
    }
    let many = store
        .get_many(&[d.clone(), e.clone(), a.clone()])
        .await
        .map_err(err)?;
    if many != vec![(d.clone(), kd)] {
        return fail("get_many must return exactly the live keys asked for");
    }
    let mut dead = store
        .tombstoned_among(&[a.clone(), b.clone(), d.clone(), e.clone()])
        .await
        .map_err(err)?;
    dead.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    if dead != expected {
        return fail("tombstoned_among must return exactly the tombstoned references");
    }

    // A race of writers: everyone gets the same winner.
    let race = r("race");
    let keys: Vec<StoredKey> = (0..8).map(|i| key(&race, i)).collect();
    let results = join_all(keys.iter().map(|k| store.put_if_absent(&race, k))).await;
    let winners: Vec<StoredKey> = results.into_iter().collect::<Result<_, _>>().map_err(err)?;
    if winners.iter().any(|w| w != &winners[0]) || !keys.contains(&winners[0]) {
        return fail("concurrent put_if_absent calls must all return the one stored key");
    }
    Ok(())
}
