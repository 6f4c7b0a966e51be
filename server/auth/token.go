package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/orch-dev/orch/internal/jointoken"
)

// EnsureToken returns the server's join token, kept in the file at path
// (mode 0600) and pinned to caPEM.
//
// given is the --token value: a full token or a bare secret. When set, its
// secret is used and stored; a full token must pin this server's CA. When
// empty, the stored secret is reused, and on first start a random one is
// generated. A token file that cannot be parsed is an error naming it and
// is left untouched.
func EnsureToken(path, given string, caPEM []byte) (jointoken.Token, error) {
	var secret string
	switch {
	case given != "":
		tok, err := jointoken.Parse(given)
		if err != nil {
			return jointoken.Token{}, fmt.Errorf("--token: %w", err)
		}
		if err := tok.VerifyCA(caPEM); err != nil {
			return jointoken.Token{}, fmt.Errorf("--token does not match this server's CA in %s: %w", filepath.Dir(path), err)
		}
		secret = tok.Secret
	default:
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if secret, err = jointoken.NewSecret(); err != nil {
				return jointoken.Token{}, err
			}
		case err != nil:
			return jointoken.Token{}, fmt.Errorf("read token file: %w", err)
		default:
			tok, err := jointoken.Parse(string(b))
			if err != nil {
				return jointoken.Token{}, fmt.Errorf("token file %s: %w (fix or remove it)", path, err)
			}
			// A stale CA hash (the CA was re-created) is corrected below.
			secret = tok.Secret
		}
	}

	tok := jointoken.New(caPEM, secret)
	if err := writeIfChanged(path, []byte(tok.String()+"\n")); err != nil {
		return jointoken.Token{}, err
	}
	return tok, nil
}

func writeIfChanged(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create directory for %s: %w", path, err)
	}
	if old, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(old)) == strings.TrimSpace(string(data)) {
		// Still make sure nobody else can read the secret.
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data) // CreateTemp makes the file 0600.
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// EnsureAdminToken returns the admin bearer token kept in path (0600),
// creating it on first start.
func EnsureAdminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		t := strings.TrimSpace(string(b))
		if len(t) < 32 {
			return "", fmt.Errorf("admin token file %s is damaged (fix or remove it)", path)
		}
		return t, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read admin token file: %w", err)
	}
	t, err := jointoken.NewSecret()
	if err != nil {
		return "", err
	}
	if err := writeIfChanged(path, []byte(t+"\n")); err != nil {
		return "", err
	}
	return t, nil
}
