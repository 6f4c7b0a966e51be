package jointoken

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
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
		{name: "bare", in: "s3cret", want: Token{User: "server", Secret: "s3cret"}},
		{name: "bare bootstrap", in: "abcdef.0123456789abcdef", want: Token{Secret: "abcdef.0123456789abcdef"}},
		{name: "bare bootstrap-like with capitals", in: "ABCDEF.0123456789abcdef", want: Token{User: "server", Secret: "ABCDEF.0123456789abcdef"}},
		{name: "full bootstrap", in: "K10" + hash + "::abcdef.0123456789abcdef", want: Token{CAHash: hash, Secret: "abcdef.0123456789abcdef"}},
		{name: "full bootstrap with newline", in: "K10" + hash + "::a1b2c3.0123456789abcdef\n", want: Token{CAHash: hash, Secret: "a1b2c3.0123456789abcdef"}},
		{name: "server user with bootstrap-shaped secret", in: "K10" + hash + "::server:abcdef.0123456789abcdef",
			want: Token{CAHash: hash, User: "server", Secret: "abcdef.0123456789abcdef"}},
		{name: "bare with colon", in: "user:pass", want: Token{User: "server", Secret: "user:pass"}},

		{name: "empty", in: "", wantErr: "empty"},
		{name: "blank", in: " \t\n", wantErr: "empty"},
		{name: "prefix only", in: "K10", wantErr: "no \"::\""},
		{name: "no separator", in: "K10" + hash + "server:abc", wantErr: "no \"::\""},
		{name: "short hash", in: "K10abc::server:abc", wantErr: "CA hash has 3 characters"},
		{name: "long hash", in: "K10" + hash + "00::server:abc", wantErr: "CA hash has 66"},
		{name: "non-hex hash", in: "K10" + strings.Repeat("z", 64) + "::server:abc", wantErr: "not hexadecimal"},
		{name: "empty hash", in: "K10::server:abc", wantErr: "CA hash has 0"},
		{name: "no user separator", in: "K10" + hash + "::serverabc", wantErr: "neither \"<user>:<secret>\" nor a bootstrap token"},
		{name: "bootstrap id too short", in: "K10" + hash + "::abcde.0123456789abcdef", wantErr: "nor a bootstrap token"},
		{name: "bootstrap secret too long", in: "K10" + hash + "::abcdef.0123456789abcdef0", wantErr: "nor a bootstrap token"},
		{name: "bootstrap upper case", in: "K10" + hash + "::ABCDEF.0123456789ABCDEF", wantErr: "nor a bootstrap token"},
		{name: "bootstrap two dots", in: "K10" + hash + "::abcdef.0123456789abcde.", wantErr: "nor a bootstrap token"},
		{name: "bootstrap empty", in: "K10" + hash + "::", wantErr: "nor a bootstrap token"},
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

func TestBootstrap(t *testing.T) {
	ca := []byte("ca")
	seen := map[string]bool{}
	for range 50 {
		tok, err := NewBootstrap(ca)
		if err != nil {
			t.Fatal(err)
		}
		id, ok := tok.BootstrapID()
		if !ok || !ValidBootstrapID(id) || !strings.HasPrefix(tok.Secret, id+".") {
			t.Fatalf("NewBootstrap = %#v, id %q %v", tok, id, ok)
		}
		if seen[tok.Secret] {
			t.Fatalf("NewBootstrap repeated %q", tok.Secret)
		}
		seen[tok.Secret] = true
		parsed, err := Parse(tok.String())
		if err != nil || parsed != tok {
			t.Fatalf("Parse(%q) = %#v, %v", tok.String(), parsed, err)
		}
		if !strings.HasPrefix(tok.String(), "K10"+CAHash(ca)+"::"+id+".") {
			t.Errorf("String() = %q", tok.String())
		}
	}
	if _, ok := New(ca, "abcdef.0123456789abcdef").BootstrapID(); ok {
		t.Error("the server's token has a bootstrap id")
	}
	for _, tt := range []struct {
		in         string
		id, secret string
	}{
		{in: "abcdef.0123456789abcdef", id: "abcdef", secret: "0123456789abcdef"},
		{in: "abcdef.0123456789abcde"},
		{in: "abcdef0123456789abcdef"},
		{in: "abcdé.0123456789abcdef"},
		{in: ".0123456789abcdef"},
		{in: ""},
	} {
		id, secret, ok := ParseBootstrap(tt.in)
		if id != tt.id || secret != tt.secret || ok != (tt.id != "") {
			t.Errorf("ParseBootstrap(%q) = %q, %q, %v", tt.in, id, secret, ok)
		}
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
	for _, s := range []string{"", "K10", "K10" + hash + "::server:abc", "abc", "K10::", "K10" + hash + "::a:b:c", "K10" + hash + "::abcdef.0123456789abcdef"} {
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

func TestNewNodeKey(t *testing.T) {
	keyPEM, der, err := NewNodeKey("n1")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("signature: %v", err)
	}
	if csr.Subject.CommonName != "system:node:n1" || len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != "system:nodes" {
		t.Errorf("subject = %v", csr.Subject)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM = %q", keyPEM)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(*ecdsa.PrivateKey).PublicKey.Equal(csr.PublicKey) {
		t.Error("the request is not for the key")
	}
}
