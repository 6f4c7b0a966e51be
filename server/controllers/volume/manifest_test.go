package volume

import (
	"io/fs"
	"reflect"
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/yaml"

	"github.com/orch-dev/orch/manifests"
)

// TestBuiltInManifestIsLocalPathClass: the default class is shipped as a
// manifest; it must be the class this provisioner serves.
func TestBuiltInManifestIsLocalPathClass(t *testing.T) {
	data, err := fs.ReadFile(manifests.FS(), "local-storage.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got storagev1.StorageClass
	if err := yaml.UnmarshalStrict(data, &got); err != nil {
		t.Fatal(err)
	}
	if want := LocalPathClass(); !reflect.DeepEqual(&got, want) {
		t.Errorf("manifests/local-storage.yaml =\n%+v\nwant\n%+v", &got, want)
	}
}
