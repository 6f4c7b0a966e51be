// Package installtest tests scripts/install.sh and the uninstallers it
// writes, for real: the installer downloads a freshly built orch and its
// checksum file from an HTTP server on 127.0.0.1 and installs into a
// temporary directory used as the root of the file system
// (INSTALL_ORCH_ROOT), with the init system forced (INSTALL_ORCH_INIT). The
// package has no code of its own.
package installtest
