//! The REMOTE program's procedures, sorted by number: one line each, with the libvirt API it
//! serves, its handler (whose argument and result types say how it is encoded) and its
//! attributes.

use super::program::attr::{BARRIER, BEFORE_OPEN, INLINE, MUTATING, PRIORITY};
use super::program::{procedure, Procedure};
use super::protocol::procedure as p;
use super::{
    connect, console, cpus, definitions, domstats, events, lifecycle, node, queries, stats,
    storage, unsupported,
};

#[rustfmt::skip]
pub static PROCEDURES: &[Procedure] = &[
    procedure!(p::CONNECT_OPEN, "virConnectOpen", connect::open, BEFORE_OPEN | PRIORITY | BARRIER),
    procedure!(p::CONNECT_CLOSE, "virConnectClose", connect::close, BEFORE_OPEN | PRIORITY),
    procedure!(p::CONNECT_GET_TYPE, "virConnectGetType", connect::get_type, INLINE),
    procedure!(p::CONNECT_GET_VERSION, "virConnectGetVersion", connect::get_version, INLINE),
    procedure!(p::CONNECT_GET_MAX_VCPUS, "virConnectGetMaxVcpus", connect::get_max_vcpus, INLINE),
    procedure!(p::NODE_GET_INFO, "virNodeGetInfo", connect::node_get_info),
    procedure!(p::CONNECT_GET_CAPABILITIES, "virConnectGetCapabilities", node::get_capabilities),
    procedure!(p::DOMAIN_CREATE, "virDomainCreate", lifecycle::create, MUTATING),
    procedure!(p::DOMAIN_CREATE_XML, "virDomainCreateXML", definitions::create_xml, MUTATING),
    procedure!(p::DOMAIN_DEFINE_XML, "virDomainDefineXML", definitions::define_xml, MUTATING),
    procedure!(p::DOMAIN_DESTROY, "virDomainDestroy", lifecycle::destroy, MUTATING | PRIORITY),
    procedure!(p::DOMAIN_GET_XML_DESC, "virDomainGetXMLDesc", queries::get_xml_desc),
    procedure!(p::DOMAIN_GET_AUTOSTART, "virDomainGetAutostart", queries::get_autostart, INLINE),
    procedure!(p::DOMAIN_GET_INFO, "virDomainGetInfo", queries::get_info, INLINE),
    procedure!(p::DOMAIN_GET_MAX_MEMORY, "virDomainGetMaxMemory", queries::get_max_memory, INLINE),
    procedure!(p::DOMAIN_GET_MAX_VCPUS, "virDomainGetMaxVcpus", cpus::get_max_vcpus, INLINE),
    procedure!(p::DOMAIN_GET_OS_TYPE, "virDomainGetOSType", queries::get_os_type, INLINE),
    procedure!(p::DOMAIN_GET_VCPUS, "virDomainGetVcpus", cpus::get_vcpus),
    procedure!(p::CONNECT_LIST_DEFINED_DOMAINS, "virConnectListDefinedDomains", queries::list_defined_domains, INLINE),
    procedure!(p::DOMAIN_LOOKUP_BY_ID, "virDomainLookupByID", queries::lookup_by_id, INLINE),
    procedure!(p::DOMAIN_LOOKUP_BY_NAME, "virDomainLookupByName", queries::lookup_by_name, INLINE),
    procedure!(p::DOMAIN_LOOKUP_BY_UUID, "virDomainLookupByUUID", queries::lookup_by_uuid, INLINE),
    procedure!(p::CONNECT_NUM_OF_DEFINED_DOMAINS, "virConnectNumOfDefinedDomains", queries::num_of_defined_domains, INLINE),
    procedure!(p::DOMAIN_PIN_VCPU, "virDomainPinVcpu", cpus::pin_vcpu, MUTATING),
    procedure!(p::DOMAIN_REBOOT, "virDomainReboot", lifecycle::reboot, MUTATING),
    procedure!(p::DOMAIN_RESUME, "virDomainResume", lifecycle::resume, MUTATING),
    procedure!(p::DOMAIN_SHUTDOWN, "virDomainShutdown", lifecycle::shutdown, MUTATING),
    procedure!(p::DOMAIN_SUSPEND, "virDomainSuspend", lifecycle::suspend, MUTATING),
    procedure!(p::DOMAIN_UNDEFINE, "virDomainUndefine", definitions::undefine, MUTATING),
    procedure!(p::CONNECT_LIST_DOMAINS, "virConnectListDomains", queries::list_domains, INLINE),
    procedure!(p::CONNECT_NUM_OF_DOMAINS, "virConnectNumOfDomains", queries::num_of_domains, INLINE),
    procedure!(p::CONNECT_GET_HOSTNAME, "virConnectGetHostname", connect::get_hostname),
    procedure!(p::CONNECT_SUPPORTS_FEATURE, "virConnectSupportsFeature", connect::supports_feature, BEFORE_OPEN),
    procedure!(p::DOMAIN_BLOCK_STATS, "virDomainBlockStats", stats::block_stats),
    procedure!(p::DOMAIN_INTERFACE_STATS, "virDomainInterfaceStats", stats::interface_stats),
    procedure!(p::AUTH_LIST, "virConnectAuthList", connect::auth_list, BEFORE_OPEN),
    procedure!(p::CONNECT_NUM_OF_STORAGE_POOLS, "virConnectNumOfStoragePools", storage::num_of_pools, INLINE),
    procedure!(p::CONNECT_LIST_STORAGE_POOLS, "virConnectListStoragePools", storage::list_pools, INLINE),
    procedure!(p::CONNECT_NUM_OF_DEFINED_STORAGE_POOLS, "virConnectNumOfDefinedStoragePools", storage::num_of_defined_pools, INLINE),
    procedure!(p::CONNECT_LIST_DEFINED_STORAGE_POOLS, "virConnectListDefinedStoragePools", storage::list_defined_pools, INLINE),
    procedure!(p::STORAGE_POOL_CREATE_XML, "virStoragePoolCreateXML", storage::pool_create_xml, MUTATING),
    procedure!(p::STORAGE_POOL_DEFINE_XML, "virStoragePoolDefineXML", storage::pool_define_xml, MUTATING),
    procedure!(p::STORAGE_POOL_CREATE, "virStoragePoolCreate", storage::pool_create, MUTATING),
    procedure!(p::STORAGE_POOL_BUILD, "virStoragePoolBuild", storage::pool_build, MUTATING),
    procedure!(p::STORAGE_POOL_DESTROY, "virStoragePoolDestroy", storage::pool_destroy, MUTATING),
    procedure!(p::STORAGE_POOL_UNDEFINE, "virStoragePoolUndefine", storage::pool_undefine, MUTATING),
    procedure!(p::STORAGE_POOL_REFRESH, "virStoragePoolRefresh", storage::pool_refresh, MUTATING),
    procedure!(p::STORAGE_POOL_LOOKUP_BY_NAME, "virStoragePoolLookupByName", storage::pool_lookup_by_name, INLINE),
    procedure!(p::STORAGE_POOL_LOOKUP_BY_UUID, "virStoragePoolLookupByUUID", storage::pool_lookup_by_uuid, INLINE),
    procedure!(p::STORAGE_POOL_LOOKUP_BY_VOLUME, "virStoragePoolLookupByVolume", storage::pool_lookup_by_volume),
    procedure!(p::STORAGE_POOL_GET_INFO, "virStoragePoolGetInfo", storage::pool_get_info),
    procedure!(p::STORAGE_POOL_GET_XML_DESC, "virStoragePoolGetXMLDesc", storage::pool_get_xml_desc),
    procedure!(p::STORAGE_POOL_GET_AUTOSTART, "virStoragePoolGetAutostart", storage::pool_get_autostart, INLINE),
    procedure!(p::STORAGE_POOL_SET_AUTOSTART, "virStoragePoolSetAutostart", storage::pool_set_autostart, MUTATING),
    procedure!(p::STORAGE_POOL_NUM_OF_VOLUMES, "virStoragePoolNumOfVolumes", storage::pool_num_of_volumes),
    procedure!(p::STORAGE_POOL_LIST_VOLUMES, "virStoragePoolListVolumes", storage::pool_list_volumes),
    procedure!(p::STORAGE_VOL_CREATE_XML, "virStorageVolCreateXML", storage::volume_data, MUTATING),
    procedure!(p::STORAGE_VOL_DELETE, "virStorageVolDelete", storage::volume_data, MUTATING),
    procedure!(p::STORAGE_VOL_LOOKUP_BY_NAME, "virStorageVolLookupByName", storage::vol_lookup_by_name),
    procedure!(p::STORAGE_VOL_LOOKUP_BY_KEY, "virStorageVolLookupByKey", storage::vol_lookup_by_path),
    procedure!(p::STORAGE_VOL_LOOKUP_BY_PATH, "virStorageVolLookupByPath", storage::vol_lookup_by_path),
    procedure!(p::STORAGE_VOL_GET_INFO, "virStorageVolGetInfo", storage::vol_get_info),
    procedure!(p::STORAGE_VOL_GET_XML_DESC, "virStorageVolGetXMLDesc", storage::vol_get_xml_desc),
    procedure!(p::STORAGE_VOL_GET_PATH, "virStorageVolGetPath", storage::vol_get_path),
    procedure!(p::NODE_GET_CELLS_FREE_MEMORY, "virNodeGetCellsFreeMemory", node::get_cells_free_memory),
    procedure!(p::NODE_GET_FREE_MEMORY, "virNodeGetFreeMemory", node::get_free_memory),
    procedure!(p::NODE_GET_SECURITY_MODEL, "virNodeGetSecurityModel", connect::node_get_security_model),
    procedure!(p::STORAGE_VOL_CREATE_XML_FROM, "virStorageVolCreateXMLFrom", storage::volume_data, MUTATING),
    procedure!(p::CONNECT_IS_SECURE, "virConnectIsSecure", connect::is_secure, INLINE),
    procedure!(p::DOMAIN_IS_ACTIVE, "virDomainIsActive", queries::is_active, INLINE),
    procedure!(p::DOMAIN_IS_PERSISTENT, "virDomainIsPersistent", queries::is_persistent, INLINE),
    procedure!(p::STORAGE_POOL_IS_ACTIVE, "virStoragePoolIsActive", storage::pool_is_active, INLINE),
    procedure!(p::STORAGE_POOL_IS_PERSISTENT, "virStoragePoolIsPersistent", storage::pool_is_persistent, INLINE),
    procedure!(p::CONNECT_GET_LIB_VERSION, "virConnectGetLibVersion", connect::get_lib_version, INLINE),
    procedure!(p::DOMAIN_MEMORY_STATS, "virDomainMemoryStats", stats::memory_stats),
    procedure!(p::DOMAIN_GET_JOB_INFO, "virDomainGetJobInfo", stats::job_info, INLINE),
    procedure!(p::STORAGE_VOL_WIPE, "virStorageVolWipe", storage::volume_data, MUTATING),
    procedure!(p::DOMAIN_HAS_MANAGED_SAVE_IMAGE, "virDomainHasManagedSaveImage", queries::has_managed_save_image, INLINE),
    procedure!(p::DOMAIN_GET_BLOCK_INFO, "virDomainGetBlockInfo", stats::block_info),
    procedure!(p::DOMAIN_CREATE_WITH_FLAGS, "virDomainCreateWithFlags", lifecycle::create_with_flags, MUTATING),
    procedure!(p::DOMAIN_GET_VCPUS_FLAGS, "virDomainGetVcpusFlags", cpus::get_vcpus_flags),
    procedure!(p::DOMAIN_OPEN_CONSOLE, "virDomainOpenConsole", console::open_console, MUTATING),
    procedure!(p::CONNECT_GET_SYSINFO, "virConnectGetSysinfo", node::get_sysinfo),
    procedure!(p::DOMAIN_INJECT_NMI, "virDomainInjectNMI", lifecycle::inject_nmi, MUTATING),
    procedure!(p::DOMAIN_SCREENSHOT, "virDomainScreenshot", unsupported::screenshot),
    procedure!(p::DOMAIN_GET_STATE, "virDomainGetState", queries::get_state, INLINE),
    procedure!(p::DOMAIN_PIN_VCPU_FLAGS, "virDomainPinVcpuFlags", cpus::pin_vcpu_flags, MUTATING),
    procedure!(p::DOMAIN_SEND_KEY, "virDomainSendKey", unsupported::send_key),
    procedure!(p::NODE_GET_CPU_STATS, "virNodeGetCPUStats", node::get_cpu_stats),
    procedure!(p::NODE_GET_MEMORY_STATS, "virNodeGetMemoryStats", node::get_memory_stats),
    procedure!(p::DOMAIN_GET_CONTROL_INFO, "virDomainGetControlInfo", stats::control_info, INLINE),
    procedure!(p::DOMAIN_GET_VCPU_PIN_INFO, "virDomainGetVcpuPinInfo", cpus::get_vcpu_pin_info),
    procedure!(p::DOMAIN_UNDEFINE_FLAGS, "virDomainUndefineFlags", definitions::undefine_flags, MUTATING),
    procedure!(p::DOMAIN_DESTROY_FLAGS, "virDomainDestroyFlags", lifecycle::destroy_flags, MUTATING | PRIORITY),
    procedure!(p::DOMAIN_BLOCK_STATS_FLAGS, "virDomainBlockStatsFlags", stats::block_stats_flags),
    procedure!(p::DOMAIN_RESET, "virDomainReset", lifecycle::reset, MUTATING),
    procedure!(p::DOMAIN_SHUTDOWN_FLAGS, "virDomainShutdownFlags", lifecycle::shutdown_flags, MUTATING),
    procedure!(p::STORAGE_VOL_WIPE_PATTERN, "virStorageVolWipePattern", storage::volume_data, MUTATING),
    procedure!(p::STORAGE_VOL_RESIZE, "virStorageVolResize", storage::volume_data, MUTATING),
    procedure!(p::DOMAIN_GET_CPU_STATS, "virDomainGetCPUStats", stats::cpu_stats),
    procedure!(p::DOMAIN_GET_DISK_ERRORS, "virDomainGetDiskErrors", stats::disk_errors, INLINE),
    procedure!(p::CONNECT_LIST_ALL_DOMAINS, "virConnectListAllDomains", queries::list_all_domains, INLINE),
    procedure!(p::DOMAIN_PIN_EMULATOR, "virDomainPinEmulator", cpus::pin_emulator, MUTATING),
    procedure!(p::DOMAIN_GET_EMULATOR_PIN_INFO, "virDomainGetEmulatorPinInfo", cpus::get_emulator_pin_info),
    procedure!(p::CONNECT_LIST_ALL_STORAGE_POOLS, "virConnectListAllStoragePools", storage::list_all_pools, INLINE),
    procedure!(p::STORAGE_POOL_LIST_ALL_VOLUMES, "virStoragePoolListAllVolumes", storage::pool_list_all_volumes),
    procedure!(p::NODE_GET_CPU_MAP, "virNodeGetCPUMap", cpus::node_get_cpu_map),
    procedure!(p::DOMAIN_GET_JOB_STATS, "virDomainGetJobStats", stats::job_stats, INLINE),
    procedure!(p::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, "virConnectDomainEventRegisterAny", events::register_any),
    procedure!(p::CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY, "virConnectDomainEventDeregisterAny", events::deregister_any),
    procedure!(p::CONNECT_GET_DOMAIN_CAPABILITIES, "virConnectGetDomainCapabilities", node::get_domain_capabilities),
    procedure!(p::CONNECT_GET_ALL_DOMAIN_STATS, "virConnectGetAllDomainStats", domstats::get_all_domain_stats),
    procedure!(p::DOMAIN_DEFINE_XML_FLAGS, "virDomainDefineXMLFlags", definitions::define_xml_flags, MUTATING),
    procedure!(p::CONNECT_REGISTER_CLOSE_CALLBACK, "virConnectRegisterCloseCallback", connect::no_op),
    procedure!(p::CONNECT_UNREGISTER_CLOSE_CALLBACK, "virConnectUnregisterCloseCallback", connect::no_op),
    procedure!(p::STORAGE_VOL_GET_INFO_FLAGS, "virStorageVolGetInfoFlags", storage::vol_get_info_flags),
    procedure!(p::STORAGE_POOL_LOOKUP_BY_TARGET_PATH, "virStoragePoolLookupByTargetPath", storage::pool_lookup_by_target_path, INLINE),
    procedure!(p::DOMAIN_GET_MESSAGES, "virDomainGetMessages", queries::get_messages, INLINE),
];

#[cfg(test)]
mod tests {
    use super::super::program::{attr, find};
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in PROCEDURES.windows(2) {
            assert!(
                pair[0].number < pair[1].number,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        assert_eq!(
            find(p::DOMAIN_SUSPEND).map(|p| p.name),
            Some("virDomainSuspend")
        );
        assert!(find(9999).is_none());
        assert!(find(-1).is_none());
    }

    #[test]
    fn attributes_per_procedure() {
        let has = |n, a| find(n).is_some_and(|p| p.attributes & a != 0);
        assert!(has(p::CONNECT_OPEN, attr::BEFORE_OPEN));
        assert!(has(p::CONNECT_OPEN, attr::BARRIER));
        assert!(has(p::DOMAIN_DESTROY, attr::MUTATING));
        assert!(has(p::DOMAIN_DESTROY, attr::PRIORITY));
        assert!(!has(p::DOMAIN_GET_INFO, attr::MUTATING));
        assert!(has(p::AUTH_LIST, attr::BEFORE_OPEN));
        assert!(!has(p::DOMAIN_SUSPEND, attr::BEFORE_OPEN));
    }
}
