// Package installtest tests scripts/install.sh, the uninstallers it writes
// and scripts/orch-killall.sh, for real: the installer downloads a freshly
// built orch and its checksum file from an HTTP server on 127.0.0.1 and
// installs into a temporary directory used as the root of the file system
// (INSTALL_ORCH_ROOT), with the init system forced (INSTALL_ORCH_INIT).
//
// TestInstallTwoNodesE2E goes on as a user would: the test is the init
// system. It reads ExecStart and EnvironmentFile from the systemd unit the
// installer wrote and runs that command with those settings, the server in
// one network namespace and the agent in another, then uses the cluster
// with the real kubectl, snapshots and restores it, and uninstalls it.
// The package has no code of its own.
package installtest
