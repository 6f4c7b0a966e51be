// Package jointoken parses and formats the token an agent presents to join
// a cluster. The format is k3s':
//
//	K10<sha256 hex of the CA certificate PEM>::<user>:<secret>
//
// The hash pins the server's CA, so a joining agent can verify the server
// before it sends the secret. A bare secret (anything not starting with
// K10) is accepted too, as k3s does; it pins nothing and its user is
// "server".
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
)

// Token is a parsed join token.
type Token struct {
	// CAHash is the lowercase hex SHA-256 of the CA certificate PEM bytes;
	// empty for a bare secret.
	CAHash string
	User   string
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
		return Token{User: ServerUser, Secret: s}, nil
	}
	hash, creds, ok := strings.Cut(s[len(Prefix):], "::")
	if !ok {
		return Token{}, fmt.Errorf("jointoken: token starts with %s but has no \"::\" after the CA hash (want %s<sha256>::<user>:<secret>)", Prefix, Prefix)
	}
	if len(hash) != sha256.Size*2 {
		return Token{}, fmt.Errorf("jointoken: CA hash has %d characters, want %d hex characters (SHA-256)", len(hash), sha256.Size*2)
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return Token{}, errors.New("jointoken: CA hash is not hexadecimal")
	}
	user, secret, ok := strings.Cut(creds, ":")
	if !ok {
		return Token{}, errors.New("jointoken: token has no \"<user>:<secret>\" after \"::\"")
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
	if t.CAHash == "" {
		return t.Secret
	}
	return Prefix + t.CAHash + "::" + t.User + ":" + t.Secret
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
