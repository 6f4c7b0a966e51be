package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// EnsureServiceAccountKey returns the service account token signing key
// kept at path (PEM, SEC 1 "EC PRIVATE KEY", mode 0600), generating a
// P-256 (ES256) key on first start.
// The key is never replaced: every token issued so far is signed with it.
// A file that cannot be parsed is an error naming it and is left untouched.
func EnsureServiceAccountKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseServiceAccountKey(path, data)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read service account key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate service account key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode service account key: %w", err)
	}
	if err := writeIfChanged(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("service account key: %w", err)
	}
	return key, nil
}

func parseServiceAccountKey(path string, data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("service account key %s: no PEM data (restore or remove it; tokens signed with it stop working)", path)
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("service account key %s: PEM block is %q, want an EC private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("service account key %s: %w", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("service account key %s: want a P-256 EC key (ES256), got %T", path, key)
	}
	return ec, nil
}
