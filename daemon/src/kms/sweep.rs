//! The KMS sweeper: scheduled deletions whose window ended, imported
//! material that expired, and automatic rotations that are due.

use p11kms_protocol::vendor;
use pkcs11_sys as ck;

use super::{event, is_primary, key_id_of, now, KeyMeta};
use crate::daemon::{Daemon, Instance};
use crate::error::Result;
use crate::token::ObjectChange;

/// One pass over every instance. Errors are logged; the next pass retries.
pub fn sweep(d: &Daemon) {
    for i in &d.instances {
        if let Err(e) = sweep_instance(i, now()) {
            tracing::warn!(instance = %i.name, "kms sweep: {}", e.msg);
        }
    }
}

/// One pass over one instance at time `t`.
pub fn sweep_instance(i: &Instance, t: u64) -> Result<()> {
    let token = &i.token;
    for o in token.all_objects() {
        if !is_primary(token, &o) {
            continue;
        }
        let (meta, state) = {
            let a = o.attrs();
            (
                KeyMeta::of(&a),
                a.ulong(vendor::CKA_P11KMS_KEY_STATE).unwrap_or(0),
            )
        };
        let Some(key_id) = key_id_of(&o) else {
            continue;
        };
        if state == vendor::CKV_P11KMS_STATE_PENDING_DELETION
            && meta.deletion.is_some_and(|at| at <= t)
        {
            let changes = token
                .objects_of_key(&key_id)
                .into_iter()
                .map(|x| ObjectChange::Destroy(x.id))
                .collect();
            token.apply(changes)?;
            event(&i.name, &key_id, "Deleted");
            continue;
        }
        if meta.material_expires.is_some_and(|at| at <= t)
            && state != vendor::CKV_P11KMS_STATE_PENDING_DELETION
        {
            let mut changes = Vec::new();
            for x in token.objects_of_key(&key_id) {
                let mut a = x.attrs().clone();
                // The check value stays: it lets a re-import prove it brings
                // back the same material.
                a.set(ck::CKA_VALUE, Vec::new());
                a.set_ulong(
                    vendor::CKA_P11KMS_KEY_STATE,
                    vendor::CKV_P11KMS_STATE_PENDING_IMPORT,
                );
                if x.id == o.id {
                    let mut m = KeyMeta::of(&a);
                    m.material_expires = None;
                    m.store(&mut a)?;
                }
                changes.push(ObjectChange::Update(x, a));
            }
            token.apply(changes)?;
            event(&i.name, &key_id, "MaterialExpired");
            continue;
        }
        if state == vendor::CKV_P11KMS_STATE_ENABLED && meta.next_rotation.is_some_and(|at| at <= t)
        {
            super::admin::rotate(i, &o)?;
        }
    }
    Ok(())
}
