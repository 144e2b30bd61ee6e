//! Emulated devices: the port-I/O and MMIO bus, legacy PC devices, virtio-mmio.
