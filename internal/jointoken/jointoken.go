// Package jointoken parses and formats the token an agent presents to join
// a cluster. The formats are k3s':
//
//	K10<sha256 hex of the CA certificate PEM>::<user>:<secret>   the server's token
//	K10<sha256 hex of the CA certificate PEM>::<id>.<secret>     a bootstrap token
//
// The hash pins the server's CA, so a joining agent can verify the server
// before it sends the secret. A bare secret (anything not starting with
// K10) is accepted too, as k3s does; it pins nothing. A bootstrap token
// (`orch token create`) is Kubernetes' <id>.<secret> bearer token: six and
// sixteen characters of [a-z0-9], backed by a Secret
// kube-system/bootstrap-token-<id> that can expire; its Token has no User.
//
// The package is shared by the server (which prints the token) and the agent
// (which parses it). It does no I/O: storing the server's token is the
// server's business.
package jointoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

const (
	// Prefix starts every full token; "10" is k3s' format version.
	Prefix = "K10"
	// ServerUser is the user of tokens the server issues for joining.
	ServerUser = "server"
	// MaxSecretLen bounds the secret; real ones are 64 hex characters.
	MaxSecretLen = 256
	maxUserLen   = 64

	// BootstrapIDLen and BootstrapSecretLen are the lengths of the two
	// halves of a bootstrap token, as Kubernetes fixes them.
	BootstrapIDLen     = 6
	BootstrapSecretLen = 16
	// bootstrapAlphabet is the characters of bootstrap tokens.
	bootstrapAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Token is a parsed join token.
type Token struct {
	// CAHash is the lowercase hex SHA-256 of the CA certificate PEM bytes;
	// empty for a bare secret.
	CAHash string
	// User is "server" for the server's token and empty for a bootstrap
	// token, whose id is the first half of Secret.
	User string
	// Secret is what the agent sends as its bearer token: the server's
	// secret, or a bootstrap token's "<id>.<secret>".
	Secret string
}

// New returns the server's join token for a CA and a secret.
func New(caPEM []byte, secret string) Token {
	return Token{CAHash: CAHash(caPEM), User: ServerUser, Secret: secret}
}

// CAHash is the hash a token uses to pin caPEM: SHA-256 of the exact bytes.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// NewSecret returns 32 random bytes, hex encoded.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("jointoken: generate secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Parse reads a full token or a bare secret. Surrounding white space (a
// token file's trailing newline) is ignored; anything else malformed is an
// error that never echoes the secret.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("jointoken: token is empty")
	}
	if !strings.HasPrefix(s, Prefix) {
		if err := checkSecret(s); err != nil {
			return Token{}, err
		}
		if _, _, ok := ParseBootstrap(s); ok {
			return Token{Secret: s}, nil
		}
		return Token{User: ServerUser, Secret: s}, nil
	}
	hash, creds, ok := strings.Cut(s[len(Prefix):], "::")
	if !ok {
		return Token{}, fmt.Errorf("jointoken: token starts with %s but has no \"::\" after the CA hash (want %s<sha256>::<user>:<secret> or %s<sha256>::<id>.<secret>)", Prefix, Prefix, Prefix)
	}
	if len(hash) != sha256.Size*2 {
		return Token{}, fmt.Errorf("jointoken: CA hash has %d characters, want %d hex characters (SHA-256)", len(hash), sha256.Size*2)
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return Token{}, errors.New("jointoken: CA hash is not hexadecimal")
	}
	user, secret, ok := strings.Cut(creds, ":")
	if !ok {
		if _, _, ok := ParseBootstrap(creds); ok {
			return Token{CAHash: strings.ToLower(hash), Secret: creds}, nil
		}
		return Token{}, errors.New("jointoken: token has neither \"<user>:<secret>\" nor a bootstrap token \"<id>.<secret>\" " +
			"(6 and 16 characters of a-z, 0-9) after \"::\"")
	}
	if err := checkUser(user); err != nil {
		return Token{}, err
	}
	if err := checkSecret(secret); err != nil {
		return Token{}, err
	}
	return Token{CAHash: strings.ToLower(hash), User: user, Secret: secret}, nil
}

// String is the token as a user passes it: the full form when the CA is
// pinned, else the bare secret.
func (t Token) String() string {
	switch {
	case t.CAHash == "":
		return t.Secret
	case t.User == "":
		return Prefix + t.CAHash + "::" + t.Secret
	}
	return Prefix + t.CAHash + "::" + t.User + ":" + t.Secret
}

// BootstrapID is the id of a bootstrap token; ok is false for the
// server's token.
func (t Token) BootstrapID() (id string, ok bool) {
	if t.User != "" {
		return "", false
	}
	id, _, ok = ParseBootstrap(t.Secret)
	return id, ok
}

// NewBootstrap returns a new random bootstrap token pinned to caPEM.
func NewBootstrap(caPEM []byte) (Token, error) {
	b, err := randomBootstrapChars(BootstrapIDLen + BootstrapSecretLen)
	if err != nil {
		return Token{}, err
	}
	return Token{CAHash: CAHash(caPEM), Secret: b[:BootstrapIDLen] + "." + b[BootstrapIDLen:]}, nil
}

// ParseBootstrap splits a bootstrap token "<id>.<secret>"; ok is false
// when s is not one (Kubernetes' ^([a-z0-9]{6})\.([a-z0-9]{16})$).
func ParseBootstrap(s string) (id, secret string, ok bool) {
	id, secret, ok = strings.Cut(s, ".")
	if !ok || !ValidBootstrapID(id) || len(secret) != BootstrapSecretLen || !bootstrapChars(secret) {
		return "", "", false
	}
	return id, secret, true
}

// ValidBootstrapID reports whether id is a bootstrap token id: six
// characters of [a-z0-9].
func ValidBootstrapID(id string) bool {
	return len(id) == BootstrapIDLen && bootstrapChars(id)
}

func bootstrapChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(bootstrapAlphabet, rune(s[i])) {
			return false
		}
	}
	return true
}

// randomBootstrapChars draws n characters uniformly from bootstrapAlphabet;
// bytes at or above the largest multiple of its length are redrawn, so
// that no character is likelier than another.
func randomBootstrapChars(n int) (string, error) {
	const limit = 256 - 256%len(bootstrapAlphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("jointoken: generate bootstrap token: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, bootstrapAlphabet[int(b)%len(bootstrapAlphabet)])
			}
		}
	}
	return string(out), nil
}

// LogValue keeps the secret out of logs.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("caHash", t.CAHash), slog.String("user", t.User), slog.String("secret", "REDACTED"))
}

// Pinned reports whether the token pins a CA.
func (t Token) Pinned() bool { return t.CAHash != "" }

// VerifyCA checks that caPEM is the CA the token pins. A token that pins
// nothing verifies nothing: callers decide whether that is acceptable.
func (t Token) VerifyCA(caPEM []byte) error {
	if !t.Pinned() {
		return nil
	}
	if got := CAHash(caPEM); got != t.CAHash {
		return fmt.Errorf("jointoken: server CA hash is %s but the token pins %s: wrong server or wrong token", got, t.CAHash)
	}
	return nil
}

// SecretEqual compares secrets in constant time.
func (t Token) SecretEqual(secret string) bool {
	return t.Secret != "" && subtle.ConstantTimeCompare([]byte(t.Secret), []byte(secret)) == 1
}

func checkUser(u string) error {
	if u == "" {
		return errors.New("jointoken: user before the secret is empty")
	}
	if len(u) > maxUserLen {
		return fmt.Errorf("jointoken: user is longer than %d characters", maxUserLen)
	}
	for _, c := range u {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errors.New("jointoken: user may contain only letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}

// checkSecret allows printable ASCII without spaces: the secret travels in
// an HTTP header and a YAML file, and must survive both unchanged.
func checkSecret(s string) error {
	if s == "" {
		return errors.New("jointoken: secret is empty")
	}
	if len(s) > MaxSecretLen {
		return fmt.Errorf("jointoken: secret is longer than %d characters", MaxSecretLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("jointoken: secret contains a character that is not printable ASCII (position %d)", i)
		}
	}
	return nil
}
