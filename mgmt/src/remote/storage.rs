//! The storage pool and volume procedures over the directory pools of `crate::storage`:
//! what virt-install and virsh's pool-*/vol-* commands call to name a disk by its path.
//! Creating, deleting, wiping, resizing and moving volume data are refused as libvirt refuses
//! what a driver does not support.

use super::args::{Flags, NoFlags};
use super::program::Call;
use crate::rpc::error::{code, domain};
use crate::rpc::xdr::{Decode, Encode, XdrError, XdrReader, XdrWriter};
use crate::rpc::RemoteError;
use crate::storage::{self, Pool, StorageError, Volume, POOL_INACTIVE, POOL_RUNNING, VOLUME_FILE};

/// `remote_nonnull_storage_pool`: name and uuid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRef {
    pub name: String,
    pub uuid: [u8; 16],
}

impl Encode for PoolRef {
    fn encode(&self, w: &mut XdrWriter) {
        (self.name.as_str(), &self.uuid).encode(w);
    }
}

impl Decode for PoolRef {
    fn decode(r: &mut XdrReader) -> Result<PoolRef, XdrError> {
        let (name, uuid) = Decode::decode(r)?;
        Ok(PoolRef { name, uuid })
    }
}

impl From<Pool> for PoolRef {
    fn from(pool: Pool) -> PoolRef {
        PoolRef {
            name: pool.name,
            uuid: pool.uuid,
        }
    }
}

/// `remote_nonnull_storage_vol`: pool name, volume name, key (the path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolRef {
    pub pool: String,
    pub name: String,
    pub key: String,
}

impl Encode for VolRef {
    fn encode(&self, w: &mut XdrWriter) {
        (self.pool.as_str(), self.name.as_str(), self.key.as_str()).encode(w);
    }
}

impl Decode for VolRef {
    fn decode(r: &mut XdrReader) -> Result<VolRef, XdrError> {
        let (pool, name, key) = Decode::decode(r)?;
        Ok(VolRef { pool, name, key })
    }
}

impl From<Volume> for VolRef {
    fn from(volume: Volume) -> VolRef {
        VolRef {
            key: volume.path.display().to_string(),
            pool: volume.pool,
            name: volume.name,
        }
    }
}

impl From<StorageError> for RemoteError {
    fn from(e: StorageError) -> RemoteError {
        let (code, message) = match e {
            StorageError::NoPool(m) => (code::NO_STORAGE_POOL, m),
            StorageError::NoVolume(m) => (code::NO_STORAGE_VOL, m),
            StorageError::Xml(m) => (code::XML_ERROR, m),
            StorageError::Unsupported(m) => (
                code::CONFIG_UNSUPPORTED,
                format!("unsupported configuration: {m}"),
            ),
            StorageError::Invalid(m) => (code::OPERATION_INVALID, m),
            StorageError::Failed(m) => (code::OPERATION_FAILED, format!("operation failed: {m}")),
        };
        RemoteError::new(code, domain::STORAGE, message)
    }
}

/// The pool a `remote_nonnull_storage_pool` names, checked by UUID as libvirtd checks it.
fn pool(call: &Call, asked: &PoolRef) -> Result<Pool, RemoteError> {
    Ok(call.storage.by_uuid(&asked.uuid)?)
}

/// The volume a `remote_nonnull_storage_vol` names: still a file of an active pool.
fn volume(call: &Call, asked: &VolRef) -> Result<Volume, RemoteError> {
    Ok(call.storage.volume_by_name(&asked.pool, &asked.name)?)
}

/// `need_results` lists: the items when asked for, and their count.
fn counted<T>(items: Vec<T>, need_results: i32) -> (Vec<T>, u32) {
    let count = items.len() as u32;
    (if need_results != 0 { items } else { Vec::new() }, count)
}

/// The first `max` names (a negative or zero `max` asks for none).
fn first_names(names: impl Iterator<Item = String>, max: i32) -> Vec<String> {
    names.take(usize::try_from(max).unwrap_or(0)).collect()
}

/// virConnectListAllStoragePools' flags: state, persistence, autostart, then one bit per
/// pool type, of which `DIR` is the only kind here.
mod list_flags {
    pub const INACTIVE: u32 = 1 << 0;
    pub const ACTIVE: u32 = 1 << 1;
    pub const PERSISTENT: u32 = 1 << 2;
    pub const TRANSIENT: u32 = 1 << 3;
    pub const AUTOSTART: u32 = 1 << 4;
    pub const NO_AUTOSTART: u32 = 1 << 5;
    pub const DIR: u32 = 1 << 6;
    /// Every type bit libvirt 9.0 knows (dir up to iscsi-direct).
    pub const TYPES: u32 = 0x7ffc0;
    pub const ALL: u32 = 0x7ffff;
}

fn pool_matches(pool: &Pool, flags: u32) -> bool {
    use list_flags::*;
    let pair = |yes: u32, no: u32, value: bool| {
        flags & (yes | no) == 0 || (value && flags & yes != 0) || (!value && flags & no != 0)
    };
    pair(ACTIVE, INACTIVE, pool.active)
        && pair(PERSISTENT, TRANSIENT, pool.persistent)
        && pair(AUTOSTART, NO_AUTOSTART, pool.autostart)
        && (flags & TYPES == 0 || flags & DIR != 0)
}

pub fn list_all_pools(
    call: &Call,
    (need_results, flags): (i32, Flags<{ list_flags::ALL }>),
) -> Result<(Vec<PoolRef>, u32), RemoteError> {
    let pools = call.storage.list().into_iter();
    let wanted = pools
        .filter(|p| pool_matches(p, flags.0))
        .map(PoolRef::from);
    Ok(counted(wanted.collect(), need_results))
}

fn pool_names(call: &Call, active: bool) -> impl Iterator<Item = String> {
    let pools = call.storage.list().into_iter();
    pools.filter(move |p| p.active == active).map(|p| p.name)
}

pub fn num_of_pools(call: &Call, (): ()) -> Result<i32, RemoteError> {
    Ok(pool_names(call, true).count() as i32)
}

pub fn list_pools(call: &Call, max: i32) -> Result<Vec<String>, RemoteError> {
    Ok(first_names(pool_names(call, true), max))
}

pub fn num_of_defined_pools(call: &Call, (): ()) -> Result<i32, RemoteError> {
    Ok(pool_names(call, false).count() as i32)
}

pub fn list_defined_pools(call: &Call, max: i32) -> Result<Vec<String>, RemoteError> {
    Ok(first_names(pool_names(call, false), max))
}

/// VIR_STORAGE_POOL_CREATE_WITH_BUILD*: build first (a directory is made either way).
const CREATE_WITH_BUILD: u32 = 0x7;
/// VIR_STORAGE_POOL_DEFINE_VALIDATE: the reader refuses what it cannot honour anyway.
const DEFINE_VALIDATE: u32 = 1;
/// VIR_STORAGE_POOL_BUILD_NEW / NO_OVERWRITE: an existing directory is kept either way.
const BUILD_NEW_OR_KEEP: u32 = 0x1 | 0x4;

pub fn pool_create_xml(
    call: &Call,
    (xml, flags): (String, Flags<CREATE_WITH_BUILD>),
) -> Result<PoolRef, RemoteError> {
    Ok(call.storage.create(&xml, flags.0 != 0)?.into())
}

pub fn pool_define_xml(
    call: &Call,
    (xml, _): (String, Flags<DEFINE_VALIDATE>),
) -> Result<PoolRef, RemoteError> {
    Ok(call.storage.define(&xml)?.into())
}

pub fn pool_create(
    call: &Call,
    (asked, flags): (PoolRef, Flags<CREATE_WITH_BUILD>),
) -> Result<(), RemoteError> {
    let pool = pool(call, &asked)?;
    if flags.0 != 0 {
        call.storage.build(&pool.name)?;
    }
    Ok(call.storage.start(&pool.name)?)
}

pub fn pool_build(
    call: &Call,
    (asked, _): (PoolRef, Flags<BUILD_NEW_OR_KEEP>),
) -> Result<(), RemoteError> {
    Ok(call.storage.build(&pool(call, &asked)?.name)?)
}

pub fn pool_destroy(call: &Call, asked: PoolRef) -> Result<(), RemoteError> {
    Ok(call.storage.stop(&pool(call, &asked)?.name)?)
}

pub fn pool_undefine(call: &Call, asked: PoolRef) -> Result<(), RemoteError> {
    Ok(call.storage.undefine(&pool(call, &asked)?.name)?)
}

pub fn pool_refresh(call: &Call, (asked, _): (PoolRef, NoFlags)) -> Result<(), RemoteError> {
    Ok(call.storage.refresh(&pool(call, &asked)?.name)?)
}

pub fn pool_lookup_by_name(call: &Call, name: String) -> Result<PoolRef, RemoteError> {
    Ok(call.storage.by_name(&name)?.into())
}

pub fn pool_lookup_by_uuid(call: &Call, uuid: [u8; 16]) -> Result<PoolRef, RemoteError> {
    Ok(call.storage.by_uuid(&uuid)?.into())
}

pub fn pool_lookup_by_volume(call: &Call, asked: VolRef) -> Result<PoolRef, RemoteError> {
    let volume = volume(call, &asked)?;
    Ok(call.storage.by_name(&volume.pool)?.into())
}

pub fn pool_lookup_by_target_path(call: &Call, path: String) -> Result<PoolRef, RemoteError> {
    Ok(call.storage.by_target_path(&path)?.into())
}

/// `{state, capacity, allocation, available}`; `unsigned char` travels as a word.
pub fn pool_get_info(call: &Call, asked: PoolRef) -> Result<(u32, u64, u64, u64), RemoteError> {
    let pool = pool(call, &asked)?;
    let space = storage::pool_space(&pool);
    let state = if pool.active {
        POOL_RUNNING
    } else {
        POOL_INACTIVE
    };
    Ok((state, space.capacity, space.allocation, space.available))
}

/// VIR_STORAGE_XML_INACTIVE: the same document (a dir pool's definition has no live part).
pub fn pool_get_xml_desc(
    call: &Call,
    (asked, _): (PoolRef, Flags<1>),
) -> Result<String, RemoteError> {
    Ok(storage::pool_xml(&pool(call, &asked)?))
}

pub fn pool_get_autostart(call: &Call, asked: PoolRef) -> Result<i32, RemoteError> {
    Ok(i32::from(pool(call, &asked)?.autostart))
}

pub fn pool_set_autostart(
    call: &Call,
    (asked, autostart): (PoolRef, i32),
) -> Result<(), RemoteError> {
    let pool = pool(call, &asked)?;
    Ok(call.storage.set_autostart(&pool.name, autostart != 0)?)
}

pub fn pool_num_of_volumes(call: &Call, asked: PoolRef) -> Result<i32, RemoteError> {
    Ok(call.storage.volumes(&pool(call, &asked)?.name)?.len() as i32)
}

pub fn pool_list_volumes(
    call: &Call,
    (asked, max): (PoolRef, i32),
) -> Result<Vec<String>, RemoteError> {
    let volumes = call.storage.volumes(&pool(call, &asked)?.name)?;
    Ok(first_names(volumes.into_iter().map(|v| v.name), max))
}

pub fn pool_list_all_volumes(
    call: &Call,
    (asked, need_results, _): (PoolRef, i32, NoFlags),
) -> Result<(Vec<VolRef>, u32), RemoteError> {
    let volumes = call.storage.volumes(&pool(call, &asked)?.name)?;
    Ok(counted(
        volumes.into_iter().map(VolRef::from).collect(),
        need_results,
    ))
}

pub fn pool_is_active(call: &Call, asked: PoolRef) -> Result<i32, RemoteError> {
    Ok(i32::from(pool(call, &asked)?.active))
}

pub fn pool_is_persistent(call: &Call, asked: PoolRef) -> Result<i32, RemoteError> {
    Ok(i32::from(pool(call, &asked)?.persistent))
}

pub fn vol_lookup_by_name(
    call: &Call,
    (asked, name): (PoolRef, String),
) -> Result<VolRef, RemoteError> {
    let pool = pool(call, &asked)?;
    Ok(call.storage.volume_by_name(&pool.name, &name)?.into())
}

/// By key or by path: a volume's key is its path.
pub fn vol_lookup_by_path(call: &Call, path: String) -> Result<VolRef, RemoteError> {
    Ok(call.storage.volume_by_path(&path)?.into())
}

/// `{type, capacity, allocation}`; `char` travels as a word.
pub fn vol_get_info(call: &Call, asked: VolRef) -> Result<(i32, u64, u64), RemoteError> {
    let size = storage::volume_size(&volume(call, &asked)?)?;
    Ok((VOLUME_FILE, size.capacity, size.allocation))
}

/// VIR_STORAGE_VOL_GET_PHYSICAL: a raw file's physical size is its allocation here.
pub fn vol_get_info_flags(
    call: &Call,
    (asked, _): (VolRef, Flags<1>),
) -> Result<(i32, u64, u64), RemoteError> {
    vol_get_info(call, asked)
}

pub fn vol_get_xml_desc(call: &Call, (asked, _): (VolRef, NoFlags)) -> Result<String, RemoteError> {
    Ok(storage::volume_xml(&volume(call, &asked)?)?)
}

pub fn vol_get_path(call: &Call, asked: VolRef) -> Result<String, RemoteError> {
    Ok(volume(call, &asked)?.path.display().to_string())
}

/// Volume data is the user's files: this VMM does not create, clone, delete, wipe or resize
/// them (make the file, and the pool lists it). Refused as libvirt refuses what a driver
/// lacks, naming the function; the arguments are not looked at.
pub fn volume_data(call: &Call, (): ()) -> Result<(), RemoteError> {
    let function = super::program::find(call.header.procedure).map_or("?", |p| p.name);
    Err(RemoteError::new(
        code::NO_SUPPORT,
        domain::STORAGE,
        format!("this function is not supported by the connection driver: {function}"),
    ))
}
