package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/orch-dev/orch/store"
	"github.com/orch-dev/orch/store/bolt"
	"github.com/orch-dev/orch/store/encrypt"
)

// secretsPrefix is where the API server stores Secrets
// (apiserver.resourcePrefix of core/v1 secrets).
const secretsPrefix = "/registry/core/secrets/"

// EncryptionConfigPath is the key file of secrets encryption, in the
// format of kube-apiserver's --encryption-provider-config (as k3s keeps it).
func EncryptionConfigPath(dataDir string) string {
	return filepath.Join(dataDir, "server", "cred", "encryption-config.json")
}

// encryptSecrets wraps st so that Secrets are encrypted at rest when
// enabled (creating the key file on first use). Without the flag, an
// existing key file still lets the server read what was encrypted, while
// new writes are plain text: turning encryption off never locks data out.
func encryptSecrets(enabled bool, dataDir string, st store.Store) (store.Store, error) {
	path := EncryptionConfigPath(dataDir)
	keys, err := encrypt.LoadKeyring(path, enabled)
	switch {
	case errors.Is(err, os.ErrNotExist) && !enabled:
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("server: secrets encryption: %w", err)
	}
	if keys.Plaintext() == enabled {
		keys.SetPlaintext(!enabled)
		if err := keys.Save(path); err != nil {
			return nil, fmt.Errorf("server: secrets encryption: %w", err)
		}
	}
	return encrypt.New(st, keys, secretsPrefix), nil
}

// RotateEncryptionKeys adds a new key to the key file of the (stopped)
// server in dataDir and re-encrypts every Secret with it; the old keys
// stay in the file so that older snapshots remain readable. It returns the
// name of the new key and how many Secrets were rewritten.
func RotateEncryptionKeys(ctx context.Context, dataDir string) (string, int, error) {
	path := EncryptionConfigPath(dataDir)
	keys, err := encrypt.LoadKeyring(path, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", 0, fmt.Errorf("secrets encryption is not set up in %s (start the server with --secrets-encryption first)", dataDir)
		}
		return "", 0, err
	}
	st, err := openStoreNoWait(filepath.Join(dataDir, "server", "db", "state.db"))
	if err != nil {
		return "", 0, err
	}
	defer st.Close()
	if err := keys.Rotate(); err != nil {
		return "", 0, err
	}
	// Save first: a crash after some values were re-encrypted must leave
	// a key file that opens them.
	if err := keys.Save(path); err != nil {
		return "", 0, err
	}
	n, err := encrypt.New(st, keys, secretsPrefix).Rewrite(ctx)
	if err != nil {
		return keys.KeyNames()[0], n, fmt.Errorf("re-encrypt secrets: %w", err)
	}
	return keys.KeyNames()[0], n, nil
}

// openStoreNoWait opens the store of a stopped server; a running server
// holds the file lock, which is reported rather than waited for.
func openStoreNoWait(path string) (store.Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no orch database: %w", err)
	}
	st, err := bolt.Open(path, bolt.Options{LockTimeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s (stop orch server first, it holds the database): %w", path, err)
	}
	return st, nil
}

// EncryptionStatus reads the key file of dataDir: whether new Secrets are
// encrypted, and the key names, the active one first. A missing file means
// encryption was never turned on.
func EncryptionStatus(dataDir string) (enabled bool, keys []string, err error) {
	kr, err := encrypt.LoadKeyring(EncryptionConfigPath(dataDir), false)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	return !kr.Plaintext(), kr.KeyNames(), nil
}
