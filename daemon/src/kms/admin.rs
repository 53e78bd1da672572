//! `p11kms key ...`: the administration commands, authorized by the
//! instance's SO PIN.

use std::sync::Arc;
use std::time::Duration;

use p11kms_protocol::{
    vendor, AdminCommand, AdminReply, Attribute, ImportParams, KeyCreate, MechParam,
};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::{alias_taken, describe, event, is_primary, now, resolve, KeyMeta};
use crate::access::{rules, App};
use crate::daemon::{Daemon, Instance};
use crate::error::{Error, Result};
use crate::mech::Key;
use crate::token::object::{
    self, Actor, Attrs, Object, Origin, INTERNAL_DER, INTERNAL_VERSION_OBJECT,
};
use crate::token::{ObjectChange, Token, User};

const DAY: u64 = 86_400;
/// How long import parameters stay valid.
pub const IMPORT_TOKEN_TTL: u64 = DAY;

/// Run one admin command on an instance for an in-process caller (tests,
/// the daemon itself), treated as this daemon's own uid.
pub fn handle(d: &Daemon, instance: &str, so_pin: &[u8], cmd: AdminCommand) -> AdminReply {
    reply(authorized(d, rules::daemon_uid(), instance, so_pin).and_then(|i| run(d, i, cmd)))
}

/// Run one admin command for a connected application: only peers that may
/// administer get this far (`CKR_P11KMS_ACCESS_DENIED`, without looking at
/// the PIN); see [`authorized`] for the PIN check.
pub fn handle_for(
    d: &Daemon,
    app: &App,
    instance: &str,
    so_pin: &[u8],
    cmd: AdminCommand,
) -> AdminReply {
    if !app.admin {
        tracing::warn!(
            uid = app.peer.uid,
            pid = app.peer.pid,
            "admin command refused: uid not in admin_uids/admin_gids"
        );
        return reply(Err(Error::new(
            vendor::CKR_P11KMS_ACCESS_DENIED,
            format!(
                "uid {} may not administer (admin_uids/admin_gids)",
                app.peer.uid
            ),
        )));
    }
    reply(authorized(d, app.peer.uid, instance, so_pin).and_then(|i| run(d, i, cmd)))
}

fn reply(result: Result<AdminReply>) -> AdminReply {
    match result {
        Ok(r) => r,
        Err(e) => AdminReply::Failed {
            rv: e.rv,
            message: e.msg,
        },
    }
}

/// The serving instance named `instance`, once `so_pin` is its SO PIN.
///
/// The PIN is checked without counting toward the token's SO lockout
/// (issue 10, finding 3: any caller could lock the token for good); wrong
/// PINs instead delay the next attempt of the same uid
/// (`access::backoff`). A PIN already locked (through `C_Login(CKU_SO)`)
/// stays locked: `CKR_PIN_LOCKED`, until `p11kms-recover` resets it.
fn authorized<'a>(
    d: &'a Daemon,
    uid: u32,
    instance: &str,
    so_pin: &[u8],
) -> Result<&'a Arc<Instance>> {
    let i = d
        .instances
        .iter()
        .find(|i| i.name == instance)
        .ok_or_else(|| {
            Error::new(
                ck::CKR_SLOT_ID_INVALID,
                format!("no instance named {instance:?}"),
            )
        })?;
    if !i.serving {
        return Err(Error::new(
            vendor::CKR_P11KMS_INSTANCE_UNAVAILABLE,
            "the instance failed a start-up self-test",
        ));
    }
    if !i.token.initialized() {
        return Err(Error::new(
            ck::CKR_TOKEN_NOT_RECOGNIZED,
            "the instance's token is not initialized",
        ));
    }
    let l = &d.config.limits;
    let mut outcome = Ok(false);
    d.admin_backoff.attempt(
        uid,
        Duration::from_millis(l.admin_backoff_ms),
        Duration::from_millis(l.admin_backoff_max_ms),
        || {
            outcome = i.token.check_pin(User::So, so_pin);
            // A locked or missing PIN is not a guess: no back-off for it.
            !matches!(outcome, Ok(false))
        },
    );
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(uid, instance, "admin command refused: SO PIN incorrect");
            return Err(Error::new(ck::CKR_PIN_INCORRECT, "SO PIN incorrect"));
        }
        Err(e) if e.rv == ck::CKR_PIN_LOCKED => {
            return Err(Error::new(
                e.rv,
                "SO PIN locked (reset it offline with p11kms-recover)",
            ))
        }
        Err(e) => return Err(e),
    }
    Ok(i)
}

fn prohibited(msg: impl Into<String>) -> Error {
    Error::new(ck::CKR_ACTION_PROHIBITED, msg)
}

/// Whether a command changes the instance (read-only ones never make
/// the default key).
fn changes_state(cmd: &AdminCommand) -> bool {
    !matches!(
        cmd,
        AdminCommand::KeyList | AdminCommand::KeyDescribe { .. } | AdminCommand::KeyVersions { .. }
    )
}

fn run(d: &Daemon, i: &Instance, cmd: AdminCommand) -> Result<AdminReply> {
    let t = &i.token;
    ensure_default_key(d, i, changes_state(&cmd))?;
    match cmd {
        AdminCommand::KeyCreate(c) => create(i, &c).map(|o| AdminReply::Key(describe(&o))),
        AdminCommand::KeyList => Ok(AdminReply::Keys(
            t.all_objects()
                .iter()
                .filter(|o| is_primary(t, o))
                .map(|o| describe(o))
                .collect(),
        )),
        AdminCommand::KeyDescribe { key } => Ok(AdminReply::Key(describe(&*resolve(t, &key)?))),
        AdminCommand::KeyEnable { key } => {
            toggle(i, &key, vendor::CKV_P11KMS_STATE_ENABLED, "enabled")
        }
        AdminCommand::KeyDisable { key } => {
            toggle(i, &key, vendor::CKV_P11KMS_STATE_DISABLED, "disabled")
        }
        AdminCommand::KeyScheduleDeletion { key, pending_days } => {
            let o = resolve(t, &key)?;
            protect(&o)?;
            if o.attrs().bool(vendor::CKA_P11KMS_DEFAULT_KEY) {
                return Err(prohibited(
                    "the default key is not deleted: it would come back with another key id",
                ));
            }
            let min = d
                .config
                .instances
                .iter()
                .find(|c| c.name == i.name)
                .map_or(7, |c| c.min_pending_days);
            if !(min..=366).contains(&pending_days) {
                return Err(Error::new(
                    ck::CKR_ARGUMENTS_BAD,
                    format!("pending window must be {min}..366 days"),
                ));
            }
            if state(&o) == vendor::CKV_P11KMS_STATE_PENDING_DELETION {
                return Err(prohibited("deletion is already scheduled"));
            }
            let when = now() + u64::from(pending_days) * DAY;
            set_state(i, &o, vendor::CKV_P11KMS_STATE_PENDING_DELETION, |m| {
                m.deletion = Some(when)
            })?;
            Ok(AdminReply::Key(describe(&o)))
        }
        AdminCommand::KeyCancelDeletion { key } => {
            let o = resolve(t, &key)?;
            if state(&o) != vendor::CKV_P11KMS_STATE_PENDING_DELETION {
                return Err(prohibited("no deletion is scheduled for this key"));
            }
            let next = if has_material(&o) {
                vendor::CKV_P11KMS_STATE_ENABLED
            } else {
                vendor::CKV_P11KMS_STATE_PENDING_IMPORT
            };
            set_state(i, &o, next, |m| m.deletion = None)?;
            Ok(AdminReply::Key(describe(&o)))
        }
        AdminCommand::KeyRotate { key } => {
            let o = resolve(t, &key)?;
            protect(&o)?;
            rotate(i, &o)?;
            Ok(AdminReply::Key(describe(&o)))
        }
        AdminCommand::KeyVersions { key } => {
            Ok(AdminReply::Versions(describe(&*resolve(t, &key)?).versions))
        }
        AdminCommand::KeySetRotation { key, interval_days } => {
            let o = resolve(t, &key)?;
            protect(&o)?;
            if let Some(n) = interval_days {
                check_rotatable(&o)?;
                if !(7..=365).contains(&n) {
                    return Err(Error::new(
                        ck::CKR_ARGUMENTS_BAD,
                        "rotation interval must be 7..365 days",
                    ));
                }
            }
            update_meta(t, &o, |m| {
                m.rotation_interval_days = interval_days;
                m.next_rotation = interval_days.map(|n| now() + u64::from(n) * DAY);
            })?;
            Ok(AdminReply::Key(describe(&o)))
        }
        AdminCommand::AliasAdd { key, alias } => {
            check_alias(&alias)?;
            if alias_taken(t, &alias) {
                return Err(Error::new(
                    ck::CKR_ARGUMENTS_BAD,
                    format!("alias {alias:?} is already in use"),
                ));
            }
            let o = resolve(t, &key)?;
            protect(&o)?;
            let mut a = o.attrs().clone();
            // The metadata is stored either way: it marks the key as
            // KMS-managed from now on.
            let mut m = KeyMeta::of(&a);
            if a.get(ck::CKA_LABEL).is_none_or(<[u8]>::is_empty) {
                a.set(ck::CKA_LABEL, alias.into_bytes());
            } else {
                m.aliases.push(alias);
            }
            m.store(&mut a)?;
            t.apply(vec![ObjectChange::Update(o.clone(), a)])?;
            Ok(AdminReply::Key(describe(&o)))
        }
        AdminCommand::AliasRemove { alias } => {
            let o = resolve(t, &alias)?;
            protect(&o)?;
            let mut a = o.attrs().clone();
            let mut m = KeyMeta::of(&a);
            if a.get(ck::CKA_LABEL) == Some(alias.as_bytes()) {
                let next = if m.aliases.is_empty() {
                    String::new()
                } else {
                    m.aliases.remove(0)
                };
                a.set(ck::CKA_LABEL, next.into_bytes());
            } else {
                m.aliases.retain(|x| *x != alias);
            }
            m.store(&mut a)?;
            t.apply(vec![ObjectChange::Update(o.clone(), a)])?;
            Ok(AdminReply::Key(describe(&o)))
        }
        AdminCommand::KeyTag { key, set, remove } => {
            let o = resolve(t, &key)?;
            protect(&o)?;
            update_meta(t, &o, |m| {
                m.tags
                    .retain(|(k, _)| !remove.contains(k) && !set.iter().any(|(s, _)| s == k));
                m.tags.extend(set);
                m.tags.sort();
            })?;
            Ok(AdminReply::Key(describe(&o)))
        }
        AdminCommand::ImportParams {
            key,
            wrapping_algorithm,
            wrapping_key_spec,
        } => import_params(d, i, &key, &wrapping_algorithm, &wrapping_key_spec)
            .map(AdminReply::ImportParams),
        AdminCommand::Import {
            key,
            import_token,
            material,
            expires_unix,
        } => {
            // `SecretBytes`: wiped when dropped.
            import(d, i, &key, &import_token, &material, expires_unix)?;
            Ok(AdminReply::Key(describe(&*resolve(t, &key)?)))
        }
    }
}

fn check_alias(alias: &str) -> Result<()> {
    if alias.is_empty() || alias.len() > 255 || alias.starts_with("key-") || alias.contains('#') {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            "an alias is 1..255 bytes, not starting with \"key-\", without '#'",
        ));
    }
    Ok(())
}

fn state(o: &Object) -> u64 {
    o.attrs().ulong(vendor::CKA_P11KMS_KEY_STATE).unwrap_or(0)
}

fn has_material(o: &Object) -> bool {
    let a = o.attrs();
    a.get(ck::CKA_VALUE).is_some_and(|v| !v.is_empty())
        || a.get(INTERNAL_DER).is_some_and(|v| !v.is_empty())
}

/// Service keys belong to their service: nobody changes them.
fn protect(o: &Object) -> Result<()> {
    if o.attrs().bool(vendor::CKA_P11KMS_SERVICE_KEY) {
        return Err(prohibited(
            "service keys cannot be changed, disabled, rotated or deleted",
        ));
    }
    Ok(())
}

fn update_meta(t: &Token, o: &Arc<Object>, f: impl FnOnce(&mut KeyMeta)) -> Result<()> {
    let mut a = o.attrs().clone();
    let mut m = KeyMeta::of(&a);
    f(&mut m);
    m.store(&mut a)?;
    t.apply(vec![ObjectChange::Update(o.clone(), a)])?;
    Ok(())
}

/// Set the state of every object of the key (one transaction) and adjust
/// the primary's metadata.
pub(crate) fn set_state(
    i: &Instance,
    primary: &Arc<Object>,
    st: u64,
    meta: impl FnOnce(&mut KeyMeta),
) -> Result<()> {
    let t = &i.token;
    let key_id = super::key_id_of(primary).ok_or_else(|| Error::general("key without id"))?;
    let mut changes = Vec::new();
    let mut meta = Some(meta);
    for o in t.objects_of_key(&key_id) {
        let mut a = o.attrs().clone();
        a.set_ulong(vendor::CKA_P11KMS_KEY_STATE, st);
        if Arc::ptr_eq(&o, primary) {
            let mut m = KeyMeta::of(&a);
            if let Some(f) = meta.take() {
                f(&mut m);
            }
            m.store(&mut a)?;
        }
        changes.push(ObjectChange::Update(o, a));
    }
    t.apply(changes)?;
    event(&i.name, &key_id, super::state_name(st));
    Ok(())
}

fn check_rotatable(o: &Object) -> Result<()> {
    let a = o.attrs();
    if o.class != ck::CKO_SECRET_KEY || !matches!(a.key_type(), Some(ck::CKK_AES | vendor::CKK_SM4))
    {
        return Err(prohibited("only symmetric (AES, SM4) keys rotate; asymmetric keys do not rotate, as in the KMS model"));
    }
    if a.ulong(vendor::CKA_P11KMS_ORIGIN) == Some(vendor::CKV_P11KMS_ORIGIN_EXTERNAL) {
        return Err(prohibited("keys with imported material do not rotate"));
    }
    Ok(())
}

/// `key enable` / `key disable`: only between Enabled and Disabled.
fn toggle(i: &Instance, key: &str, to: u64, verb: &str) -> Result<AdminReply> {
    let o = resolve(&i.token, key)?;
    protect(&o)?;
    match state(&o) {
        vendor::CKV_P11KMS_STATE_DISABLED | vendor::CKV_P11KMS_STATE_ENABLED => {}
        s => {
            return Err(prohibited(format!(
                "a key in state {} cannot be {verb}",
                super::state_name(s)
            )))
        }
    }
    set_state(i, &o, to, |_| {})?;
    Ok(AdminReply::Key(describe(&o)))
}

/// Rotate a symmetric key: the current material becomes a version object
/// (decrypt/unwrap only) and the primary gets fresh material and the next
/// version number, in one transaction.
pub(crate) fn rotate(i: &Instance, o: &Arc<Object>) -> Result<()> {
    check_rotatable(o)?;
    if state(o) != vendor::CKV_P11KMS_STATE_ENABLED {
        return Err(prohibited("only enabled keys rotate"));
    }
    let t = &i.token;
    let a = o.attrs().clone();
    let key_id =
        String::from_utf8_lossy(a.get(vendor::CKA_P11KMS_KEY_ID).unwrap_or_default()).into_owned();
    let cur = a.ulong(vendor::CKA_P11KMS_KEY_VERSION).unwrap_or(1);
    let len = a.get(ck::CKA_VALUE).map_or(32, <[u8]>::len);

    let mut old = a.clone();
    old.remove(object::INTERNAL_META);
    old.set_bool(INTERNAL_VERSION_OBJECT, true);
    for usage in [ck::CKA_ENCRYPT, ck::CKA_WRAP, ck::CKA_SIGN] {
        old.set_bool(usage, false);
    }
    let label = a.get(ck::CKA_LABEL).unwrap_or_default();
    if !label.is_empty() {
        old.set(
            ck::CKA_LABEL,
            [label, format!("#v{cur}").as_bytes()].concat(),
        );
    }
    old.set(
        ck::CKA_ID,
        [
            a.get(ck::CKA_ID).unwrap_or_default(),
            format!("#v{cur}").as_bytes(),
        ]
        .concat(),
    );
    old.set(
        ck::CKA_UNIQUE_ID,
        uuid::Uuid::new_v4().to_string().into_bytes(),
    );

    let mut new = a.clone();
    let mut value = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut value)
        .map_err(|e| Error::new(ck::CKR_DEVICE_ERROR, format!("getrandom: {e}")))?;
    new.set(ck::CKA_VALUE, value.to_vec());
    object::refresh_check_value(&mut new);
    new.set_ulong(vendor::CKA_P11KMS_KEY_VERSION, cur + 1);
    let mut m = KeyMeta::of(&new);
    if m.versions.is_empty() {
        m.versions.push((cur as u32, m.created));
    }
    m.versions.push((cur as u32 + 1, now()));
    m.next_rotation = m.rotation_interval_days.map(|n| now() + u64::from(n) * DAY);
    m.store(&mut new)?;
    t.apply(vec![
        ObjectChange::Add(old),
        ObjectChange::Update(o.clone(), new),
    ])?;
    event(&i.name, &key_id, &format!("Rotated to version {}", cur + 1));
    Ok(())
}

fn usage_flags(usage: &str) -> Result<&'static [(u64, bool)]> {
    match usage {
        "ENCRYPT/DECRYPT" => Ok(&[
            (ck::CKA_ENCRYPT, true),
            (ck::CKA_DECRYPT, true),
            (ck::CKA_WRAP, true),
            (ck::CKA_UNWRAP, true),
            (ck::CKA_SIGN, false),
            (ck::CKA_VERIFY, false),
        ]),
        "SIGN/VERIFY" => Ok(&[
            (ck::CKA_ENCRYPT, false),
            (ck::CKA_DECRYPT, false),
            (ck::CKA_WRAP, false),
            (ck::CKA_UNWRAP, false),
            (ck::CKA_SIGN, true),
            (ck::CKA_VERIFY, true),
        ]),
        other => Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            format!("usage {other:?} is not ENCRYPT/DECRYPT or SIGN/VERIFY"),
        )),
    }
}

/// `p11kms key create`.
pub(crate) fn create(i: &Instance, c: &KeyCreate) -> Result<Arc<Object>> {
    let t = &i.token;
    let spec = c
        .spec
        .as_deref()
        .unwrap_or(if i.mode == "gm" { "SM4" } else { "AES_256" });
    let external = match c.origin.as_deref().unwrap_or("KMS") {
        "KMS" => false,
        "EXTERNAL" => true,
        o => {
            return Err(Error::new(
                ck::CKR_ARGUMENTS_BAD,
                format!("origin {o:?} is not KMS or EXTERNAL"),
            ))
        }
    };
    if let Some(a) = &c.alias {
        check_alias(a)?;
        if alias_taken(t, a) {
            return Err(Error::new(
                ck::CKR_ARGUMENTS_BAD,
                format!("alias {a:?} is already in use"),
            ));
        }
    }
    let symmetric = matches!(spec, "AES_256" | "AES_128" | "SM4");
    let usage = c.usage.clone().unwrap_or_else(|| {
        if spec.starts_with("EC_") {
            "SIGN/VERIFY".into()
        } else {
            "ENCRYPT/DECRYPT".into()
        }
    });
    // SM2 keys also encrypt (SM2PKE), as Alibaba Cloud KMS's EC_SM2 does.
    let sm2_encrypt = spec == "EC_SM2" && usage == "ENCRYPT/DECRYPT";
    if symmetric && usage != "ENCRYPT/DECRYPT"
        || spec.starts_with("EC_") && usage != "SIGN/VERIFY" && !sm2_encrypt
    {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            format!("spec {spec} does not allow usage {usage}"),
        ));
    }
    if external && !symmetric {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            "only symmetric keys take imported material",
        ));
    }
    if c.rotation_interval_days.is_some() && (!symmetric || external) {
        return Err(prohibited(
            "asymmetric and imported keys do not rotate automatically",
        ));
    }
    if let Some(n) = c.rotation_interval_days {
        if !(7..=365).contains(&n) {
            return Err(Error::new(
                ck::CKR_ARGUMENTS_BAD,
                "rotation interval must be 7..365 days",
            ));
        }
    }
    let mut template = vec![
        Attribute::bool(ck::CKA_TOKEN, true),
        Attribute::bool(ck::CKA_PRIVATE, true),
        Attribute::bool(ck::CKA_SENSITIVE, true),
        Attribute::bool(ck::CKA_EXTRACTABLE, false),
    ];
    for (ty, v) in usage_flags(&usage)? {
        template.push(Attribute::bool(*ty, *v));
    }
    if let Some(a) = &c.alias {
        template.push(Attribute::new(ck::CKA_LABEL, a.as_bytes().to_vec()));
    }
    let meta = KeyMeta {
        created: now(),
        description: c.description.clone().unwrap_or_default(),
        tags: c.tags.clone(),
        usage: usage.clone(),
        rotation_interval_days: c.rotation_interval_days,
        next_rotation: c.rotation_interval_days.map(|n| now() + u64::from(n) * DAY),
        service: c.service.clone(),
        versions: vec![(1, now())],
        ..Default::default()
    };
    let key_id = object::new_key_id();
    let mut objects: Vec<Attrs> = Vec::new();
    if symmetric {
        let len = if spec == "AES_256" { 32 } else { 16 };
        let (key_type, gen_mech) = if spec == "SM4" {
            (vendor::CKK_SM4, vendor::CKM_SM4_KEY_GEN)
        } else {
            (ck::CKK_AES, ck::CKM_AES_KEY_GEN)
        };
        let mut a = object::build(
            &template,
            Some(ck::CKO_SECRET_KEY),
            Some(key_type),
            Origin::Generate,
            Actor::So,
        )?;
        if external {
            a.set(ck::CKA_VALUE, Vec::new());
            object::finish_key(&mut a, Origin::Unwrap, None, &key_id);
            a.set_ulong(ck::CKA_VALUE_LEN, len as u64);
            a.set_ulong(
                vendor::CKA_P11KMS_KEY_STATE,
                vendor::CKV_P11KMS_STATE_PENDING_IMPORT,
            );
        } else {
            let gen = t
                .registry
                .get(gen_mech)?
                .generate_key(&MechParam::None, Some(len))?;
            a.set(ck::CKA_VALUE, gen.value.to_vec());
            object::finish_key(&mut a, Origin::Generate, Some(gen_mech), &key_id);
        }
        objects.push(a);
    } else {
        let (mech, public_extra) = match spec {
            "RSA_2048" | "RSA_3072" | "RSA_4096" => {
                let bits: u64 = spec[4..].parse().unwrap_or(2048);
                (
                    ck::CKM_RSA_PKCS_KEY_PAIR_GEN,
                    vec![
                        Attribute::ulong(ck::CKA_MODULUS_BITS, bits),
                        Attribute::new(ck::CKA_PUBLIC_EXPONENT, vec![1, 0, 1]),
                    ],
                )
            }
            "EC_P256" => (
                ck::CKM_EC_KEY_PAIR_GEN,
                vec![Attribute::new(ck::CKA_EC_PARAMS, super::P256_OID.to_vec())],
            ),
            "EC_P384" => (
                ck::CKM_EC_KEY_PAIR_GEN,
                vec![Attribute::new(ck::CKA_EC_PARAMS, super::P384_OID.to_vec())],
            ),
            "EC_SM2" => (vendor::CKM_SM2_KEY_PAIR_GEN, Vec::new()),
            other => {
                return Err(Error::new(
                    ck::CKR_ARGUMENTS_BAD,
                    format!("key spec {other:?} is not supported"),
                ))
            }
        };
        let (private, public) = generate_pair(t, mech, &template, &public_extra, &key_id)?;
        objects.push(private);
        objects.push(public);
    }
    let primary = &mut objects[0];
    if c.service.is_some() {
        primary.set_bool(vendor::CKA_P11KMS_SERVICE_KEY, true);
    }
    meta.store(primary)?;
    if c.service.is_some() {
        for o in objects.iter_mut().skip(1) {
            o.set_bool(vendor::CKA_P11KMS_SERVICE_KEY, true);
        }
    }
    let handles = t.apply(objects.into_iter().map(ObjectChange::Add).collect())?;
    event(&i.name, &key_id, "Created");
    handles
        .first()
        .and_then(|h| t.get(*h))
        .ok_or_else(|| Error::general("created key vanished"))
}

/// Generate a key pair with a registered mechanism: (private, public).
fn generate_pair(
    t: &Token,
    mech: u64,
    template: &[Attribute],
    public_extra: &[Attribute],
    key_id: &str,
) -> Result<(Attrs, Attrs)> {
    let m = t.registry.get(mech)?;
    let mut pub_t: Vec<Attribute> = template
        .iter()
        .filter(|a| {
            matches!(
                a.ty,
                ck::CKA_TOKEN | ck::CKA_ENCRYPT | ck::CKA_VERIFY | ck::CKA_WRAP | ck::CKA_LABEL
            )
        })
        .cloned()
        .collect();
    pub_t.push(Attribute::bool(ck::CKA_PRIVATE, false));
    pub_t.extend(public_extra.iter().cloned());
    let priv_t: Vec<Attribute> = template
        .iter()
        .filter(|a| !matches!(a.ty, ck::CKA_ENCRYPT | ck::CKA_VERIFY | ck::CKA_WRAP))
        .cloned()
        .collect();
    let gen = m.generate_key_pair(&MechParam::None, &pub_t, &priv_t)?;
    let mut public = object::build(
        &pub_t,
        Some(ck::CKO_PUBLIC_KEY),
        Some(gen.key_type),
        Origin::Generate,
        Actor::So,
    )?;
    let mut private = object::build(
        &priv_t,
        Some(ck::CKO_PRIVATE_KEY),
        Some(gen.key_type),
        Origin::Generate,
        Actor::So,
    )?;
    for (ty, v) in gen.public_attrs {
        public.set(ty, v);
    }
    for (ty, v) in gen.private_attrs {
        private.set(ty, v);
    }
    public.set(INTERNAL_DER, gen.public_value);
    private.set(INTERNAL_DER, gen.private_value.to_vec());
    object::finish_key(&mut public, Origin::Generate, Some(mech), key_id);
    object::finish_key(&mut private, Origin::Generate, Some(mech), key_id);
    object::pair_history(&private, &mut public);
    Ok((private, public))
}

/// The instance's default key: AES-256 (SM4 on a `gm` instance), flagged
/// `CKA_P11KMS_DEFAULT_KEY`, made by the first admin command that changes
/// something (`make`), never by a read-only one. Once made, a mark in the
/// instance's store remembers its key id: if the key is ever missing, the
/// first command afterwards fails saying so (and the log says it once),
/// and no other key takes its place.
pub(crate) fn ensure_default_key(d: &Daemon, i: &Instance, make: bool) -> Result<()> {
    let t = &i.token;
    let existing = t
        .all_objects()
        .into_iter()
        .find(|o| o.attrs().bool(vendor::CKA_P11KMS_DEFAULT_KEY));
    match (existing, d.kms.default_key_id(&i.name)) {
        (Some(_), Some(_)) => return Ok(()),
        // Made before the mark existed (or the daemon stopped between the
        // two writes): mark it now.
        (Some(o), None) => {
            if make {
                d.kms
                    .mark_default_key(t, &super::key_id_of(&o).unwrap_or_default())?;
            }
            return Ok(());
        }
        (None, Some(key_id)) => {
            if d.kms.first_report_of_missing_default(&i.name) {
                let msg = format!(
                    "the default key {key_id} of instance {} is missing from its store; \
                     it is not replaced (restore the store from a backup)",
                    i.name
                );
                tracing::error!(instance = %i.name, key_id = %key_id, "{msg}");
                return Err(Error::new(ck::CKR_DEVICE_ERROR, msg));
            }
            return Ok(());
        }
        (None, None) if !make => return Ok(()),
        (None, None) => {}
    }
    let alias = if alias_taken(t, "default") {
        None
    } else {
        Some("default".to_string())
    };
    let spec = (i.mode == "gm").then(|| "SM4".to_string());
    let o = create(
        i,
        &KeyCreate {
            alias,
            spec,
            description: Some("default key of the instance".into()),
            ..Default::default()
        },
    )?;
    let key_id = super::key_id_of(&o).unwrap_or_default();
    let mut a = o.attrs().clone();
    a.set_bool(vendor::CKA_P11KMS_DEFAULT_KEY, true);
    t.apply(vec![ObjectChange::Update(o, a)])?;
    d.kms.mark_default_key(t, &key_id)
}

/// How imported material is wrapped.
#[derive(Debug, Clone, Copy)]
enum Wrapping {
    /// RSAES-OAEP with this hash and MGF1.
    Oaep(u64, u64),
    /// CKM_RSA_AES_KEY_WRAP: an ephemeral AES-256 key under OAEP-SHA-256,
    /// the material under RFC 5649.
    RsaAesKeyWrap,
    /// SM2 public-key encryption (GB/T 32918.4), C1C3C2, raw or DER.
    Sm2Pke,
}

/// The wrapping algorithm named on the command line, checked against the
/// wrapping key spec it is used with.
fn wrapping(alg: &str, spec: &str) -> Result<Wrapping> {
    let w = match alg {
        "RSAES_OAEP_SHA_256" => Wrapping::Oaep(ck::CKM_SHA256, ck::CKG_MGF1_SHA256),
        "RSAES_OAEP_SHA_1" => Wrapping::Oaep(ck::CKM_SHA_1, ck::CKG_MGF1_SHA1),
        "RSA_AES_KEY_WRAP_SHA_256" => Wrapping::RsaAesKeyWrap,
        "SM2PKE" => Wrapping::Sm2Pke,
        other => {
            return Err(Error::new(
                ck::CKR_ARGUMENTS_BAD,
                format!("unknown wrapping algorithm {other:?}"),
            ))
        }
    };
    let sm2_spec = spec == "EC_SM2";
    if matches!(w, Wrapping::Sm2Pke) != sm2_spec {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            format!("wrapping algorithm {alg} does not go with wrapping key spec {spec} (SM2PKE takes EC_SM2, the RSA algorithms RSA_2048/RSA_3072)"),
        ));
    }
    Ok(w)
}

/// The token already carries the instance's `allow_import` setting; the
/// PKCS#11 paths check the same field.
fn import_allowed(i: &Instance) -> Result<()> {
    if !i.token.allow_import {
        return Err(prohibited(
            "this instance only takes keys generated inside it (allow_import = false)",
        ));
    }
    Ok(())
}

/// The instance's import key for a wrapping key spec: an RSA private key
/// that can only unwrap, created on first use. PKCS#11 consumers can use the
/// same object with `C_UnwrapKey`.
fn import_key(i: &Instance, spec: &str) -> Result<Arc<Object>> {
    let t = &i.token;
    let label = format!("p11kms-import-key-{spec}");
    let find = || {
        t.all_objects().into_iter().find(|o| {
            o.class == ck::CKO_PRIVATE_KEY && o.attrs().get(ck::CKA_LABEL) == Some(label.as_bytes())
        })
    };
    if let Some(o) = find() {
        return Ok(o);
    }
    let bits: u64 = match spec {
        "RSA_2048" => 2048,
        "RSA_3072" => 3072,
        "EC_SM2" => 0,
        other => {
            return Err(Error::new(
                ck::CKR_ARGUMENTS_BAD,
                format!("unknown wrapping key spec {other:?}"),
            ))
        }
    };
    let template = vec![
        Attribute::bool(ck::CKA_TOKEN, true),
        Attribute::bool(ck::CKA_PRIVATE, true),
        Attribute::bool(ck::CKA_SENSITIVE, true),
        Attribute::bool(ck::CKA_EXTRACTABLE, false),
        Attribute::bool(ck::CKA_DECRYPT, false),
        Attribute::bool(ck::CKA_SIGN, false),
        Attribute::bool(ck::CKA_UNWRAP, true),
        Attribute::bool(ck::CKA_WRAP, true),
        Attribute::bool(ck::CKA_ENCRYPT, true),
        Attribute::new(ck::CKA_LABEL, label.clone().into_bytes()),
    ];
    let key_id = object::new_key_id();
    let (mut private, mut public) = if bits == 0 {
        generate_pair(t, vendor::CKM_SM2_KEY_PAIR_GEN, &template, &[], &key_id)?
    } else {
        let extra = [
            Attribute::ulong(ck::CKA_MODULUS_BITS, bits),
            Attribute::new(ck::CKA_PUBLIC_EXPONENT, vec![1, 0, 1]),
        ];
        generate_pair(t, ck::CKM_RSA_PKCS_KEY_PAIR_GEN, &template, &extra, &key_id)?
    };
    // Owned by the instance: nobody disables or deletes it.
    private.set_bool(vendor::CKA_P11KMS_SERVICE_KEY, true);
    public.set_bool(vendor::CKA_P11KMS_SERVICE_KEY, true);
    let meta = KeyMeta {
        created: now(),
        usage: "ENCRYPT/DECRYPT".into(),
        service: Some("p11kms-import".into()),
        ..Default::default()
    };
    meta.store(&mut private)?;
    t.apply(vec![ObjectChange::Add(private), ObjectChange::Add(public)])?;
    find().ok_or_else(|| Error::general("import key vanished"))
}

/// `p11kms key import-params`.
fn import_params(
    d: &Daemon,
    i: &Instance,
    key: &str,
    alg: &str,
    spec: &str,
) -> Result<ImportParams> {
    import_allowed(i)?;
    wrapping(alg, spec)?;
    let o = resolve(&i.token, key)?;
    protect(&o)?;
    if state(&o) != vendor::CKV_P11KMS_STATE_PENDING_IMPORT
        && o.attrs().ulong(vendor::CKA_P11KMS_ORIGIN) != Some(vendor::CKV_P11KMS_ORIGIN_EXTERNAL)
    {
        return Err(prohibited(
            "only keys created with --origin EXTERNAL take imported material",
        ));
    }
    let ik = import_key(i, spec)?;
    let spki = {
        let key_id = super::key_id_of(&ik).unwrap_or_default();
        i.token
            .objects_of_key(&key_id)
            .into_iter()
            .find(|x| x.class == ck::CKO_PUBLIC_KEY)
            .and_then(|x| x.attrs().get(INTERNAL_DER).map(<[u8]>::to_vec))
            .ok_or_else(|| Error::general("import key has no public half"))?
    };
    let mut tok = [0u8; 24];
    getrandom::fill(&mut tok)
        .map_err(|e| Error::new(ck::CKR_DEVICE_ERROR, format!("getrandom: {e}")))?;
    let token: String = tok.iter().map(|b| format!("{b:02x}")).collect();
    let expires = now() + IMPORT_TOKEN_TTL;
    let key_id = super::key_id_of(&o).unwrap_or_default();
    d.kms.add_import(
        &token,
        super::ImportSession {
            instance: i.name.clone(),
            key_id: key_id.clone(),
            algorithm: alg.to_string(),
            spec: spec.to_string(),
            expires,
            record: i.token.allocate_id(),
        },
        &i.token,
    )?;
    event(&i.name, &key_id, "ImportParametersIssued");
    Ok(ImportParams {
        key_id,
        public_key_pem: pem("PUBLIC KEY", &spki),
        import_token: token,
        expires_unix: expires,
        wrapping_algorithm: alg.to_string(),
        wrapping_key_spec: spec.to_string(),
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `p11kms key import`.
fn import(
    d: &Daemon,
    i: &Instance,
    key: &str,
    token: &str,
    wrapped: &[u8],
    expires: Option<u64>,
) -> Result<()> {
    import_allowed(i)?;
    let o = resolve(&i.token, key)?;
    protect(&o)?;
    let key_id = super::key_id_of(&o).unwrap_or_default();
    // Taking the session out makes every token single-use, even when the
    // import below fails.
    let session = d.kms.take_import(token).ok_or_else(|| {
        Error::new(
            ck::CKR_ARGUMENTS_BAD,
            "unknown or already used import token",
        )
    })?;
    // Used for good before anything else happens: the record goes from the
    // store of the instance that issued it, or the import does not run.
    let issuer = d
        .instances
        .iter()
        .find(|x| x.name == session.instance)
        .map_or(&i.token, |x| &x.token);
    issuer.delete_import_record(session.record)?;
    if session.instance != i.name || session.key_id != key_id {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            "the import token was issued for another key",
        ));
    }
    if now() > session.expires {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            "the import token has expired; get new import parameters",
        ));
    }
    if let Some(e) = expires {
        if e <= now() {
            return Err(Error::new(
                ck::CKR_ARGUMENTS_BAD,
                "the expiry time is in the past",
            ));
        }
    }
    let how = wrapping(&session.algorithm, &session.spec)?;
    let ik = import_key(i, &session.spec)?;
    let ik_key: Arc<Key> = ik.key()?;
    let oaep = |hash, mgf| MechParam::Oaep {
        hash,
        mgf,
        source: ck::CKZ_DATA_SPECIFIED,
        source_data: Vec::new(),
    };
    let decrypt_with = |mech: u64, param: &MechParam| {
        i.token
            .registry
            .get(mech)
            .and_then(|m| m.decrypt_init(&ik_key, param))
            .and_then(|mut op| op.oneshot(wrapped))
            .map(Zeroizing::new)
    };
    let material = match how {
        Wrapping::RsaAesKeyWrap => i
            .token
            .registry
            .get(ck::CKM_RSA_AES_KEY_WRAP)
            .and_then(|m| {
                m.unwrap(
                    &MechParam::RsaAesKeyWrap {
                        aes_key_bits: 256,
                        oaep: Some(Box::new(oaep(ck::CKM_SHA256, ck::CKG_MGF1_SHA256))),
                    },
                    &ik_key,
                    wrapped,
                )
            }),
        Wrapping::Oaep(hash, mgf) => decrypt_with(ck::CKM_RSA_PKCS_OAEP, &oaep(hash, mgf)),
        Wrapping::Sm2Pke => decrypt_with(vendor::CKM_SM2_ENCRYPT, &MechParam::None),
    }
    .map_err(|_| {
        Error::new(
            ck::CKR_WRAPPED_KEY_INVALID,
            "the material does not decrypt with the import key (wrong key, algorithm or data)",
        )
    })?;
    let a = o.attrs().clone();
    let want = a.ulong(ck::CKA_VALUE_LEN).unwrap_or(32) as usize;
    if material.len() != want {
        return Err(Error::new(
            ck::CKR_WRAPPED_KEY_LEN_RANGE,
            format!("key material must be {want} bytes, got {}", material.len()),
        ));
    }
    let existing = a.get(ck::CKA_VALUE).filter(|v| !v.is_empty());
    if existing.is_some_and(|v| v != material.as_slice()) {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            "this key already holds different material",
        ));
    }
    let previous_kcv = a
        .get(ck::CKA_CHECK_VALUE)
        .filter(|v| !v.is_empty())
        .map(<[u8]>::to_vec);
    let mut next = a;
    next.set(ck::CKA_VALUE, material.to_vec());
    object::refresh_check_value(&mut next);
    // Material that expired may only come back as the same material.
    if previous_kcv.is_some_and(|k| next.get(ck::CKA_CHECK_VALUE) != Some(k.as_slice())) {
        return Err(Error::new(
            ck::CKR_ARGUMENTS_BAD,
            "this key was imported before with different material",
        ));
    }
    next.set_ulong(
        vendor::CKA_P11KMS_KEY_STATE,
        vendor::CKV_P11KMS_STATE_ENABLED,
    );
    let mut m = KeyMeta::of(&next);
    m.material_expires = expires;
    m.store(&mut next)?;
    i.token.apply(vec![ObjectChange::Update(o, next)])?;
    event(&i.name, &key_id, "MaterialImported");
    Ok(())
}
