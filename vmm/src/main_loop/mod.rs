//! QEMU-style main loop (see ../shared/design/MAINLOOP.md).
