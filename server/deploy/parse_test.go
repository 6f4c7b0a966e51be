package deploy

import (
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      []string // kind/name@where of each object
		wantErrs  []string // substrings, one per error, in order
		wantCount int      // errors expected (len(wantErrs) when 0)
	}{
		{
			name: "one object",
			in:   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
			want: []string{"ConfigMap/a@document 1"},
		},
		{
			name: "several documents, empty ones and comments skipped",
			in: "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n# only a comment\n" +
				"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n...\n",
			want: []string{"ConfigMap/a@document 2", "Namespace/b@document 4"},
		},
		{
			name: "json",
			in:   `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}`,
			want: []string{"ConfigMap/j@document 1"},
		},
		{
			name: "v1 List expanded",
			in: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n" +
				"- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n- 7\n",
			want:     []string{"ConfigMap/a@document 1, item 1"},
			wantErrs: []string{"document 1, item 2: ConfigMap: metadata.name is required", "document 1, item 3: want an object"},
		},
		{
			name:     "bad document does not hide the good ones",
			in:       "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
			want:     []string{"ConfigMap/a@document 1", "ConfigMap/c@document 3"},
			wantErrs: []string{"document 2: not valid YAML"},
		},
		{
			name:     "missing fields",
			in:       "kind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n",
			wantErrs: []string{"document 1: apiVersion not set", "document 2: kind not set", "document 3: ConfigMap: metadata.name is required; apply cannot use generateName"},
		},
		{
			name:     "not an object",
			in:       "- a\n- b\n---\njust text\n",
			wantErrs: []string{"document 1: want an object", "document 2: want an object"},
		},
		{
			name:     "items of a List not a list",
			in:       "apiVersion: v1\nkind: List\nitems: 3\n",
			wantErrs: []string{"document 1: items of a List must be a list"},
		},
		{
			name: "empty file",
			in:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, errs := parseManifest([]byte(tt.in))
			var got []string
			for _, d := range docs {
				got = append(got, d.obj.GetKind()+"/"+d.obj.GetName()+"@"+d.where())
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("objects = %q, want %q", got, tt.want)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("errors = %v, want %d: %q", errs, len(tt.wantErrs), tt.wantErrs)
			}
			for i, w := range tt.wantErrs {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestParseManifestOversizedDocument(t *testing.T) {
	big := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  x: \"" + strings.Repeat("a", maxDocumentSize) + "\"\n"
	docs, errs := parseManifest([]byte(big + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: small}\n"))
	if len(docs) != 1 || docs[0].obj.GetName() != "small" {
		t.Errorf("docs = %v, want only the small one", docs)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "document 1: ") || !strings.Contains(errs[0].Error(), "larger than the limit") {
		t.Errorf("errs = %v", errs)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: List\napiVersion: v1\nitems: [{}]\n"))
	f.Add([]byte("{\"apiVersion\":1}"))
	f.Add([]byte("---\n---\n: :\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, _ := parseManifest(data)
		for _, d := range docs {
			if checkObject(d.obj) != nil {
				t.Errorf("returned an invalid object: %v", d.obj)
			}
		}
	})
}
