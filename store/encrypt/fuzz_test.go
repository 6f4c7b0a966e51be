package encrypt

import (
	"bytes"
	"testing"
)

// FuzzDecrypt: whatever a database holds, opening it returns the value or
// an error, never a panic; and what encrypt seals, decrypt opens.
func FuzzDecrypt(f *testing.F) {
	kr := &Keyring{}
	if err := kr.addKey(); err != nil {
		f.Fatal(err)
	}
	sealed, err := kr.encrypt("k", []byte(`{"data":"x"}`))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{nil, []byte("{}"), []byte("k8s:enc:"), []byte("k8s:enc:aesgcm:v1:key1:"),
		[]byte("k8s:enc:aesgcm:v1:key1:short"), []byte("k8s:enc:aesgcm:v1:other:xxxxxxxxxxxxxxxxxxxxxxxxxx"), sealed} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		plain, err := kr.decrypt("k", value)
		if err == nil && !bytes.HasPrefix(value, []byte(encryptedMarker)) && !bytes.Equal(plain, value) {
			t.Fatalf("plain text %q came back as %q", value, plain)
		}
		s, err := kr.encrypt("k", value)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := kr.decrypt("k", s); err != nil || !bytes.Equal(back, value) {
			t.Fatalf("round trip of %q: %q, %v", value, back, err)
		}
	})
}
