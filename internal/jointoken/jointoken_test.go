package jointoken

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const hash = "5f6b1c0e2d3a4b5c6d7e8f90112233445566778899aabbccddeeff0011223344"

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Token
		wantErr string
	}{
		{name: "full", in: "K10" + hash + "::server:s3cret", want: Token{CAHash: hash, User: "server", Secret: "s3cret"}},
		{name: "full upper-case hash", in: "K10" + strings.ToUpper(hash) + "::node:abc", want: Token{CAHash: hash, User: "node", Secret: "abc"}},
		{name: "trailing newline", in: "K10" + hash + "::server:abc\n", want: Token{CAHash: hash, User: "server", Secret: "abc"}},
		{name: "secret with colon", in: "K10" + hash + "::server:a:b", want: Token{CAHash: hash, User: "server", Secret: "a:b"}},
		{name: "bare", in: "abcdef.0123456789abcdef", want: Token{User: "server", Secret: "abcdef.0123456789abcdef"}},
		{name: "bare with colon", in: "user:pass", want: Token{User: "server", Secret: "user:pass"}},

		{name: "empty", in: "", wantErr: "empty"},
		{name: "blank", in: " \t\n", wantErr: "empty"},
		{name: "prefix only", in: "K10", wantErr: "no \"::\""},
		{name: "no separator", in: "K10" + hash + "server:abc", wantErr: "no \"::\""},
		{name: "short hash", in: "K10abc::server:abc", wantErr: "CA hash has 3 characters"},
		{name: "long hash", in: "K10" + hash + "00::server:abc", wantErr: "CA hash has 66"},
		{name: "non-hex hash", in: "K10" + strings.Repeat("z", 64) + "::server:abc", wantErr: "not hexadecimal"},
		{name: "empty hash", in: "K10::server:abc", wantErr: "CA hash has 0"},
		{name: "no user separator", in: "K10" + hash + "::serverabc", wantErr: "no \"<user>:<secret>\""},
		{name: "empty user", in: "K10" + hash + "::" + ":abc", wantErr: "user before the secret is empty"},
		{name: "empty secret", in: "K10" + hash + "::server:", wantErr: "secret is empty"},
		{name: "user with slash", in: "K10" + hash + "::a/b:abc", wantErr: "user may contain"},
		{name: "long user", in: "K10" + hash + "::" + strings.Repeat("u", 65) + ":abc", wantErr: "user is longer"},
		{name: "secret with space", in: "K10" + hash + "::server:a b", wantErr: "not printable ASCII"},
		{name: "bare with space", in: "a b", wantErr: "not printable ASCII"},
		{name: "bare with NUL", in: "ab\x00c", wantErr: "not printable ASCII"},
		{name: "bare with CRLF injection", in: "abc\r\nX-Evil: 1", wantErr: "not printable ASCII"},
		{name: "bare non-ASCII", in: "pässword", wantErr: "not printable ASCII"},
		{name: "bare invalid UTF-8", in: "ab\xffcd", wantErr: "not printable ASCII"},
		{name: "huge secret", in: strings.Repeat("a", MaxSecretLen+1), wantErr: "longer than"},
		{name: "huge full secret", in: "K10" + hash + "::server:" + strings.Repeat("a", 1<<20), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if got != (Token{}) {
					t.Errorf("Parse returned %#v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			// Formatting and parsing again is stable.
			again, err := Parse(got.String())
			if err != nil || again != got {
				t.Errorf("round trip of %q: %#v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseErrorsDoNotLeakSecret(t *testing.T) {
	for _, in := range []string{"K10" + hash + "::a/b:topsecret", "K10short::server:topsecret", "top secret"} {
		if _, err := Parse(in); err == nil || strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "top secret") {
			t.Errorf("Parse(%q) error %v leaks the secret", in, err)
		}
	}
}

func TestNewAndVerify(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 64 {
		t.Errorf("secret length %d, want 64", len(secret))
	}
	tok := New(ca, secret)
	s := tok.String()
	if !strings.HasPrefix(s, "K10"+CAHash(ca)+"::server:") {
		t.Errorf("String() = %q", s)
	}
	parsed, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.VerifyCA(ca); err != nil {
		t.Errorf("VerifyCA: %v", err)
	}
	if err := parsed.VerifyCA(append([]byte{}, ca[1:]...)); err == nil || !strings.Contains(err.Error(), "wrong server") {
		t.Errorf("VerifyCA of another CA = %v", err)
	}
	if !parsed.SecretEqual(secret) || parsed.SecretEqual(secret+"x") || (Token{}).SecretEqual("") {
		t.Error("SecretEqual wrong")
	}
	if err := (Token{Secret: "x"}).VerifyCA(ca); err != nil {
		t.Errorf("unpinned VerifyCA: %v", err)
	}
}

func TestLogValueRedacts(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "token", Token{CAHash: hash, User: "server", Secret: "topsecret"})
	if strings.Contains(b.String(), "topsecret") {
		t.Errorf("log leaks secret: %s", b.String())
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "K10", "K10" + hash + "::server:abc", "abc", "K10::", "K10" + hash + "::a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(tok.String())
		if err != nil || again != tok {
			t.Fatalf("round trip of %q: %v, %v", s, again, fmt.Sprint(err))
		}
	})
}
