package checkconfig

import (
	"fmt"
	"os"
	"syscall"
)

// accessWrite is W_OK of access(2).
const accessWrite = 2

// LocalHost is this machine, for orch's data directory dataDir.
func LocalHost(dataDir string) Host {
	return Host{
		Root:    os.DirFS("/"),
		EUID:    os.Geteuid(),
		DataDir: dataDir,
		Writable: func(dir string) error {
			// access(2) answers for the real uid, which is what a service
			// started by this user gets; it also sees read-only mounts.
			if err := syscall.Access(dir, accessWrite); err != nil {
				return fmt.Errorf("not writable: %w", err)
			}
			return nil
		},
		FreeBytes: func(dir string) (uint64, error) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err != nil {
				return 0, err
			}
			return st.Bavail * uint64(st.Bsize), nil
		},
	}
}
