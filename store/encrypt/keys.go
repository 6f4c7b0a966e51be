package encrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The key file is a kube-apiserver EncryptionConfiguration in JSON (what
// k3s writes to server/cred/encryption-config.json), so the format is the
// one operators know:
//
//	{"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
//	 "resources": [{"resources": ["secrets"], "providers": [
//	   {"aesgcm": {"keys": [{"name": "key2", "secret": "<base64 of 32 bytes>"},
//	                        {"name": "key1", "secret": "..."}]}},
//	   {"identity": {}}]}]}
//
// The first aesgcm key encrypts; every key decrypts. A file whose first
// provider is identity writes plain text and still reads what the keys
// encrypted (encryption turned off).

type encryptionConfiguration struct {
	Kind       string          `json:"kind"`
	APIVersion string          `json:"apiVersion"`
	Resources  []resourceGroup `json:"resources"`
}

type resourceGroup struct {
	Resources []string   `json:"resources"`
	Providers []provider `json:"providers"`
}

type provider struct {
	AESGCM   *keyList  `json:"aesgcm,omitempty"`
	Identity *struct{} `json:"identity,omitempty"`
}

type keyList struct {
	Keys []namedKey `json:"keys"`
}

type namedKey struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// Keyring holds the AES-GCM keys of the key file.
type Keyring struct {
	keys []aesKey // keys[0] encrypts, unless plaintext
	// plaintext: new values are written unencrypted (identity first).
	plaintext bool
}

type aesKey struct {
	name   string
	secret []byte
	aead   cipher.AEAD
}

// keySize is AES-256.
const keySize = 32

// LoadKeyring reads the key file at path. With create, a missing file is
// created (directory 0700, file 0600) with one new key. The keyring
// encrypts unless the file puts identity first.
func LoadKeyring(path string, create bool) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		kr := &Keyring{}
		if err := kr.addKey(); err != nil {
			return nil, err
		}
		if err := kr.Save(path); err != nil {
			return nil, err
		}
		return kr, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read encryption key file: %w", err)
	}
	return parseKeyring(data, path)
}

func parseKeyring(data []byte, path string) (*Keyring, error) {
	var cfg encryptionConfiguration
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	kr := &Keyring{}
	first := true
	for _, rg := range cfg.Resources {
		for _, p := range rg.Providers {
			switch {
			case p.AESGCM != nil:
				for _, k := range p.AESGCM.Keys {
					secret, err := base64.StdEncoding.DecodeString(k.Secret)
					if err != nil {
						return nil, fmt.Errorf("encryption key file %s: key %q: %w", path, k.Name, err)
					}
					key, err := newAESKey(k.Name, secret)
					if err != nil {
						return nil, fmt.Errorf("encryption key file %s: %w", path, err)
					}
					kr.keys = append(kr.keys, key)
				}
			case p.Identity != nil:
				if first {
					kr.plaintext = true
				}
			}
			first = false
		}
	}
	if len(kr.keys) == 0 && !kr.plaintext {
		return nil, fmt.Errorf("encryption key file %s has no aesgcm key", path)
	}
	return kr, nil
}

func newAESKey(name string, secret []byte) (aesKey, error) {
	if name == "" || strings.Contains(name, ":") {
		return aesKey{}, fmt.Errorf("invalid key name %q", name)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return aesKey{}, fmt.Errorf("key %q: %w", name, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return aesKey{}, fmt.Errorf("key %q: %w", name, err)
	}
	return aesKey{name: name, secret: secret, aead: aead}, nil
}

// Rotate adds a new key that encrypts from now on; the old keys still
// decrypt. It also turns encryption on.
func (kr *Keyring) Rotate() error {
	kr.plaintext = false
	return kr.addKey()
}

// SetPlaintext makes new writes plain text (or encrypted again).
func (kr *Keyring) SetPlaintext(on bool) { kr.plaintext = on }

// Plaintext reports whether new values are written unencrypted.
func (kr *Keyring) Plaintext() bool { return kr.plaintext }

// KeyNames lists the keys, the encrypting one first.
func (kr *Keyring) KeyNames() []string {
	names := make([]string, len(kr.keys))
	for i, k := range kr.keys {
		names[i] = k.name
	}
	return names
}

// addKey puts a new random key first, named one past the highest
// "keyN" so names never repeat.
func (kr *Keyring) addKey() error {
	n := 0
	for _, k := range kr.keys {
		if i, err := strconv.Atoi(strings.TrimPrefix(k.name, "key")); err == nil && i > n {
			n = i
		}
	}
	secret := make([]byte, keySize)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("generate encryption key: %w", err)
	}
	key, err := newAESKey("key"+strconv.Itoa(n+1), secret)
	if err != nil {
		return err
	}
	kr.keys = append([]aesKey{key}, kr.keys...)
	return nil
}

// Save writes the key file atomically (0600, its directory 0700).
func (kr *Keyring) Save(path string) error {
	keys := make([]namedKey, len(kr.keys))
	for i, k := range kr.keys {
		keys[i] = namedKey{Name: k.name, Secret: base64.StdEncoding.EncodeToString(k.secret)}
	}
	providers := []provider{{AESGCM: &keyList{Keys: keys}}, {Identity: &struct{}{}}}
	if kr.plaintext {
		providers[0], providers[1] = providers[1], providers[0]
	}
	cfg := encryptionConfiguration{
		Kind: "EncryptionConfiguration", APIVersion: "apiserver.config.k8s.io/v1",
		Resources: []resourceGroup{{Resources: []string{"secrets"}, Providers: providers}},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create encryption key directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".encryption-config-*")
	if err != nil {
		return fmt.Errorf("write encryption key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write encryption key file: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write encryption key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write encryption key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write encryption key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write encryption key file: %w", err)
	}
	return nil
}

// prefix starts every value encrypted with the named key, as upstream's
// aesgcm provider: "k8s:enc:aesgcm:v1:<name>:".
func prefix(name string) string { return "k8s:enc:aesgcm:v1:" + name + ":" }

const encryptedMarker = "k8s:enc:"

// encrypt seals value with the first key; key (the store key) is the
// additional authenticated data, so a value cannot be moved to another key.
func (kr *Keyring) encrypt(key string, value []byte) ([]byte, error) {
	if kr.plaintext || len(kr.keys) == 0 {
		return value, nil
	}
	k := kr.keys[0]
	p := prefix(k.name)
	out := make([]byte, len(p), len(p)+k.aead.NonceSize()+len(value)+k.aead.Overhead())
	copy(out, p)
	nonce := out[len(p) : len(p)+k.aead.NonceSize()]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	return k.aead.Seal(out[:len(p)+len(nonce)], nonce, value, []byte(key)), nil
}

// ErrUnknownKey: a value is encrypted with a key the key file lacks.
var ErrUnknownKey = errors.New("encrypted with a key that is not in the key file")

// decrypt opens a value sealed by any key; plain text passes through.
func (kr *Keyring) decrypt(key string, value []byte) ([]byte, error) {
	if !bytes.HasPrefix(value, []byte(encryptedMarker)) {
		return value, nil
	}
	for _, k := range kr.keys {
		p := prefix(k.name)
		if len(value) < len(p) || string(value[:len(p)]) != p {
			continue
		}
		rest := value[len(p):]
		ns := k.aead.NonceSize()
		if len(rest) < ns {
			return nil, fmt.Errorf("decrypt %s: value too short", key)
		}
		plain, err := k.aead.Open(nil, rest[:ns], rest[ns:], []byte(key))
		if err != nil {
			return nil, fmt.Errorf("decrypt %s with key %q: %w", key, k.name, err)
		}
		return plain, nil
	}
	// Name the provider and key ("k8s:enc:aesgcm:v1:key3"), never the
	// ciphertext after them.
	fields := bytes.SplitN(value, []byte(":"), 6)
	if len(fields) > 5 {
		fields = fields[:5]
	}
	return nil, fmt.Errorf("decrypt %s (%q): %w", key, bytes.Join(fields, []byte(":")), ErrUnknownKey)
}
